"""Change who people are: every write to subscribers, consent and imports goes through here.

Admin, views, API, tasks and signal receivers call these functions; none of
them saves domain rows directly. Each action is transactional and runs its
side effects (tasks) on commit.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from subscribers.importing.engine import ImportOptions, ImportResult, run_import
from subscribers.importing.reader import ImportFileError
from subscribers.models import (
    BLOCKED_STATUSES,
    AnonymousVisitor,
    ConsentMethod,
    ConsentPurpose,
    ConsentRecord,
    Event,
    ImportJob,
    ImportStatus,
    Order,
    PrivacyRequest,
    PrivacyRequestKind,
    Subscriber,
    SubscriberStatus,
    SuppressedAddress,
    WriteKey,
    email_hash,
    validate_attribute_values,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsentEvidence:
    """What proves a consent change: the notice shown, where it came from and when."""

    method: str
    notice_version: str = ""
    ip_address: str | None = None
    user_agent: str = ""
    occurred_at: dt.datetime | None = None
    actor_id: int | None = None


def record_consent(
    subscriber: Subscriber,
    *,
    purpose: str,
    granted: bool,
    evidence: ConsentEvidence,
    topic_id: int | None = None,
) -> ConsentRecord:
    """Append one consent fact to the ledger."""
    if purpose == ConsentPurpose.TOPIC and topic_id is None:
        raise ValueError("A topic consent needs the topic.")
    return ConsentRecord.objects.create(
        subscriber=subscriber,
        purpose=purpose,
        topic_id=topic_id if purpose == ConsentPurpose.TOPIC else None,
        granted=granted,
        method=evidence.method,
        notice_version=evidence.notice_version or settings.CONSENT_NOTICE_VERSION,
        ip_address=evidence.ip_address,
        user_agent=(evidence.user_agent or "")[:500],
        occurred_at=evidence.occurred_at or timezone.now(),
        actor_id=evidence.actor_id,
    )


def is_suppressed(email: str) -> bool:
    return SuppressedAddress.objects.filter(email_hash=email_hash(email)).exists()


@transaction.atomic
def create_subscriber(
    *,
    email: str,
    profile: dict[str, Any] | None = None,
    status: str = SubscriberStatus.PENDING,
    evidence: ConsentEvidence | None = None,
) -> Subscriber:
    """Add a person; if ``status`` is subscribed, ``evidence`` of their consent is required.

    Raises ValidationError naming each bad field, and for an address that was
    erased (it may not be re-added) or already exists.
    """
    profile = dict(profile or {})
    subscriber = Subscriber(email=email, status=status, **profile)
    if is_suppressed(subscriber.email):
        raise ValidationError({"email": "This address was erased at the person's request and may not be added again."})
    if status == SubscriberStatus.SUBSCRIBED and evidence is None:
        raise ValidationError({"status": "Subscribing someone needs a record of their consent."})
    subscriber.full_clean()
    if Subscriber.objects.filter(email_key=subscriber.email.lower()).exists():
        raise ValidationError({"email": "A subscriber with this address already exists."})
    now = timezone.now()
    subscriber.status_changed_at = now
    if status == SubscriberStatus.SUBSCRIBED:
        subscriber.confirmed_at = subscriber.confirmed_at or now
    subscriber.save()
    if status == SubscriberStatus.SUBSCRIBED and evidence is not None:
        record_consent(subscriber, purpose=ConsentPurpose.EMAIL_MARKETING, granted=True, evidence=evidence)
        _announce_subscribed(subscriber.pk)
    return subscriber


PROFILE_FIELDS = frozenset(
    {
        "email", "first_name", "last_name", "phone", "language", "country", "region", "city", "timezone",
        "birth_date", "birthday_month", "birthday_day", "gender", "company", "job_title", "industry", "source",
        "external_id", "tags", "attributes",
    }
)


@transaction.atomic
def update_subscriber_profile(subscriber: Subscriber, *, changes: dict[str, Any]) -> Subscriber:
    """Change profile fields (never status or consent: those have their own actions)."""
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise ValueError(f"Not profile fields: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(subscriber, name, value)
    if "attributes" in changes:
        subscriber.attributes = validate_attribute_values(subscriber.attributes or {})
    subscriber.full_clean(validate_unique=True)
    subscriber.save()
    return subscriber


@transaction.atomic
def change_status(subscriber: Subscriber, *, status: str, evidence: ConsentEvidence) -> Subscriber:
    """Move a person to ``status``, recording the consent change it implies.

    Moving someone back to subscribed from a blocked status is only allowed
    when the person asked for it (form or preference center), never by an
    import, API call or staff member.
    """
    if status == subscriber.status:
        return subscriber
    if (
        status == SubscriberStatus.SUBSCRIBED
        and subscriber.status in BLOCKED_STATUSES
        and evidence.method not in {ConsentMethod.FORM, ConsentMethod.PREFERENCE_CENTER}
    ):
        raise ValidationError(
            f"{subscriber.email} is {subscriber.get_status_display().lower()}; only the person can subscribe again."
        )
    previous = subscriber.status
    subscriber.status = status
    subscriber.status_changed_at = timezone.now()
    if status == SubscriberStatus.SUBSCRIBED and not subscriber.confirmed_at:
        subscriber.confirmed_at = subscriber.status_changed_at
    subscriber.save(update_fields=["status", "status_changed_at", "confirmed_at", "updated_at"])
    if status == SubscriberStatus.SUBSCRIBED:
        record_consent(subscriber, purpose=ConsentPurpose.EMAIL_MARKETING, granted=True, evidence=evidence)
        _announce_subscribed(subscriber.pk)
    elif previous == SubscriberStatus.SUBSCRIBED or status == SubscriberStatus.UNSUBSCRIBED:
        record_consent(subscriber, purpose=ConsentPurpose.EMAIL_MARKETING, granted=False, evidence=evidence)
    return subscriber


# --- Privacy rights: erasure ---------------------------------------------

ERASED_DOMAIN = "erased.invalid"


@transaction.atomic
def erase_subscriber(subscriber: Subscriber, *, evidence: ConsentEvidence) -> Subscriber:
    """Erase a person's personal data, keeping what the law and the numbers need.

    Kept: a SHA-256 suppression entry of the address (so no import, signup or
    API call silently re-adds it), the subscriber row as an anonymous tombstone
    (status erased, every personal field blank) so aggregates and deliveries
    still add up, orders detached from the person (revenue stays true), and
    one ledger entry recording the erasure (method, time, acting staff; no IP).
    Removed: profile, attributes, tags, events, identity links, topic
    subscriptions and the earlier consent history. Safe to run twice.
    """
    from preferences.models import TopicSubscription

    subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
    if subscriber.status == SubscriberStatus.ERASED:
        return subscriber
    SuppressedAddress.objects.get_or_create(email_hash=email_hash(subscriber.email), defaults={"reason": "erased"})
    Event.objects.filter(subscriber=subscriber).delete()
    AnonymousVisitor.objects.filter(subscriber=subscriber).delete()
    Order.objects.filter(subscriber=subscriber).update(subscriber=None, anonymous_id="")
    TopicSubscription.objects.filter(subscriber=subscriber).delete()
    ConsentRecord.objects.filter(subscriber=subscriber).purge_for_erasure()
    for receiver in _erasure_receivers:
        receiver(subscriber.pk)
    blank = {
        f.name: ([] if f.name == "tags" else {} if f.name == "attributes" else None if f.null else "")
        for f in Subscriber._meta.concrete_fields
        if f.name in PROFILE_FIELDS
    }
    for name, value in blank.items():
        setattr(subscriber, name, value)
    subscriber.email = f"erased-{subscriber.pk}@{ERASED_DOMAIN}"
    subscriber.status = SubscriberStatus.ERASED
    subscriber.status_changed_at = timezone.now()
    subscriber.confirmed_at = None
    subscriber.save()
    record_consent(subscriber, purpose=ConsentPurpose.EMAIL_MARKETING, granted=False,
                   evidence=ConsentEvidence(method=evidence.method, notice_version="erasure",
                                            occurred_at=evidence.occurred_at, actor_id=evidence.actor_id))
    PrivacyRequest.objects.create(subscriber=subscriber, kind=PrivacyRequestKind.ERASURE, method=evidence.method,
                                  actor_id=evidence.actor_id)
    return subscriber


@transaction.atomic
def export_subscriber_data(subscriber: Subscriber, *, evidence: ConsentEvidence) -> dict[str, Any]:
    """Return a person's data export (subscribers.api.export_personal_data) and log that it was taken."""
    from subscribers.api import export_personal_data

    PrivacyRequest.objects.create(subscriber=subscriber, kind=PrivacyRequestKind.EXPORT, method=evidence.method,
                                  actor_id=evidence.actor_id)
    return export_personal_data(subscriber_id=subscriber.pk)


