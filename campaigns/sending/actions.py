"""Schedule, start, send, pause, resume and cancel campaigns; pick A/B winners; recover from crashes.

The pipeline (docs/campaigns.md):

1. ``schedule_campaign`` checks the campaign (topic, audience, content) and
   its schedule, and marks it scheduled.
2. ``dispatch_campaigns`` (a Beat job every minute, and right after
   scheduling) starts campaigns whose time has come: ``start_campaign``
   materializes the recipients with one INSERT … SELECT from the audience
   query (unique per campaign and person), assigns hold-out, test and rest
   groups and test variants by a stable hash, and sets each person's due
   time (their local time or best hour when asked). Then it queues due
   recipients in chunks, within the campaign's throttle.
3. ``send_chunk`` (a Celery task per chunk) claims its recipients, asks the
   policy gate about each, records skips and deferrals, creates the
   deliveries (unique per message and person) and commits; renders each
   message from the variant compiled once; hands them to the ESP; records
   what the ESP said. Transient ESP errors put recipients back with a
   backoff; repeated failed chunks pause the campaign (an ESP outage).
4. A worker that dies between handing messages to the ESP and recording it
   leaves recipients "handed to the ESP". ``reconcile_sends`` waits
   ``SEND_RECONCILE_SECONDS`` for the ESP's own events (sent, delivered,
   opened… which the tracking webhooks record on the delivery) and only then
   sends again those the ESP never reported: nothing is lost, and nothing
   the ESP accepted is sent twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from campaigns import actions as delivery_actions
from campaigns.content import actions as content_actions
from campaigns.content.checks import missing_for, unguarded_names
from campaigns.content.models import Campaign, CampaignStatus, ScheduleMode, Variant
from campaigns.content.personalize import recipient_contexts
from campaigns.content.rendering import CompiledMessage
from campaigns.models import Delivery, DeliveryStatus
from campaigns.segments.compiler import BUCKET_MODULUS, bucket_multiplier
from campaigns.sending import policy, sender
from campaigns.sending.models import Recipient, RecipientGroup, RecipientStatus, SendChunk
from preferences.api import sending_preferences_for

logger = logging.getLogger(__name__)

OPEN = (RecipientStatus.PENDING, RecipientStatus.SENDING)
EARLIEST_OFFSET = dt.timedelta(hours=14)  # the earliest time zone (UTC+14) starts this much before UTC
STALE_QUEUE = dt.timedelta(minutes=10)


class CampaignNotReady(Exception):
    """A campaign that cannot be scheduled yet; ``problems`` says why, in plain words."""

    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


def message_key(campaign_id: int, variant_id: int) -> str:
    return f"campaign:{campaign_id}:variant:{variant_id}"


# --- Scheduling ------------------------------------------------------------------


# How far in the past "at a time" may be: the seconds it takes to click Save, or a clock a little ahead of ours.
SEND_TIME_GRACE = dt.timedelta(minutes=1)


def share_problems(test_percent: int, holdout_percent: int) -> list[str]:
    """Return what is wrong with an A/B test share and a hold-out (the form checks them when saving too)."""
    problems = []
    if test_percent > 90 or holdout_percent > 50:
        problems.append("The test share can be at most 90% and the hold-out at most 50%.")
    if test_percent + holdout_percent > 100:
        problems.append("The test share and the hold-out together cannot exceed 100%.")
    return problems


def passed_send_time(schedule_mode: str, send_at: dt.datetime | None, *, now: dt.datetime) -> str:
    """Return why an "at a time" send time cannot be used because it has passed, else "".

    Scheduling a passed time would start sending at once, which is not what
    the marketer asked for; "Now" is there for that.
    """
    if schedule_mode != ScheduleMode.AT or send_at is None or send_at >= now - SEND_TIME_GRACE:
        return ""
    return (f"This time has passed ({send_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC). Choose a later time, "
            "or choose “Now” to send as soon as it is scheduled.")


def schedule_problems(campaign: Campaign, *, now: dt.datetime) -> list[str]:
    """Return what is wrong with a campaign's schedule and test settings."""
    problems = []
    variants = campaign.variants.count()
    mode = campaign.schedule_mode
    if mode == ScheduleMode.AT and campaign.send_at is None:
        problems.append("Choose when to send.")
    passed = passed_send_time(mode, campaign.send_at, now=now)
    if passed:
        problems.append(passed)
    if mode in (ScheduleMode.LOCAL_TIME, ScheduleMode.BEST_HOUR) and campaign.send_on is None:
        problems.append("Choose the day to send on.")
    if mode == ScheduleMode.LOCAL_TIME and campaign.local_time is None:
        problems.append("Choose the local time of day to send at.")
    if campaign.send_on and campaign.send_on < (now - dt.timedelta(days=1)).date():
        problems.append("The day to send on has passed.")
    if variants > 5:
        problems.append("An A/B test can compare at most 5 variants.")
    if campaign.test_percent and variants < 2:
        problems.append("A test needs at least two variants; add one or set the test share to 0.")
    problems += share_problems(campaign.test_percent, campaign.holdout_percent)
    return problems


@transaction.atomic
def schedule_campaign(campaign: Campaign, *, now: dt.datetime | None = None) -> Campaign:
    """Check a draft campaign and schedule it; raises CampaignNotReady listing every problem."""
    now = now or timezone.now()
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status != CampaignStatus.DRAFT:
        raise CampaignNotReady([f"Only a draft can be scheduled; this campaign is {campaign.get_status_display()}."])
    problems = [p.message for p in content_actions.check_campaign(campaign) if p.level == "error"]
    problems += schedule_problems(campaign, now=now)
    if problems:
        raise CampaignNotReady(problems)
    campaign.status = CampaignStatus.SCHEDULED
    campaign.status_note = ""
    campaign.updated_at = now
    campaign.save(update_fields=["status", "status_note", "updated_at"])
    transaction.on_commit(_dispatch_soon)
    return campaign


