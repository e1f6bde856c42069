"""Change what people want: topics, sending preferences, signups, unsubscribes and privacy requests.

Every write of the preferences app goes through here; views, admin, tasks and
other apps call these functions. Consent (email marketing, topics,
personalization) is appended to the consent ledger through
``subscribers.actions``; frequency, pause and language are preferences, not
consent, and are kept as a short PreferenceChange history instead. Side
effects (the confirmation email) run on commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from preferences.models import (
    Frequency,
    PreferenceChange,
    PreferenceField,
    Signup,
    SubscriberPreferences,
    Topic,
    TopicSubscription,
)
from subscribers.actions import (
    ConsentEvidence,
    change_status,
    create_subscriber,
    erase_subscriber,
    export_subscriber_data,
    is_suppressed,
    record_consent,
    update_subscriber_profile,
)
from subscribers.models import (
    ConsentMethod,
    ConsentPurpose,
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    normalize_email,
)

logger = logging.getLogger(__name__)

PAUSE_DAYS = (30, 60, 90)


# --- Topics and unsubscribe --------------------------------------------------


@transaction.atomic
def set_topic_subscription(
    subscriber: Subscriber, *, topic: Topic, subscribed: bool, evidence: ConsentEvidence
) -> TopicSubscription:
    """Subscribe a person to a topic or opt them out, recording it in the consent ledger."""
    current = TopicSubscription.objects.select_for_update().filter(subscriber=subscriber, topic=topic).first()
    if current is not None and current.subscribed == subscribed:
        return current
    if current is None:
        current = TopicSubscription(subscriber=subscriber, topic=topic)
    current.subscribed = subscribed
    current.changed_at = timezone.now()
    current.save()
    record_consent(subscriber, purpose=ConsentPurpose.TOPIC, topic_id=topic.pk, granted=subscribed, evidence=evidence)
    return current


def add_to_topic(subscribers: Iterable[Subscriber], *, topic: Topic, evidence: ConsentEvidence) -> tuple[int, int]:
    """Subscribe many people to a topic; returns (added, skipped).

    Skipped are people who cannot receive marketing mail (unsubscribed,
    bounced, complained, erased) and people who opted out of this topic:
    staff cannot override a person's own choice.
    """
    added = skipped = 0
    for subscriber in subscribers:
        existing = TopicSubscription.objects.filter(subscriber=subscriber, topic=topic).first()
        blocked = subscriber.status not in {SubscriberStatus.SUBSCRIBED, SubscriberStatus.PENDING}
        if blocked or (existing is not None and not existing.subscribed):
            skipped += 1
            continue
        if existing is None:
            set_topic_subscription(subscriber, topic=topic, subscribed=True, evidence=evidence)
            added += 1
    return added, skipped


@transaction.atomic
def unsubscribe(subscriber: Subscriber, *, evidence: ConsentEvidence) -> Subscriber:
    """Stop all marketing mail to a person and record the withdrawal.

    A bounced or complained person keeps that status (it says more, and stops
    mail as well); their withdrawal is still recorded in the ledger.
    """
    if subscriber.status in {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.ERASED}:
        return subscriber
    if subscriber.status in {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}:
        record_consent(subscriber, purpose=ConsentPurpose.EMAIL_MARKETING, granted=False, evidence=evidence)
        return subscriber
    return change_status(subscriber, status=SubscriberStatus.UNSUBSCRIBED, evidence=evidence)


@transaction.atomic
def resubscribe(subscriber: Subscriber, *, evidence: ConsentEvidence) -> Subscriber:
    """Undo a person's own unsubscribe from their preference center (their topics are as they left them).

    Only an unsubscribed person, and only with preference-center evidence: a
    bounce or a spam complaint is not undone here, and someone who never
    subscribed goes through the signup form's double opt-in.
    """
    subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
    if subscriber.status == SubscriberStatus.SUBSCRIBED:
        return subscriber
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED or evidence.method != ConsentMethod.PREFERENCE_CENTER:
        raise ValidationError("Only a person who unsubscribed can subscribe again from their preference center.")
    return change_status(subscriber, status=SubscriberStatus.SUBSCRIBED, evidence=evidence)


# --- Sending preferences -----------------------------------------------------


def ensure_preferences(subscriber: Subscriber) -> SubscriberPreferences:
    """Return the person's preferences row, creating it (with a fresh link token) on first use."""
    from preferences.links import new_token

    prefs, _ = SubscriberPreferences.objects.get_or_create(subscriber=subscriber, defaults={"token": new_token()})
    return prefs