_erasure_receivers: list[Any] = []


def on_erasure(receiver: Any) -> Any:
    """Register ``receiver(subscriber_id)`` to remove another app's personal data during erasure."""
    _erasure_receivers.append(receiver)
    return receiver


_subscribed_receivers: list[Any] = []
_event_receivers: list[Any] = []


def on_subscribed(receiver: Any) -> Any:
    """Register ``receiver(subscriber_id)``, called after the commit that subscribed a person (signup journeys).

    Imports subscribe people in bulk and call no receivers: a list brought in
    is not a wave of new signups.
    """
    _subscribed_receivers.append(receiver)
    return receiver


def on_events(receiver: Any) -> Any:
    """Register ``receiver(events)``, called after tracked events of known people are stored.

    ``events`` is a list of TrackedEvent (subscriber id, name, properties,
    time); journeys start, wake and end on them.
    """
    _event_receivers.append(receiver)
    return receiver


@dataclass(frozen=True)
class TrackedEvent:
    subscriber_id: int
    name: str
    properties: dict[str, Any]
    occurred_at: dt.datetime


def _announce_subscribed(subscriber_id: int) -> None:
    for receiver in _subscribed_receivers:
        transaction.on_commit(lambda receiver=receiver: receiver(subscriber_id))


def announce_events(events: list[TrackedEvent]) -> None:
    """Tell the registered receivers about stored events (the tracking API calls this after its commit)."""
    if events:
        for receiver in _event_receivers:
            receiver(events)