def _dispatch_soon() -> None:
    from campaigns.sending.tasks import dispatch_campaigns_task

    dispatch_campaigns_task.delay()


def start_time(campaign: Campaign, *, now: dt.datetime) -> dt.datetime:
    """Return when sending starts: now, the chosen time, or the first time zone's local time that day."""
    if campaign.schedule_mode == ScheduleMode.AT and campaign.send_at:
        return campaign.send_at
    if campaign.schedule_mode == ScheduleMode.LOCAL_TIME and campaign.send_on and campaign.local_time:
        return dt.datetime.combine(campaign.send_on, campaign.local_time, tzinfo=dt.UTC) - EARLIEST_OFFSET
    if campaign.schedule_mode == ScheduleMode.BEST_HOUR and campaign.send_on:
        return dt.datetime.combine(campaign.send_on, dt.time(0), tzinfo=dt.UTC) - EARLIEST_OFFSET
    return now


def start_campaign(campaign: Campaign, *, now: dt.datetime | None = None) -> int:
    """Start a scheduled campaign and materialize its recipients; returns how many recipients.

    The dynamic blocks' segments are snapshotted and the campaign marked
    sending in one transaction; then the recipients are written in batches
    (``MATERIALIZE_BATCH`` people, a transaction each), and chunks are queued
    after each batch, so a large campaign starts sending after the first one.
    """
    now = now or timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != CampaignStatus.SCHEDULED:
            return 0
        snapshot_content_segments(campaign)
        testing = campaign.test_percent > 0 and campaign.variants.count() > 1
        campaign.status = CampaignStatus.TESTING if testing else CampaignStatus.SENDING
        campaign.started_at = now
        campaign.test_ends_at = now + dt.timedelta(hours=campaign.test_hours) if testing else None
        campaign.materializing_since = now
        campaign.save(update_fields=["status", "started_at", "test_ends_at", "materializing_since"])
    return _materialize(campaign, now=now)


MATERIALIZE_BATCH = 50_000
STALE_MATERIALIZING = dt.timedelta(minutes=10)


def _materialize(campaign: Campaign, *, now: dt.datetime) -> int:
    """Write a started campaign's recipients batch by batch, queueing chunks between batches; safe to run again.

    ``materializing_since`` is refreshed after each batch and cleared at the
    end: until then the campaign cannot finish, and Beat runs this again for
    a campaign whose batches stopped (a worker that died while writing them).
    """
    def batch_written(last: bool) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(materializing_since=timezone.now())
        if not last:  # after the last one, dispatch_campaigns queues as it always does
            queue_due(campaign, now=timezone.now())

    count = materialize_recipients(campaign, now=now, batch_written=batch_written)
    with transaction.atomic():
        status, winner = Campaign.objects.select_for_update().filter(pk=campaign.pk) \
            .values_list("status", "winner_id").get()
        if winner:  # chosen while the rows were written: a batch that read no winner yet left its rest without one
            Recipient.objects.filter(campaign=campaign, group=RecipientGroup.REST, variant__isnull=True) \
                .update(variant=winner)
        Campaign.objects.filter(pk=campaign.pk).update(materializing_since=None)
    campaign.materializing_since = None
    if status == CampaignStatus.CANCELLED:
        cancel_campaign(campaign)  # skip what was written after the cancel
    return count


def snapshot_content_segments(campaign: Campaign) -> list[str]:
    """Snapshot the segments the content's dynamic blocks ask about, so send chunks read membership cheaply."""
    from campaigns.segments import actions as segment_actions
    from campaigns.segments.models import Segment

    names: set[str] = set()
    for variant in campaign.variants.all():
        for language in content_actions.content_languages(variant):
            names.update(content_actions.compile_variant(variant, language=language).segments)
    for segment in Segment.objects.filter(name__in=names):
        segment_actions.refresh_membership(segment)
    return sorted(names)


def materialize_recipients(campaign: Campaign, *, now: dt.datetime,
                           batch_written: Callable[[bool], None] | None = None) -> int:
    """Insert one recipient row per person of the audience, with group, test variant and due time, in SQL.

    The audience is read once (its ids); the rows are written in batches of
    ``MATERIALIZE_BATCH`` people, each in its own transaction, and
    ``batch_written(last)`` is called after each. People already there are
    left as they are (unique per campaign and person).
    """
    people = list(content_actions.audience(campaign).order_by("id").values_list("id", flat=True))
    count = 0
    for start in range(0, len(people), MATERIALIZE_BATCH):
        batch = people[start:start + MATERIALIZE_BATCH]
        with transaction.atomic():
            status, winner = Campaign.objects.filter(pk=campaign.pk).values_list("status", "winner_id").get()
            if status == CampaignStatus.CANCELLED:
                break  # cancelled while its recipients were being written: the rest are never written
            count += _insert_recipients(campaign, batch, now=now, winner=winner)
            if campaign.schedule_mode == ScheduleMode.LOCAL_TIME:
                _due_at_local_time(campaign, batch[0], batch[-1], now=now)
            elif campaign.schedule_mode == ScheduleMode.BEST_HOUR:
                _due_at_best_hour(campaign, batch[0], batch[-1], now=now)
        if batch_written is not None:
            batch_written(start + MATERIALIZE_BATCH >= len(people))
    return count