def ensure_preferences_for(*, subscriber_ids: Iterable[int], known: dict[int, str] | None = None) -> dict[int, str]:
    """Create missing preferences rows for many people at once; return each person's link token.

    For the sending pipeline: two queries per chunk, whatever its size, and
    none for the people whose token the caller already read (``known``).
    """
    from preferences.links import new_token

    ids = list(dict.fromkeys(subscriber_ids))
    known = known or {}
    tokens = {pk: known[pk] for pk in ids if pk in known}
    unknown = [pk for pk in ids if pk not in tokens]
    if unknown:
        tokens.update(SubscriberPreferences.objects.filter(subscriber_id__in=unknown)
                      .values_list("subscriber_id", "token"))
    missing = [pk for pk in ids if pk not in tokens]
    if missing:
        now = timezone.now()
        SubscriberPreferences.objects.bulk_create(
            [SubscriberPreferences(subscriber_id=pk, token=new_token(), created_at=now, updated_at=now)
             for pk in missing],
            ignore_conflicts=True, batch_size=1000,
        )
        tokens.update(SubscriberPreferences.objects.filter(subscriber_id__in=missing)
                      .values_list("subscriber_id", "token"))
    return tokens


@transaction.atomic
def rotate_preference_token(subscriber: Subscriber) -> SubscriberPreferences:
    """Give a person a new link token: every preference and unsubscribe link sent so far stops working."""
    from preferences.links import new_token

    prefs = ensure_preferences(subscriber)
    prefs.token = new_token()
    prefs.updated_at = timezone.now()
    prefs.save(update_fields=["token", "updated_at"])
    return prefs