# --- Tracking API ---------------------------------------------------------


@transaction.atomic
def create_write_key(*, name: str, created_by_id: int | None = None) -> tuple[WriteKey, str]:
    """Create a tracking source's write key; the key itself is returned once and only its hash is kept."""
    import secrets

    key = "wk_" + secrets.token_urlsafe(24)
    write_key = WriteKey.objects.create(name=name.strip()[:100], key_hash=WriteKey.hash(key), key_prefix=key[:10],
                                        created_by_id=created_by_id)
    return write_key, key


@transaction.atomic
def revoke_write_key(write_key: WriteKey) -> WriteKey:
    """Stop accepting calls with this key (within seconds: see tracking views' key cache)."""
    if write_key.revoked_at is None:
        write_key.revoked_at = timezone.now()
        write_key.save(update_fields=["revoked_at"])
    return write_key


def ingest_tracking_calls(calls: list[Any], *, source: WriteKey | None, default_type: str | None = None,
                          batch_defaults: dict[str, Any] | None = None) -> Any:
    """Store Segment-spec calls (identify, track, page, screen, group, alias); see subscribers.tracking.ingest."""
    from subscribers.tracking.ingest import ingest_calls

    return ingest_calls(calls, source=source, default_type=default_type, batch_defaults=batch_defaults)


# --- Email engagement (called by campaigns' tracking) ----------------------

ENGAGEMENT_KINDS = frozenset({"delivered", "open", "click"})


def record_email_engagement(*, subscriber_id: int, kind: str, at: dt.datetime) -> None:
    """Keep the engagement metrics current: one UPDATE, never a recount.

    ``kind`` is "delivered" (emails_received + 1), "open" or "click" (the
    latest human open or click; a click implies the mail was opened).
    Machine opens must not be passed here.
    """
    from django.db.models import F, Value
    from django.db.models.functions import Coalesce, Greatest

    if kind not in ENGAGEMENT_KINDS:
        raise ValueError(f"Unknown engagement kind {kind!r}")
    people = Subscriber.objects.filter(pk=subscriber_id)
    if kind == "delivered":
        people.update(emails_received=F("emails_received") + 1)
        return
    latest = {"last_open_at": Coalesce(Greatest("last_open_at", Value(at)), Value(at))}
    if kind == "click":
        latest["last_click_at"] = Coalesce(Greatest("last_click_at", Value(at)), Value(at))
    people.update(**latest)