def _insert_recipients(campaign: Campaign, people: list[int], *, now: dt.datetime, winner: int | None = None) -> int:
    """Insert the recipient rows of ``people`` (subscriber ids) in one statement; return how many were new.

    ``winner``: an A/B test's winner chosen while the rows were being written, for the rest group.
    """
    variants = list(campaign.variants.order_by("label").values_list("pk", flat=True))
    # %% is the modulo operator: the statement below has parameters.
    group_hash = f"((a.id * {bucket_multiplier(campaign.pk)}) %% {BUCKET_MODULUS}) * 100 / {BUCKET_MODULUS}"
    variant_hash = f"((a.id * {bucket_multiplier(campaign.pk + 7919)}) %% {BUCKET_MODULUS})"
    holdout, test = campaign.holdout_percent, campaign.test_percent
    testing = test > 0 and len(variants) > 1
    rest_group = RecipientGroup.REST if testing else RecipientGroup.ALL
    group = (f"CASE WHEN {group_hash} < {holdout} THEN 'holdout' "
             f"WHEN {group_hash} < {holdout + (test if testing else 0)} THEN 'test' ELSE '{rest_group}' END")
    pick = "CASE " + " ".join(f"WHEN {variant_hash} %% {len(variants)} = {i} THEN {pk}"
                              for i, pk in enumerate(variants)) + " END"
    variant = (f"CASE WHEN {group_hash} < {holdout} THEN NULL "
               + (f"WHEN {group_hash} < {holdout + test} THEN {pick} ELSE {int(winner or 0) or 'NULL'} END"
                  if testing
                  else f"ELSE {pick} END"))
    status = f"CASE WHEN {group_hash} < {holdout} THEN 'held_out' ELSE 'pending' END"
    if connection.vendor == "postgresql":
        insert, source, conflict = "INSERT INTO", "unnest(%s::bigint[]) AS a(id)", " ON CONFLICT DO NOTHING"
        ids: Any = people
    else:
        insert, source, conflict = "INSERT OR IGNORE INTO", "(SELECT value AS id FROM json_each(%s)) a", ""
        ids = json.dumps(people)
    with connection.cursor() as cursor:
        cursor.execute(
            f'{insert} campaigns_recipient (campaign_id, subscriber_id, variant_id, "group", status, due_at, '
            f"attempts, reason) SELECT %s, a.id, {variant}, {group}, {status}, %s, 0, '' FROM {source}{conflict}",
            [campaign.pk, connection.ops.adapt_datetimefield_value(start_time(campaign, now=now)), ids])
        return cursor.rowcount


def _due_at_local_time(campaign: Campaign, first: int, last: int, *, now: dt.datetime) -> None:
    """Set the due time of the people first..last (subscriber ids) just written to the chosen local time in their
    own time zone (one UPDATE per zone)."""
    from subscribers.models import Subscriber

    recipients = _just_written(campaign, first, last, now=now)
    zones = recipients.values_list("subscriber__timezone", flat=True).distinct()
    for zone in list(zones):
        due = dt.datetime.combine(campaign.send_on, campaign.local_time, tzinfo=policy.zone_of(zone)).astimezone(dt.UTC)
        recipients.filter(subscriber__in=Subscriber.objects.filter(timezone=zone or "")).update(due_at=due)


def _just_written(campaign: Campaign, first: int, last: int, *, now: dt.datetime) -> Any:
    """Recipients of people first..last still waiting with the start time as their due time (not yet rescheduled)."""
    return Recipient.objects.filter(campaign=campaign, subscriber_id__gte=first, subscriber_id__lte=last,
                                    status=RecipientStatus.PENDING, due_at=start_time(campaign, now=now))


def best_hours(subscriber_ids: list[int], *, days: int = 180) -> tuple[dict[int, int], int]:
    """Return each person's best local hour (when they opened or clicked most), and the audience's best hour."""
    since = timezone.now() - dt.timedelta(days=days)
    per_person: dict[int, Counter[int]] = defaultdict(Counter)
    overall: Counter[int] = Counter()
    rows = (Delivery.objects.filter(subscriber_id__in=subscriber_ids, first_opened_at__gte=since)
            .values_list("subscriber_id", "first_opened_at", "subscriber__timezone"))
    for pk, opened, zone in rows.iterator(chunk_size=5000):
        hour = opened.astimezone(policy.zone_of(zone)).hour
        per_person[pk][hour] += 1
        overall[hour] += 1
    fallback = overall.most_common(1)[0][0] if overall else 10
    return {pk: hours.most_common(1)[0][0] for pk, hours in per_person.items()}, fallback


def _due_at_best_hour(campaign: Campaign, first: int, last: int, *, now: dt.datetime) -> None:
    rows = list(_just_written(campaign, first, last, now=now).values_list("pk", "subscriber_id",
                                                                         "subscriber__timezone"))
    hours, fallback = best_hours([r[1] for r in rows])
    groups: dict[dt.datetime, list[int]] = defaultdict(list)
    for pk, subscriber_id, zone in rows:
        hour = hours.get(subscriber_id, fallback)
        due = dt.datetime.combine(campaign.send_on, dt.time(hour), tzinfo=policy.zone_of(zone)).astimezone(dt.UTC)
        groups[due].append(pk)
    for due, ids in groups.items():
        for start in range(0, len(ids), 5000):
            Recipient.objects.filter(pk__in=ids[start:start + 5000]).update(due_at=due)


# --- Dispatching -------------------------------------------------------------------


def dispatch_campaigns(*, now: dt.datetime | None = None) -> int:
    """Start due campaigns, choose due A/B winners, queue due recipients in chunks; returns chunks queued."""
    now = now or timezone.now()
    for campaign in Campaign.objects.filter(status=CampaignStatus.SCHEDULED):
        if start_time(campaign, now=now) <= now:
            start_campaign(campaign, now=now)
    queued = 0
    for campaign in Campaign.objects.filter(status__in=[CampaignStatus.SENDING, CampaignStatus.TESTING]):
        if campaign.materializing_since and campaign.materializing_since < now - STALE_MATERIALIZING:
            _materialize(campaign, now=campaign.started_at or now)  # its batches stopped: a worker died
        if (campaign.status == CampaignStatus.TESTING and campaign.winner_auto and campaign.test_ends_at
                and campaign.test_ends_at <= now and campaign.materializing_since is None
                and not _open(campaign, RecipientGroup.TEST)):
            choose_winner(campaign, now=now)
            campaign.refresh_from_db()
        queued += queue_due(campaign, now=now)
        finish_if_done(campaign, now=now)
    return queued