def _log_change(subscriber: Subscriber, name: str, old: Any, new: Any, evidence: ConsentEvidence) -> None:
    PreferenceChange.objects.create(
        subscriber=subscriber, field=name, old_value=_text(old), new_value=_text(new), method=evidence.method,
        occurred_at=evidence.occurred_at or timezone.now(),
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return str(value)[:64]


def _locked_preferences(subscriber: Subscriber) -> SubscriberPreferences:
    ensure_preferences(subscriber)
    return SubscriberPreferences.objects.select_for_update().get(subscriber=subscriber)


@transaction.atomic
def set_frequency(subscriber: Subscriber, *, frequency: str, evidence: ConsentEvidence) -> bool:
    """Set how often the person gets marketing mail (every / weekly / monthly); say whether it changed."""
    if frequency not in Frequency.values:
        raise ValidationError(f"Unknown frequency {frequency!r}.")
    prefs = _locked_preferences(subscriber)
    if prefs.frequency == frequency:
        return False
    _log_change(subscriber, PreferenceField.FREQUENCY, prefs.frequency, frequency, evidence)
    prefs.frequency = frequency
    prefs.updated_at = timezone.now()
    prefs.save(update_fields=["frequency", "updated_at"])
    return True


@transaction.atomic
def pause_emails(subscriber: Subscriber, *, days: int, evidence: ConsentEvidence) -> dt.datetime:
    """Hold all marketing mail for 30, 60 or 90 days from now; return when it resumes."""
    if days not in PAUSE_DAYS:
        raise ValidationError(f"A pause is {', '.join(map(str, PAUSE_DAYS))} days, not {days}.")
    prefs = _locked_preferences(subscriber)
    until = (evidence.occurred_at or timezone.now()) + dt.timedelta(days=days)
    _log_change(subscriber, PreferenceField.PAUSE, prefs.paused_until, until, evidence)
    prefs.paused_until = until
    prefs.updated_at = timezone.now()
    prefs.save(update_fields=["paused_until", "updated_at"])
    return until


@transaction.atomic
def resume_emails(subscriber: Subscriber, *, evidence: ConsentEvidence) -> bool:
    """End a pause now; say whether the person was paused."""
    prefs = _locked_preferences(subscriber)
    if prefs.paused_until is None or prefs.paused_until <= timezone.now():
        return False
    _log_change(subscriber, PreferenceField.PAUSE, prefs.paused_until, None, evidence)
    prefs.paused_until = None
    prefs.updated_at = timezone.now()
    prefs.save(update_fields=["paused_until", "updated_at"])
    return True


def supported_language(code: str | None) -> str | None:
    """Return ``code`` (or its base language) if the site offers it, else None."""
    if not code:
        return None
    available = dict(settings.LANGUAGES)
    code = code.strip().lower().replace("_", "-")
    if code in available:
        return code
    base = code.split("-")[0]
    return base if base in available else None


@transaction.atomic
def set_language(subscriber: Subscriber, *, language: str, evidence: ConsentEvidence) -> bool:
    """Set the language of the person's emails and pages; say whether it changed."""
    language = supported_language(language) or ""
    if not language:
        raise ValidationError("Choose one of the site's languages.")
    if subscriber.language == language:
        return False
    old = subscriber.language
    update_subscriber_profile(subscriber, changes={"language": language})
    _log_change(subscriber, PreferenceField.LANGUAGE, old, language, evidence)
    return True


def personalization_allowed(subscriber_id: int) -> bool:
    """Say whether the person allows behaviour-based personalization: yes unless they withdrew it.

    The consent ledger is the only record of this choice; no row means the
    person never opted out.
    """
    latest = (ConsentRecord.objects.filter(subscriber_id=subscriber_id, purpose=ConsentPurpose.PERSONALIZATION)
              .order_by("-occurred_at", "-id").values_list("granted", flat=True).first())
    return latest is None or bool(latest)


@transaction.atomic
def set_personalization(subscriber: Subscriber, *, allowed: bool, evidence: ConsentEvidence) -> bool:
    """Allow or refuse behaviour-based personalization, recorded in the consent ledger; say whether it changed."""
    if personalization_allowed(subscriber.pk) == allowed:
        return False
    record_consent(subscriber, purpose=ConsentPurpose.PERSONALIZATION, granted=allowed, evidence=evidence)
    return True


@dataclass
class PreferenceChoices:
    """What the preference-center form submitted; ``None`` leaves a preference as it is."""

    topics: dict[int, bool] = field(default_factory=dict)
    frequency: str | None = None
    language: str | None = None
    pause: str = ""  # "" keep, "resume", or a number of days from PAUSE_DAYS
    personalization: bool | None = None


@transaction.atomic
def save_preferences(subscriber: Subscriber, *, choices: PreferenceChoices, evidence: ConsentEvidence) -> list[str]:
    """Apply a preference-center form in one transaction; return the names of what changed.

    A topic is changed only when the choice differs from what the page showed
    (a subscription, or unchecked when there is none), so saving an unchanged
    form writes nothing to the ledger.
    """
    changed: list[str] = []
    if choices.topics:
        topics = {t.pk: t for t in Topic.objects.filter(pk__in=list(choices.topics), is_active=True)}
        current = dict(TopicSubscription.objects.filter(subscriber=subscriber, topic_id__in=list(topics))
                       .values_list("topic_id", "subscribed"))
        for topic_id, wanted in choices.topics.items():
            if topic_id in topics and current.get(topic_id, False) != wanted:
                set_topic_subscription(subscriber, topic=topics[topic_id], subscribed=wanted, evidence=evidence)
                changed.append("topics")
    if choices.frequency and set_frequency(subscriber, frequency=choices.frequency, evidence=evidence):
        changed.append("frequency")
    if choices.pause == "resume":
        if resume_emails(subscriber, evidence=evidence):
            changed.append("pause")
    elif choices.pause:
        pause_emails(subscriber, days=int(choices.pause), evidence=evidence)
        changed.append("pause")
    if choices.personalization is not None and set_personalization(
        subscriber, allowed=choices.personalization, evidence=evidence
    ):
        changed.append("personalization")
    if choices.language and set_language(subscriber, language=choices.language, evidence=evidence):
        changed.append("language")
    return list(dict.fromkeys(changed))


# --- Signup with double opt-in ----------------------------------------------


@transaction.atomic
def request_signup(
    *,
    email: str,
    first_name: str = "",
    language: str = "",
    topic_ids: list[int] | None = None,
    evidence: ConsentEvidence,
) -> Signup | None:
    """Keep a signup awaiting confirmation and email the person a confirmation link (on commit).

    Returns None, storing nothing, for an erased (suppressed) address and for a
    repeat within SIGNUP_RESEND_MINUTES; callers answer every case the same
    way, so the form never tells whether an address is known. ``topic_ids``
    None means the topics marked default_opt_in. A shop contact becomes
    pending until they confirm (or the link expires). An unsubscribed person
    stays unsubscribed until they confirm.
    """
    email = normalize_email(email)
    key = email.lower()
    if is_suppressed(email):
        return None
    now = timezone.now()
    cooldown = now - dt.timedelta(minutes=settings.SIGNUP_RESEND_MINUTES)
    open_signups = Signup.objects.select_for_update().filter(email_key=key, confirmed_at=None)
    previous = list(open_signups)
    if any(s.created_at > cooldown for s in previous):
        return None
    previous_status = next((s.previous_status for s in previous if s.previous_status), "")
    # A newer link replaces older ones: only the latest email's link works.
    Signup.objects.filter(pk__in=[s.pk for s in previous]).delete()
    subscriber = Subscriber.objects.select_for_update().filter(email_key=key).first()
    if subscriber is not None and subscriber.status == SubscriberStatus.CONTACT:
        previous_status = SubscriberStatus.CONTACT
        change_status(subscriber, status=SubscriberStatus.PENDING, evidence=evidence)
    active = Topic.objects.filter(is_active=True)
    if topic_ids is None:
        chosen = list(active.filter(default_opt_in=True).values_list("pk", flat=True))
    else:
        chosen = list(active.filter(pk__in=topic_ids).values_list("pk", flat=True))
    from preferences.links import new_token

    signup = Signup.objects.create(
        email=email, email_key=key, first_name=(first_name or "").strip()[:150],
        language=supported_language(language) or "", topic_ids=sorted(chosen),
        notice_version=evidence.notice_version or settings.SIGNUP_NOTICE_VERSION,
        ip_address=evidence.ip_address, user_agent=(evidence.user_agent or "")[:500], token=new_token(),
        subscriber=subscriber, previous_status=previous_status, created_at=now,
        expires_at=now + dt.timedelta(days=settings.SIGNUP_CONFIRM_DAYS),
    )
    from preferences.tasks import send_signup_confirmation_task

    transaction.on_commit(lambda: send_signup_confirmation_task.delay(signup.pk))
    logger.info("Signup %s requested; confirmation email queued", signup.pk)
    return signup


class SignupExpired(Exception):
    """The confirmation link is older than SIGNUP_CONFIRM_DAYS."""


@transaction.atomic
def confirm_signup(signup: Signup, *, evidence: ConsentEvidence) -> Subscriber | None:
    """Subscribe the person of a signup now that they confirmed it, recording their consent.

    ``evidence`` is the confirmation itself (method form, the notice version
    of the signup, the confirming request's IP and user agent, the time).
    A new address becomes a subscriber only here. Safe to run twice (the
    second run returns the subscriber). Returns None if the address was
    erased meanwhile; raises SignupExpired for an expired link.
    """
    signup = Signup.objects.select_for_update().get(pk=signup.pk)
    if signup.confirmed_at is not None:
        return signup.subscriber
    if signup.expires_at <= timezone.now():
        raise SignupExpired
    if is_suppressed(signup.email):
        signup.delete()
        return None
    evidence = ConsentEvidence(
        method=ConsentMethod.FORM, notice_version=evidence.notice_version or signup.notice_version,
        ip_address=evidence.ip_address, user_agent=evidence.user_agent,
        occurred_at=evidence.occurred_at or timezone.now(), actor_id=None,
    )
    subscriber = Subscriber.objects.select_for_update().filter(email_key=signup.email_key).first()
    if subscriber is None:
        profile = {"first_name": signup.first_name, "language": signup.language, "source": "signup form"}
        subscriber = create_subscriber(email=signup.email, profile=profile, status=SubscriberStatus.SUBSCRIBED,
                                       evidence=evidence)
    else:
        blanks = {name: getattr(signup, name) for name in ("first_name", "language")
                  if getattr(signup, name) and not getattr(subscriber, name)}
        if blanks:
            try:
                update_subscriber_profile(subscriber, changes=blanks)
            except ValidationError:
                logger.warning("Signup %s: could not fill the profile of subscriber %s", signup.pk, subscriber.pk)
                subscriber.refresh_from_db()
        if subscriber.status != SubscriberStatus.SUBSCRIBED:
            change_status(subscriber, status=SubscriberStatus.SUBSCRIBED, evidence=evidence)
    for topic in Topic.objects.filter(pk__in=signup.topic_ids, is_active=True):
        set_topic_subscription(subscriber, topic=topic, subscribed=True, evidence=evidence)
    ensure_preferences(subscriber)
    signup.confirmed_at = evidence.occurred_at
    signup.subscriber = subscriber
    signup.save(update_fields=["confirmed_at", "subscriber"])
    logger.info("Signup %s confirmed by subscriber %s", signup.pk, subscriber.pk)
    return subscriber


def expire_signups(*, now: dt.datetime | None = None, batch_size: int = 2000) -> int:
    """Delete signups whose link has expired, confirmed or not; return how many.

    A shop contact who was moved to pending by an unconfirmed signup goes
    back to being a contact. Works in batches, each its own transaction, and
    is safe to run twice.
    """
    now = now or timezone.now()
    removed = 0
    while True:
        with transaction.atomic():
            batch = list(Signup.objects.select_for_update(skip_locked=True)
                         .filter(expires_at__lte=now).order_by("pk")[:batch_size])
            if not batch:
                return removed
            for signup in batch:
                if signup.confirmed_at is None and signup.previous_status == SubscriberStatus.CONTACT:
                    _restore_contact(signup, now=now)
            Signup.objects.filter(pk__in=[s.pk for s in batch]).delete()
            removed += len(batch)


def _restore_contact(signup: Signup, *, now: dt.datetime) -> None:
    subscriber = Subscriber.objects.select_for_update().filter(pk=signup.subscriber_id).first()
    still_open = Signup.objects.filter(email_key=signup.email_key, confirmed_at=None, expires_at__gt=now).exists()
    if subscriber is not None and subscriber.status == SubscriberStatus.PENDING and not still_open:
        change_status(subscriber, status=SubscriberStatus.CONTACT,
                      evidence=ConsentEvidence(method=ConsentMethod.FORM, notice_version="signup expired"))


# --- Privacy rights -------------------------------------------------------------


def export_my_data(subscriber: Subscriber, *, evidence: ConsentEvidence) -> dict[str, Any]:
    """Return the person's full data export (requested by themselves) and log the request."""
    return export_subscriber_data(subscriber, evidence=evidence)


def erase_my_data(subscriber: Subscriber, *, evidence: ConsentEvidence) -> Subscriber:
    """Erase the person at their own request from the preference center (see subscribers.actions.erase_subscriber)."""
    return erase_subscriber(subscriber, evidence=evidence)


def remove_preference_data(subscriber_id: int) -> None:
    """Delete this app's personal data of a person being erased (registered with subscribers.actions.on_erasure).

    The preferences row goes, and with it the link token: every link ever sent
    to the person stops working. Pending signups of the address go too.
    """
    email_key = Subscriber.objects.filter(pk=subscriber_id).values_list("email_key", flat=True).first()
    SubscriberPreferences.objects.filter(subscriber_id=subscriber_id).delete()
    PreferenceChange.objects.filter(subscriber_id=subscriber_id).delete()
    Signup.objects.filter(subscriber_id=subscriber_id).delete()
    if email_key:
        Signup.objects.filter(email_key=email_key).delete()


def export_section(subscriber_id: int) -> dict[str, Any]:
    """Return this app's part of a person's data export (registered with subscribers.api)."""
    prefs = SubscriberPreferences.objects.filter(subscriber_id=subscriber_id).first()
    return {
        "frequency": prefs.frequency if prefs else Frequency.EVERY,
        "paused_until": prefs.paused_until.isoformat() if prefs and prefs.paused_until else None,
        "personalization_allowed": personalization_allowed(subscriber_id),
        "changes": [
            {"field": c.field, "from": c.old_value, "to": c.new_value, "method": c.method,
             "occurred_at": c.occurred_at.isoformat()}
            for c in PreferenceChange.objects.filter(subscriber_id=subscriber_id).order_by("occurred_at", "id")
        ],
    }


def send_signup_confirmation(*, signup_id: int) -> bool:
    """Email the confirmation link of a signup in its language; say whether it was sent now.

    Sends at most once (``email_sent_at``), so a retried task does not mail the
    person twice; a confirmed, expired or deleted signup gets nothing.
    """
    from preferences.emails import signup_confirmation_message

    with transaction.atomic():
        signup = Signup.objects.select_for_update().filter(pk=signup_id).first()
        if signup is None or signup.email_sent_at or signup.confirmed_at or signup.expires_at <= timezone.now():
            return False
        signup_confirmation_message(signup).send()
        signup.email_sent_at = timezone.now()
        signup.save(update_fields=["email_sent_at"])
    logger.info("Signup %s: confirmation email sent", signup_id)
    return True