@dataclass(frozen=True)
class EngagementChange:
    """One person's engagement from a batch of tracking events (human opens and clicks only)."""

    subscriber_id: int
    delivered: int = 0
    opened_at: dt.datetime | None = None
    clicked_at: dt.datetime | None = None


def record_email_engagement_batch(changes: list[EngagementChange]) -> None:
    """Apply many people's engagement in one statement (same rules as record_email_engagement).

    Rows are updated in id order, so concurrent batches queue rather than deadlock.
    """
    from django.db import connection

    rows = sorted((c for c in changes if c.delivered or c.opened_at or c.clicked_at), key=lambda c: c.subscriber_id)
    if not rows:
        return
    if connection.vendor != "postgresql":
        for c in rows:
            if c.delivered:
                Subscriber.objects.filter(pk=c.subscriber_id).update(emails_received=F("emails_received") + c.delivered)
            if c.clicked_at:
                record_email_engagement(subscriber_id=c.subscriber_id, kind="click", at=c.clicked_at)
            if c.opened_at:
                record_email_engagement(subscriber_id=c.subscriber_id, kind="open", at=c.opened_at)
        return
    # A click is also an open: the latest of the two moves last_open_at.
    opened = [max(filter(None, (c.opened_at, c.clicked_at)), default=None) for c in rows]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE subscribers_subscriber AS s SET emails_received = s.emails_received + v.delivered, "
            "last_open_at = GREATEST(s.last_open_at, v.opened_at), "
            "last_click_at = GREATEST(s.last_click_at, v.clicked_at) "
            "FROM unnest(%s::bigint[], %s::integer[], %s::timestamptz[], %s::timestamptz[]) "
            "AS v(id, delivered, opened_at, clicked_at) WHERE s.id = v.id",
            [[c.subscriber_id for c in rows], [c.delivered for c in rows], opened, [c.clicked_at for c in rows]],
        )


@transaction.atomic
def suppress_subscriber(*, subscriber_id: int, status: str, evidence: ConsentEvidence) -> Subscriber | None:
    """Stop mail to a person whose address hard-bounced or who complained (marked it as spam)."""
    if status not in {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}:
        raise ValueError("Suppression is for bounces and complaints.")
    subscriber = Subscriber.objects.select_for_update().filter(pk=subscriber_id).first()
    if subscriber is None or subscriber.status in {SubscriberStatus.ERASED, SubscriberStatus.COMPLAINED}:
        return subscriber
    return change_status(subscriber, status=status, evidence=evidence)


# --- CSV import -----------------------------------------------------------


def import_subscribers(
    path: str | Path,
    *,
    topic_id: int | None = None,
    consent_notice: str = "",
    mode: str = "fill_blanks",
    skip_bad_rows: bool = False,
    dry_run: bool = False,
    actor_id: int | None = None,
    source: str = "",
    progress: Any = None,
    report: Any = None,
) -> ImportResult:
    """Import a CSV file of subscribers; the one code path behind the admin and the CLI.

    Raises ImportFileError when the file as a whole cannot be read.
    """
    options = ImportOptions(
        mode=mode,
        topic_id=topic_id,
        consent_notice=consent_notice or f"Imported list: {Path(path).name}",
        skip_bad_rows=skip_bad_rows,
        dry_run=dry_run,
        source=source or f"import: {Path(path).name}"[:100],
        actor_id=actor_id,
        max_bytes=settings.IMPORT_MAX_FILE_MB * 1024 * 1024,
    )
    return run_import(path, options, progress=progress, report=report)


def progress_key(job_id: int) -> str:
    return f"import-progress:{job_id}"


@transaction.atomic
def start_import(
    *,
    uploaded: UploadedFile,
    created_by_id: int | None,
    topic_id: int | None = None,
    consent_notice: str = "",
    mode: str = "fill_blanks",
    skip_bad_rows: bool = False,
) -> ImportJob:
    """Store an uploaded file and queue its dry run in the background."""
    limit = settings.IMPORT_MAX_FILE_MB * 1024 * 1024
    if uploaded.size and uploaded.size > limit:
        raise ValidationError(
            f"The file is {uploaded.size / 1_048_576:.1f} MB; the limit is {settings.IMPORT_MAX_FILE_MB} MB."
        )
    job = ImportJob(
        original_name=Path(uploaded.name or "import.csv").name[:255],
        topic_id=topic_id,
        consent_notice=consent_notice,
        mode=mode,
        skip_bad_rows=skip_bad_rows,
        created_by_id=created_by_id,
    )
    job.file.save(job.original_name, uploaded, save=False)
    job.save()
    from subscribers.tasks import check_import_task

    transaction.on_commit(lambda: check_import_task.delay(job.pk))
    return job