@transaction.atomic
def queue_due(campaign: Campaign, *, now: dt.datetime, top_up: bool = False) -> int:
    """Queue a campaign's due recipients as chunk tasks, at most its throttle per minute; returns chunks queued.

    A chunk is one ``SendChunk`` row (a range of recipient ids) and one task:
    the recipients themselves are not written until the task claims them.
    Beat's dispatch makes the full pass: chunks queued too long ago are
    dropped (their task was lost; their recipients are still waiting), and
    the queue is filled to ``SEND_QUEUE_AHEAD`` chunks with the due recipients
    no open chunk covers. A finished chunk frees one place and calls this with
    ``top_up``: one more chunk, of the due recipients after the last one
    queued. That reads a few index entries; recipients due again at earlier
    ids (deferred, retried) wait for the next full pass.
    """
    # One queuer at a time per campaign (Beat's pass and each finished chunk's top-up), so no range is queued twice.
    status = Campaign.objects.select_for_update().filter(pk=campaign.pk).values_list("status", flat=True).first()
    if status not in (CampaignStatus.SENDING, CampaignStatus.TESTING):
        return 0  # paused or cancelled (also while its recipients are still being written)
    chunks = SendChunk.objects.filter(campaign=campaign)
    if not top_up:
        chunks.filter(queued_at__lt=now - STALE_QUEUE).delete()
    budget = campaign.throttle_per_minute
    if budget:
        budget -= Recipient.objects.filter(campaign=campaign, status__in=[RecipientStatus.SENT,
                                                                           RecipientStatus.SENDING],
                                           queued_at__gte=now - dt.timedelta(minutes=1)).count()
        budget -= sum(chunks.values_list("size", flat=True))
        if budget <= 0:
            return 0
    size = settings.SEND_CHUNK_SIZE
    due = Recipient.objects.filter(campaign=campaign, status=RecipientStatus.PENDING, due_at__lte=now,
                                   variant__isnull=False)
    if top_up:
        limit = size
        last_queued = chunks.aggregate(last=Max("last_id"))["last"]
        if last_queued is not None:
            due = due.filter(pk__gt=last_queued)
    else:
        # Keep a bounded number of chunks queued ahead of the workers (each finished chunk tops it up), so a
        # big campaign never sits in the broker for longer than it takes to send that much.
        ranges = list(chunks.values_list("first_id", "last_id"))
        limit = (settings.SEND_QUEUE_AHEAD - len(ranges)) * size
        for first, last in ranges:
            due = due.exclude(pk__gte=first, pk__lte=last)
    limit = min(budget, limit) if budget else limit
    if limit <= 0:
        return 0
    ids = list(due.order_by("pk").values_list("pk", flat=True)[:limit])
    return _queue_chunks(campaign.pk, ids, size=size, now=now)


def _queue_chunks(campaign_id: int, ids: list[int], *, size: int, now: dt.datetime) -> int:
    """Queue ``ids`` (ascending) as chunks of ``size``: a ``SendChunk`` row and a task each; return how many."""
    from campaigns.sending.tasks import send_chunk_task

    parts = [ids[start:start + size] for start in range(0, len(ids), size)]
    made = SendChunk.objects.bulk_create([SendChunk(campaign_id=campaign_id, first_id=part[0], last_id=part[-1],
                                                    size=len(part), queued_at=now) for part in parts])
    for chunk in made:
        transaction.on_commit(functools.partial(send_chunk_task.delay, campaign_id, chunk.first_id, chunk.last_id))
    return len(made)


def _open(campaign: Campaign, group: str | None = None) -> bool:
    recipients = Recipient.objects.filter(campaign=campaign, status__in=OPEN)
    if group:
        recipients = recipients.filter(group=group)
    return recipients.exists()


def finish_if_done(campaign: Campaign, *, now: dt.datetime | None = None) -> bool:
    """Mark a sending campaign sent once no recipient is waiting; returns whether it finished."""
    if campaign.status != CampaignStatus.SENDING or _open(campaign):
        return False
    if Recipient.objects.filter(campaign=campaign, variant__isnull=True, group=RecipientGroup.REST).exists():
        return False
    return bool(Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.SENDING,
                                        materializing_since__isnull=True).update(
        status=CampaignStatus.SENT, finished_at=now or timezone.now()))


# --- Sending a chunk -----------------------------------------------------------------


@dataclass
class ChunkResult:
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    retrying: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@functools.lru_cache(maxsize=64)
def _compiled(variant_id: int, language: str, version: str) -> CompiledMessage:
    """Compile a variant in a language once per process and content version (``version``: its campaign's edit time)."""
    variant = Variant.objects.select_related("campaign__layout").get(pk=variant_id)
    return content_actions.compile_variant(variant, language=language)


def _languages(variant_ids: set[int]) -> dict[int, set[str]]:
    from campaigns.content.models import VariantTranslation

    found: dict[int, set[str]] = defaultdict(set)
    for variant_id, language in VariantTranslation.objects.filter(variant_id__in=variant_ids) \
            .values_list("variant_id", "language"):
        found[variant_id].add(language)
    return found


def send_chunk(campaign_id: int, first_id: int, last_id: int, *, now: dt.datetime | None = None) -> ChunkResult:
    """Send one chunk: a campaign's due recipients with ids first_id..last_id; safe to run twice.

    The claim takes only recipients still waiting and skips rows another
    transaction holds locked (the same chunk running twice), so no one is
    claimed twice. The chunk's row goes when it has run; anyone in its range
    still waiting then is queued again by Beat's next pass.
    """
    now = now or timezone.now()
    result = ChunkResult()
    campaign = Campaign.objects.select_related("topic").get(pk=campaign_id)
    try:
        _send_chunk(campaign, first_id, last_id, now=now, result=result)
    finally:  # even when it failed: its range must not stay taken until the stale-chunk reset
        SendChunk.objects.filter(campaign_id=campaign_id, first_id=first_id, last_id=last_id).delete()
    with transaction.atomic():
        if not finish_if_done(campaign) and campaign.status in (CampaignStatus.SENDING, CampaignStatus.TESTING):
            queue_due(campaign, now=timezone.now(), top_up=True)
    return result