@transaction.atomic
def confirm_import(job: ImportJob) -> ImportJob:
    """Queue the real import of a checked file."""
    job = ImportJob.objects.select_for_update().get(pk=job.pk)
    if not job.can_confirm:
        raise ValidationError("This import cannot be started: it has not been checked, or it has errors.")
    job.status = ImportStatus.IMPORTING
    job.save(update_fields=["status"])
    from subscribers.tasks import run_import_task

    transaction.on_commit(lambda: run_import_task.delay(job.pk))
    return job


@transaction.atomic
def cancel_import(job: ImportJob) -> ImportJob:
    job = ImportJob.objects.select_for_update().get(pk=job.pk)
    if job.status not in {ImportStatus.QUEUED, ImportStatus.CHECKED, ImportStatus.FAILED}:
        raise ValidationError("Only an import that is not running can be cancelled.")
    job.status = ImportStatus.CANCELLED
    job.finished_at = timezone.now()
    # The dry run's advice ("fix the errors or choose skip bad rows") no longer applies.
    job.message = "Cancelled; nothing was imported. The dry run's findings are below."
    job.save(update_fields=["status", "finished_at", "message"])
    return job


def process_import_job(job_id: int, *, dry_run: bool) -> ImportJob | None:
    """Run the check (dry run) or the import of a job, keeping its status and report current.

    Safe to run twice: a job that is not in the expected state is left alone.
    """
    from django.core.cache import cache

    expected = ImportStatus.QUEUED if dry_run else ImportStatus.IMPORTING
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != expected:
            return None
        if dry_run:
            job.status = ImportStatus.CHECKING
            job.save(update_fields=["status"])

    def progress(phase: str, fraction: float) -> None:
        cache.set(progress_key(job_id), {"phase": phase, "percent": round(fraction * 100)}, 60 * 60)

    report = io.StringIO()
    try:
        result = import_subscribers(
            job.file.path,
            topic_id=job.topic_id,
            consent_notice=job.consent_notice,
            mode=job.mode,
            skip_bad_rows=job.skip_bad_rows,
            dry_run=dry_run,
            actor_id=job.created_by_id,
            source=f"import: {job.original_name}"[:100],
            progress=progress,
            report=report,
        )
    except ImportFileError as exc:
        _finish_job(job, status=ImportStatus.FAILED, message=str(exc))
        return job
    except Exception:
        logger.exception("Import %s failed", job_id)
        _finish_job(job, status=ImportStatus.FAILED,
                    message="The import stopped because of an internal error; nothing was imported. "
                            "The error was logged for the administrators.")
        raise
    if dry_run:
        status = ImportStatus.CHECKED
    else:
        status = ImportStatus.DONE if result.applied else ImportStatus.FAILED
    job.report.save(f"{Path(job.original_name).stem}-report.csv", ContentFile(report.getvalue().encode()), save=False)
    _finish_job(job, status=status, message=result.message, result=result)
    return job


def _finish_job(job: ImportJob, *, status: str, message: str, result: ImportResult | None = None) -> None:
    job.status = status
    job.message = message
    now = timezone.now()
    if result is not None:
        job.total_rows = result.total_rows
        job.new_count = result.counts["new"]
        job.updated_count = result.counts["updated"]
        job.skipped_count = result.counts["skipped"]
        job.error_count = result.counts["error"]
        job.summary = result.as_summary()
    if status == ImportStatus.CHECKED:
        job.checked_at = now
    else:
        job.finished_at = now
    job.save()


def purge_import_files(*, older_than_days: int | None = None) -> int:
    """Delete uploaded files and reports of old imports; they hold personal data."""
    days = settings.IMPORT_FILE_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - dt.timedelta(days=days)
    purged = 0
    for job in ImportJob.objects.filter(created_at__lt=cutoff).exclude(file=""):
        with transaction.atomic():
            job.file.delete(save=False)
            if job.report:
                job.report.delete(save=False)
            job.save(update_fields=["file", "report"])
        purged += 1
    return purged