def _claim(campaign_id: int, first_id: int, last_id: int, *, now: dt.datetime) -> list[tuple[int, int, int, int]]:
    """Mark the due, waiting recipients of a range as handed to the sender; return (id, person, variant, attempts).

    At most ``SEND_CHUNK_SIZE`` of them, the first by id: a range queued
    with that many due people can hold more that became due since (another
    time zone, a deferral ending); those wait for the next pass. One
    statement on PostgreSQL: it locks and updates each row once.
    """
    waiting = Recipient.objects.filter(campaign_id=campaign_id, pk__gte=first_id, pk__lte=last_id,
                                       status=RecipientStatus.PENDING, due_at__lte=now, variant__isnull=False
                                       ).order_by("pk")[:settings.SEND_CHUNK_SIZE]
    if connection.vendor == "postgresql":
        sql, params = (waiting.select_for_update(skip_locked=True).values("pk").query.sql_with_params())
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE campaigns_recipient SET status = %s, queued_at = %s WHERE id IN ({sql}) "
                           "RETURNING id, subscriber_id, variant_id, attempts",
                           [RecipientStatus.SENDING, now, *params])
            return sorted(cursor.fetchall())
    claimed = list(waiting.select_for_update(skip_locked=True)
                   .values_list("pk", "subscriber_id", "variant_id", "attempts"))
    Recipient.objects.filter(pk__in=[row[0] for row in claimed]).update(status=RecipientStatus.SENDING,
                                                                         queued_at=now)
    return claimed


def _send_chunk(campaign: Campaign, first_id: int, last_id: int, *, now: dt.datetime, result: ChunkResult) -> None:
    if campaign.status not in (CampaignStatus.SENDING, CampaignStatus.TESTING):
        return  # paused: its recipients wait for the resume; cancelled: they were skipped
    with transaction.atomic():
        claimed = _claim(campaign.pk, first_id, last_id, now=now)
        if not claimed:
            return
        # Read once for the gate and the content (pause and frequency; language and personalization).
        preferences = sending_preferences_for(subscriber_ids=[row[1] for row in claimed])
        to_send = _apply_policy(campaign, claimed, now=now, result=result, preferences=preferences)
    if to_send:
        _send(campaign, to_send, now=now, result=result, preferences=preferences)


def consent_grants(subscriber_ids: list[int]) -> dict[int, dict[str, str]]:
    """Return each person's latest email-marketing grant (when, how, which notice), for a delivery's “why”."""
    from subscribers.models import ConsentRecord

    grants = ConsentRecord.objects.filter(subscriber_id__in=subscriber_ids, purpose="email_marketing", granted=True)
    if connection.features.can_distinct_on_fields:  # PostgreSQL: only each person's latest grant is read
        grants = grants.order_by("subscriber_id", "-occurred_at", "-id").distinct("subscriber_id")
    else:
        grants = grants.order_by("subscriber_id", "occurred_at", "id")  # the latest one is kept, below
    consents: dict[int, dict[str, str]] = {}
    for pk, at, method, notice in grants.values_list("subscriber_id", "occurred_at", "method", "notice_version"):
        consents[pk] = {"granted_at": at.isoformat(), "method": method, "notice": notice}
    return consents


def _why(campaign: Campaign, subscriber_ids: list[int], now: dt.datetime) -> dict[int, dict[str, Any]]:
    """Say why each person gets the campaign: the campaign, the audience segment they are in, topic, consent."""
    from campaigns.content.personalize import segment_memberships

    included = list(campaign.audience.filter(exclude=False).values_list("segment__name", flat=True))
    segments = segment_memberships(subscriber_ids, names=included, now=now) if len(included) > 1 else {
        pk: set(included) for pk in subscriber_ids}
    consents = consent_grants(subscriber_ids)
    return {pk: {"campaign": campaign.name, "campaign_id": campaign.pk,
                 "segment": ", ".join(sorted(segments.get(pk, ()))),
                 "topic": campaign.topic.name if campaign.topic else "", "consent": consents.get(pk, {})}
            for pk in subscriber_ids}


def _apply_policy(campaign: Campaign, claimed: list[tuple[int, int, int, int]], *, now: dt.datetime,
                  result: ChunkResult, preferences: dict[int, Any] | None = None) -> list[tuple[int, int, int, int]]:
    """Record the gate's skips and deferrals, create the deliveries to send, and return what to send."""
    decisions = policy.decide([row[1] for row in claimed], topic_id=campaign.topic_id, now=now,
                              preferences=preferences)
    skipped, send = [], []
    deferred: dict[tuple[dt.datetime | None, str], list[int]] = defaultdict(list)
    for row in claimed:
        decision = decisions.get(row[1], policy.Decision(policy.SKIP, "erased"))
        result.reasons[decision.reason or "sent"] += 1
        if decision.action == policy.SEND:
            send.append(row)
        elif decision.action == policy.DEFER:
            deferred[(decision.until, decision.explanation[:300])].append(row[0])
        else:
            skipped.append((row, decision))
    for (until, explanation), ids in deferred.items():
        _update_recipients(ids, status=RecipientStatus.PENDING, due_at=until, reason=explanation)
        result.deferred += len(ids)
    if skipped:
        why = _why(campaign, [row[1] for row, _ in skipped], now)
        by_reason: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
        for row, decision in skipped:
            by_reason[decision.explanation].append(row)
        for explanation, rows in by_reason.items():
            deliveries = delivery_actions.create_deliveries(
                [(r[1], message_key(campaign.pk, r[2]), why[r[1]]) for r in rows],
                status=DeliveryStatus.SKIPPED, reason=explanation)
            _set_recipients([(r[0], deliveries[(message_key(campaign.pk, r[2]), r[1])]) for r in rows],
                            status=RecipientStatus.SKIPPED, reason=explanation[:300])
        result.skipped += len(skipped)
    if not send:
        return []
    why = _why(campaign, [row[1] for row in send], now)
    deliveries = delivery_actions.create_deliveries(
        [(r[1], message_key(campaign.pk, r[2]), why[r[1]]) for r in send])
    already_sent = set(Delivery.objects.filter(pk__in=list(deliveries.values()), sent_at__isnull=False)
                       .values_list("pk", flat=True))
    out = []
    for r in send:
        delivery_id = deliveries[(message_key(campaign.pk, r[2]), r[1])]
        if delivery_id in already_sent:
            Recipient.objects.filter(pk=r[0]).update(status=RecipientStatus.SENT, delivery_id=delivery_id)
            continue
        out.append((r[0], r[1], r[2], delivery_id))
    # The claim marked them handed to the ESP: from this commit on, a crash is resolved by reconcile_sends (which
    # finds each one's delivery by message and person), never by resending blindly.
    return out


def _set_recipients(pairs: list[tuple[int, int]], *, status: str, reason: str | None = None,
                    queued_at: dt.datetime | None = None, only_if: str | None = None) -> None:
    """Set recipients' status and delivery ids, (recipient id, delivery id) each: one statement on PostgreSQL.

    ``only_if``: leave rows whose status is not this one as they are.
    """
    if not pairs:
        return
    values: dict[str, Any] = {"status": status}
    if reason is not None:
        values["reason"] = reason
    if queued_at is not None:
        values["queued_at"] = queued_at
    if connection.vendor == "postgresql":
        sets = ", ".join(f"{name} = %s" for name in values)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE campaigns_recipient r SET {sets}, delivery_id = v.delivery "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, delivery) WHERE r.id = v.id"
                + (" AND r.status = %s" if only_if else ""),
                [*values.values(), [p[0] for p in pairs], [p[1] for p in pairs], *([only_if] if only_if else [])])
        return
    for recipient_id, delivery_id in pairs:
        rows = Recipient.objects.filter(pk=recipient_id)
        (rows.filter(status=only_if) if only_if else rows).update(delivery_id=delivery_id, **values)


def build_message(campaign: Campaign, rendered: Any, *, delivery_id: int, to: str, headers: dict[str, str],
                  from_name: str, tags: list[str] | None = None) -> Any:
    """Return the AnymailMessage for one recipient: rendered parts, one-click unsubscribe headers, delivery id."""
    from anymail.message import AnymailMessage

    from campaigns.api import anymail_metadata

    from_email = campaign.from_email or settings.DEFAULT_FROM_EMAIL
    sender_address = f"{from_name} <{from_email}>" if from_name and "<" not in from_email else from_email
    message = AnymailMessage(subject=rendered.subject, body=rendered.text, from_email=sender_address, to=[to],
                             reply_to=[campaign.reply_to] if campaign.reply_to else None, headers=headers)
    message.attach_alternative(rendered.html, "text/html")
    message.metadata = anymail_metadata(delivery_id=delivery_id)
    message.tags = tags if tags is not None else [f"campaign-{campaign.pk}"]
    return message


@dataclass(frozen=True)
class Outgoing:
    """One message to render and hand to the ESP; ``extra`` adds to the person's context (a journey's trigger)."""

    subscriber_id: int
    variant_id: int
    delivery_id: int
    extra: dict[str, Any] | None = None


def deliver(campaign: Campaign, outgoing: list[Outgoing], *, now: dt.datetime,
            snapshot_since: dt.datetime | None = None, tags: list[str] | None = None,
            preferences: dict[int, Any] | None = None) -> list[tuple[Outgoing, sender.Outcome]]:
    """Render each message for its recipient and hand it to the ESP; returns what the ESP said about each.

    Campaigns and journeys both send through here. People who no longer
    exist (erased mid-send) are left out of the answer.
    """
    from campaigns.api import tracked_html

    variant_ids = {o.variant_id for o in outgoing}
    variants = {v.pk: v for v in Variant.objects.filter(pk__in=variant_ids)}
    translations = _languages(variant_ids)
    # What the compiled content depends on: the campaign run and the variant's text (never a stale copy).
    version = "|".join([str(campaign.pk), str(campaign.started_at), str(campaign.updated_at), *(
        hashlib.sha256(f"{v.subject}\0{v.preheader}\0{v.html}\0{v.text}".encode()).hexdigest()[:16]
        for _, v in sorted(variants.items()))])
    segments: set[str] = set()
    for variant_id in variant_ids:
        segments.update(_compiled(variant_id, "", version).segments)
    subscriber_ids = [o.subscriber_id for o in outgoing]
    contexts = recipient_contexts(subscriber_ids, segments=segments, recommendations=True,
                                  allow_sensitive=bool(campaign.sensitive_justification.strip()), now=now,
                                  snapshot_since=snapshot_since, preferences=preferences)
    # The last guard against "Hi ,": the check at Schedule proved that no one in the audience then lacked a
    # value the content prints without a fallback, but people can join the audience (or lose the value)
    # before their turn comes. Such a person is not sent the message; the reason says which value.
    rendered_for, blocked = [], []
    needs: dict[tuple[int, str], frozenset[str]] = {}  # read from the template once per variant and language
    for item in outgoing:
        if item.subscriber_id not in contexts:
            continue
        recipient = contexts[item.subscriber_id]
        context = {**recipient.context, **item.extra} if item.extra else recipient.context
        language = recipient.locale if recipient.locale in translations.get(item.variant_id, ()) else ""
        compiled = _compiled(item.variant_id, language, version)
        key = (item.variant_id, language)
        if key not in needs:
            needs[key] = unguarded_names(compiled)
        lacking = missing_for(needs[key], context)
        if lacking:
            blocked.append((item, sender.Outcome(sender.REJECTED, detail=(
                f"Not sent: {{{{ {lacking} }}}} has no fallback and this person has no value for it."))))
        else:
            rendered_for.append((item, recipient, context, compiled))

    def messages() -> Any:
        # Rendered one by one while earlier ones are already on their way to the ESP.
        for item, recipient, context, compiled in rendered_for:
            rendered = compiled.render(context, locale=recipient.locale, currency=recipient.currency)
            if settings.OWN_TRACKING:
                rendered = type(rendered)(rendered.subject,
                                          tracked_html(rendered.html, delivery_id=item.delivery_id), rendered.text)
            variant = variants[item.variant_id]
            yield build_message(campaign, rendered, delivery_id=item.delivery_id,
                                to=recipient.context["email"], headers=recipient.headers,
                                from_name=variant.from_name or campaign.from_name, tags=tags)

    sent = [item for item, *_ in rendered_for]
    return list(zip(sent, sender.send_all(messages()), strict=True)) + blocked


def _send(campaign: Campaign, rows: list[tuple[int, int, int, int]], *, now: dt.datetime,
          result: ChunkResult, preferences: dict[int, Any] | None = None) -> None:
    """Render and send, then record each outcome; transient errors are retried later with a backoff."""
    recipient_of = {r[3]: r[0] for r in rows}
    answers = deliver(campaign, [Outgoing(r[1], r[2], r[3]) for r in rows], now=now,
                      snapshot_since=campaign.started_at, preferences=preferences)
    order = [(recipient_of[item.delivery_id], item.delivery_id) for item, _ in answers]
    _record(campaign, order, [outcome for _, outcome in answers], now=now, result=result)


def esp_name() -> str:
    """Name the ESP by the Anymail backend module the mail backend is or extends ("postmark"), else "local"."""
    module = sender.anymail_module(settings.EMAIL_BACKEND)
    return module.split(".")[2] if module else "local"


def _record(campaign: Campaign, order: list[tuple[int, int]], outcomes: list[sender.Outcome], *,
            now: dt.datetime, result: ChunkResult) -> None:
    accepted, rejected, transient = [], [], []
    for (recipient_id, delivery_id), outcome in zip(order, outcomes, strict=True):
        if outcome.kind == sender.ACCEPTED:
            accepted.append((recipient_id, delivery_id, outcome.message_id))
        elif outcome.kind == sender.REJECTED:
            rejected.append((recipient_id, delivery_id, outcome.detail))
        else:
            transient.append((recipient_id, delivery_id, outcome.detail))
    with transaction.atomic():
        delivery_actions.record_sent_many([(d, m) for _, d, m in accepted], esp_name=esp_name(), sent_at=now)
        _set_recipients([(r, d) for r, d, _ in accepted], status=RecipientStatus.SENT, reason="")
        delivery_actions.record_failed_many([(d, why) for _, d, why in rejected], rejected=True)
        for recipient_id, delivery_id, why in rejected:
            Recipient.objects.filter(pk=recipient_id).update(status=RecipientStatus.FAILED, reason=why[:300],
                                                             delivery_id=delivery_id)
        for recipient_id, delivery_id, why in transient:
            _retry_later(recipient_id, delivery_id, why, now=now, result=result)
    result.sent += len(accepted)
    result.failed += len(rejected)
    if transient and not accepted:
        _note_failed_chunk(campaign, transient[0][2])
    elif accepted:
        Campaign.objects.filter(pk=campaign.pk, failed_chunks__gt=0).update(failed_chunks=0)


def _update_recipients(ids: list[int], **values: Any) -> None:
    for start in range(0, len(ids), 1000):
        Recipient.objects.filter(pk__in=ids[start:start + 1000]).update(**values)


def _retry_later(recipient_id: int, delivery_id: int, why: str, *, now: dt.datetime, result: ChunkResult) -> None:
    """Put a recipient back after a transient ESP error, with an exponential backoff; fail after the last try."""
    row = Recipient.objects.filter(pk=recipient_id).values_list("attempts", flat=True).first() or 0
    attempts = row + 1
    if attempts >= settings.SEND_MAX_ATTEMPTS:
        Recipient.objects.filter(pk=recipient_id).update(status=RecipientStatus.FAILED, attempts=attempts,
                                                         reason=f"gave up after {attempts} tries: {why}"[:300],
                                                         delivery_id=delivery_id)
        delivery_actions.record_failed_many([(delivery_id, why)], rejected=False)
        result.failed += 1
        return
    backoff = dt.timedelta(seconds=min(3600, settings.SEND_RETRY_SECONDS * 2 ** (attempts - 1)))
    Recipient.objects.filter(pk=recipient_id).update(status=RecipientStatus.PENDING, attempts=attempts,
                                                     due_at=now + backoff, reason=f"will retry: {why}"[:300],
                                                     delivery_id=delivery_id)
    result.retrying += 1


def _note_failed_chunk(campaign: Campaign, why: str) -> None:
    """Count a chunk in which the ESP accepted nothing; after several in a row, pause the campaign."""
    Campaign.objects.filter(pk=campaign.pk).update(failed_chunks=F("failed_chunks") + 1)
    failed = Campaign.objects.filter(pk=campaign.pk).values_list("failed_chunks", flat=True).first() or 0
    if failed >= settings.SEND_PAUSE_AFTER_FAILED_CHUNKS:
        Campaign.objects.filter(pk=campaign.pk, status__in=[CampaignStatus.SENDING, CampaignStatus.TESTING]) \
            .update(status=CampaignStatus.PAUSED, status_note=f"Paused: the ESP failed {failed} times in a row "
                                                              f"({why[:200]}). Resume when it works again.")
        logger.warning("Campaign %s paused after %s failed chunks: %s", campaign.pk, failed, why)


# --- Crash recovery --------------------------------------------------------------------


def reconcile_sends(*, now: dt.datetime | None = None) -> tuple[int, int]:
    """Resolve recipients a crashed worker left "handed to the ESP"; returns (confirmed sent, queued again).

    After ``SEND_RECONCILE_SECONDS``: a delivery the ESP's events already
    marked sent is done. For the rest, an ESP whose API can be asked
    (Postmark's message search, by our delivery id in the metadata) says which
    it accepted; those are recorded as sent and the others go out again. With
    an ESP that cannot be asked, the events are all there is: what none
    reported is sent again.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.SEND_RECONCILE_SECONDS)
    stalled = Recipient.objects.filter(status=RecipientStatus.SENDING, queued_at__lt=cutoff)
    _find_deliveries(stalled.filter(delivery__isnull=True))
    reached = Q(delivery__sent_at__isnull=False) | Q(delivery__status__in=[
        DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.OPENED, DeliveryStatus.CLICKED,
        DeliveryStatus.SOFT_BOUNCED, DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED, DeliveryStatus.UNSUBSCRIBED])
    confirmed = stalled.filter(reached).update(status=RecipientStatus.SENT)
    unknown = list(stalled.exclude(reached).values_list("pk", "delivery_id"))
    accepted = sender.esp_accepted([d for _, d in unknown if d]) or set()
    if accepted:
        delivery_actions.record_sent_many([(d, "") for d in sorted(accepted)], esp_name=esp_name(), sent_at=now)
        _update_recipients([r for r, d in unknown if d in accepted], status=RecipientStatus.SENT,
                           reason="the ESP confirmed it after a worker crash")
    again = [r for r, d in unknown if d not in accepted]
    _update_recipients(again, status=RecipientStatus.PENDING, due_at=now,
                       reason="sent again: the ESP never received the first attempt")
    confirmed += len(accepted)
    if confirmed or again:
        logger.info("Reconciled sends: %s confirmed by the ESP, %s queued again", confirmed, len(again))
    return confirmed, len(again)


def _find_deliveries(recipients: Any) -> None:
    """Set the delivery of recipients handed to the ESP by a chunk that never recorded the answer.

    Their deliveries were created in the claim's transaction, one per message
    and person. Any without one (none are expected) go back to waiting: they
    never reached the ESP.
    """
    rows = list(recipients.values_list("pk", "campaign_id", "variant_id", "subscriber_id"))
    for start in range(0, len(rows), 1000):
        part = [(pk, (message_key(campaign_id, variant_id), person))
                for pk, campaign_id, variant_id, person in rows[start:start + 1000]]
        found = {(key, person): pk for pk, key, person in Delivery.objects.filter(
            message_key__in={key for _, (key, _) in part}, subscriber_id__in=[person for _, (_, person) in part])
            .values_list("pk", "message_key", "subscriber_id")}
        pairs = [(pk, found[which]) for pk, which in part if which in found]
        # Only rows still handed to the ESP: a slow chunk may have recorded the answer since they were read.
        _set_recipients(pairs, status=RecipientStatus.SENDING, only_if=RecipientStatus.SENDING)
        lost = [pk for pk, which in part if which not in found]
        Recipient.objects.filter(pk__in=lost, status=RecipientStatus.SENDING).update(
            status=RecipientStatus.PENDING, reason="")


# --- Pause, resume, cancel, winners -----------------------------------------------------------


def pause_campaign(campaign: Campaign) -> bool:
    """Stop handing out new chunks; chunks already queued put their recipients back. Resume continues."""
    return bool(Campaign.objects.filter(pk=campaign.pk, status__in=[CampaignStatus.SENDING, CampaignStatus.TESTING,
                                                                    CampaignStatus.SCHEDULED])
                .update(status=CampaignStatus.PAUSED, status_note="Paused by staff."))


def resume_campaign(campaign: Campaign) -> bool:
    """Continue a paused campaign where it stopped (a scheduled one that never started is scheduled again)."""
    campaign.refresh_from_db()
    if campaign.status != CampaignStatus.PAUSED:
        return False
    if campaign.started_at is None:
        status = CampaignStatus.SCHEDULED
    elif campaign.test_ends_at and not campaign.winner_id and Recipient.objects.filter(
            campaign=campaign, group=RecipientGroup.REST).exists():
        status = CampaignStatus.TESTING
    else:
        status = CampaignStatus.SENDING
    Campaign.objects.filter(pk=campaign.pk).update(status=status, status_note="", failed_chunks=0)
    transaction.on_commit(_dispatch_soon)
    return True


@transaction.atomic
def cancel_campaign(campaign: Campaign) -> int:
    """Stop a campaign for good; recipients not yet sent are skipped. Returns how many were left unsent."""
    Campaign.objects.filter(pk=campaign.pk).exclude(status__in=[CampaignStatus.SENT, CampaignStatus.CANCELLED]) \
        .update(status=CampaignStatus.CANCELLED, finished_at=timezone.now(), status_note="Cancelled by staff.")
    SendChunk.objects.filter(campaign=campaign).delete()
    return Recipient.objects.filter(campaign=campaign, status=RecipientStatus.PENDING) \
        .update(status=RecipientStatus.SKIPPED, reason="campaign cancelled")


@transaction.atomic
def choose_winner(campaign: Campaign, *, variant: Variant | None = None, now: dt.datetime | None = None) -> Variant:
    """Pick the A/B winner (by the campaign's metric, or the given variant) and send it to the rest."""
    from campaigns.sending.results import variant_results

    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if variant is None:
        results = variant_results(campaign)
        best = max(results, key=lambda r: (r.metric(campaign.winner_metric), -r.variant_id))
        variant = Variant.objects.get(pk=best.variant_id)
    Recipient.objects.filter(campaign=campaign, group=RecipientGroup.REST, variant__isnull=True).update(
        variant=variant)
    status = campaign.status if campaign.status == CampaignStatus.PAUSED else CampaignStatus.SENDING
    Campaign.objects.filter(pk=campaign.pk).update(winner=variant, status=status)
    transaction.on_commit(_dispatch_soon)
    return variant
