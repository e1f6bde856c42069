"""Run journeys: enroll people when a trigger fires, move them step by step, send through the shared gate.

The engine (docs/journeys.md):

* ``enroll`` adds people a trigger chose, as the journey's entry rule and
  group allow; at most one open enrollment per journey and person (a
  partial unique index), so two triggers racing enroll a person once.
* ``advance_due`` claims due enrollments in batches with ``SELECT … FOR
  UPDATE SKIP LOCKED`` (two schedulers never take the same people) and runs
  each through its steps until it has to wait. Before every step the
  journey's goal is checked: people who reached it leave.
* A send step asks the policy gate (the same as campaigns): **send**,
  **defer** (the person stays at the step until then) or **skip** (recorded
  with its reason; the person moves on). Sending is three short phases: the
  deliveries are created (unique per message and person, the message key
  carries the step and the person's trip number) and the enrollment marked
  "handed to the ESP"; the messages go out; the outcome is recorded and the
  person moves on. A worker that dies in between leaves the enrollment
  "handed to the ESP": when it comes due again, deliveries the ESP already
  reported or confirms are recorded, and only the rest are sent again.
* Editing an active journey keeps people where they are: they continue
  from the step they are at (by its key) with the new definition; people
  at a step that was removed leave cleanly, saying so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, JSONField, Max, Q
from django.utils import timezone

from campaigns import actions as delivery_actions
from campaigns.journeys import graph
from campaigns.journeys.models import (
    Engagement,
    Enrollment,
    EnrollmentState,
    EntryRule,
    Journey,
    JourneyStatus,
    JourneyStep,
    JourneyStepStats,
    StepKind,
    TriggerKind,
    UpdateAction,
    WaitUnit,
)
from campaigns.models import Delivery, DeliveryStatus
from campaigns.sending import actions as sending_actions
from campaigns.sending import policy, sender

logger = logging.getLogger(__name__)

OPEN_STATES = (EnrollmentState.ACTIVE, EnrollmentState.SENDING)
NOT_STARTED = ""  # step_key of an enrollment that has not arrived at its first step yet
PATH_LIMIT = 60
UNIT_SECONDS = {WaitUnit.MINUTES: 60, WaitUnit.HOURS: 3600, WaitUnit.DAYS: 86400, WaitUnit.WEEKS: 7 * 86400}
REACHED = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.OPENED, DeliveryStatus.CLICKED,
           DeliveryStatus.SOFT_BOUNCED, DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED,
           DeliveryStatus.UNSUBSCRIBED)


class JourneyInvalid(Exception):
    """A journey that cannot be saved or turned on; ``problems`` names each step at fault."""

    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


def message_key(journey_id: int, step_key: str, entry: int) -> str:
    return f"journey:{journey_id}:step:{step_key}:{entry}"


def message_prefix(journey_id: int, step_key: str) -> str:
    return f"journey:{journey_id}:step:{step_key}:"


# --- Checking, saving and switching journeys -----------------------------------------------


def journey_problems(journey: Journey, steps: list[JourneyStep] | None = None, *,
                     activating: bool = False) -> list[str]:
    """Return what stops a journey from being saved (its graph) or, ``activating``, from running.

    A draft may be saved with its trigger, topic or emails unfinished; turning
    it on (or saving it while on) needs all of them.
    """
    from campaigns.content.actions import check_campaign

    steps = list(journey.steps.all()) if steps is None else steps
    problems = graph.graph_problems(steps)
    emails = {s.email_id: s for s in steps if s.kind == StepKind.SEND_EMAIL and s.email_id}
    if activating:
        problems = graph.trigger_problems(journey) + problems
        if emails and journey.topic_id is None:
            problems.append("Choose the topic the journey's emails belong to (what people subscribed to).")
        from campaigns.content.models import Campaign

        for email in Campaign.objects.filter(pk__in=list(emails)):
            for problem in check_campaign(email):
                if problem.level == "error":
                    problems.append(f"Step “{emails[email.pk].key}” (email “{email.name}”): {problem.message}")
    return problems


@transaction.atomic
def save_journey(journey: Journey, steps: list[JourneyStep], *, deleted: Iterable[JourneyStep] = ()) -> Journey:
    """Save a journey with its steps after checking the graph; raises JourneyInvalid naming each step at fault.

    People waiting at a removed step leave the journey (“the step was
    removed”); everyone else continues from their step under the new version.
    """
    deleted = list(deleted)
    problems = journey_problems(journey, steps, activating=journey.status == JourneyStatus.ACTIVE)
    if problems:
        raise JourneyInvalid(problems)
    now = timezone.now()
    journey.updated_at = now
    if journey.pk:
        journey.version = F("version") + 1
    journey.save()
    journey.refresh_from_db(fields=["version"])
    for step in deleted:
        if step.pk:
            step.delete()
    for step in steps:
        step.journey = journey
        step.save()
    keys = [s.key for s in steps]
    removed = Enrollment.objects.filter(journey=journey, state__in=OPEN_STATES).exclude(step_key__in=keys) \
        .exclude(step_key=NOT_STARTED)
    for enrollment in removed.select_for_update():
        _finish(enrollment, EnrollmentState.EXITED, "their step was removed from the journey", now)
        enrollment.save(update_fields=["state", "finished_at", "note", "next_run_at", "path"])
    if journey.status == JourneyStatus.ACTIVE:
        _track_trigger_segment(journey)
    return journey


def _track_trigger_segment(journey: Journey) -> None:
    from campaigns.segments.models import Segment

    if journey.trigger == TriggerKind.SEGMENT_ENTRY and journey.trigger_segment_id:
        Segment.objects.filter(pk=journey.trigger_segment_id, track_membership=False).update(track_membership=True)


@transaction.atomic
def activate_journey(journey: Journey, *, now: dt.datetime | None = None) -> Journey:
    """Turn a journey on (or resume it); raises JourneyInvalid listing every problem."""
    from campaigns.segments.models import SegmentMembershipChange

    now = now or timezone.now()
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status == JourneyStatus.ARCHIVED:
        raise JourneyInvalid(["An archived journey stays off; make a new journey to start again."])
    problems = journey_problems(journey, activating=True)
    if problems:
        raise JourneyInvalid(problems)
    if journey.status == JourneyStatus.ACTIVE:
        return journey
    resuming = journey.status == JourneyStatus.PAUSED
    journey.status = JourneyStatus.ACTIVE
    if not resuming:
        # Only what happens from now on starts the journey: not the segment's past entries.
        journey.activated_at = now
        journey.segment_cursor = SegmentMembershipChange.objects.aggregate(m=Max("pk"))["m"] or 0
        journey.swept_at = None
    journey.updated_at = now
    journey.save(update_fields=["status", "activated_at", "segment_cursor", "swept_at", "updated_at"])
    _track_trigger_segment(journey)
    transaction.on_commit(_advance_soon)
    return journey


def pause_journey(journey: Journey) -> bool:
    """Stop enrolling and advancing; people keep their place until the journey is resumed."""
    return bool(Journey.objects.filter(pk=journey.pk, status=JourneyStatus.ACTIVE)
                .update(status=JourneyStatus.PAUSED, updated_at=timezone.now()))


@transaction.atomic
def archive_journey(journey: Journey, *, now: dt.datetime | None = None) -> int:
    """Turn a journey off for good; everyone in it leaves. Returns how many left."""
    now = now or timezone.now()
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.ARCHIVED, updated_at=now)
    return Enrollment.objects.filter(journey=journey, state__in=OPEN_STATES).update(
        state=EnrollmentState.EXITED, finished_at=now, next_run_at=None, note="the journey was archived")


def _advance_soon() -> None:
    from campaigns.journeys.tasks import advance_journeys_task

    advance_journeys_task.delay()


# --- Enrolling -------------------------------------------------------------------------------


def enroll(journey: Journey, subscriber_ids: Iterable[int], *, now: dt.datetime | None = None,
           trigger_data: dict[int, dict[str, Any]] | None = None,
           start_at: dict[int, dt.datetime] | None = None, wake: bool = True) -> int:
    """Enroll the people a trigger chose, as the entry rule and group allow; returns how many entered.

    ``start_at`` lets a person start later (a birthday at 09:00 local time);
    ``trigger_data`` is kept with the enrollment (an event's properties).
    ``wake``: queue an advancing task after the commit for people due now
    (a replay that advances them itself says no).
    """
    from subscribers.models import BLOCKED_STATUSES, Subscriber

    now = now or timezone.now()
    wanted = set(subscriber_ids)
    if journey.status != JourneyStatus.ACTIVE or not wanted:
        return 0
    entered = 0
    for start in range(0, len(wanted), 5000):
        chunk = sorted(wanted)[start:start + 5000]
        with transaction.atomic():
            people = set(Subscriber.objects.filter(pk__in=chunk).exclude(status__in=BLOCKED_STATUSES)
                         .values_list("pk", flat=True))
            entries = allowed_entries(journey, people, now=now)
            rows = [Enrollment(journey=journey, subscriber_id=pk, entry=entry, step_key=NOT_STARTED,
                               next_run_at=(start_at or {}).get(pk, now), due_at=(start_at or {}).get(pk, now),
                               entered_at=now, step_entered_at=now, trigger_data=(trigger_data or {}).get(pk, {}))
                    for pk, entry in entries.items()]
            # The partial unique index leaves out anyone a concurrent trigger enrolled meanwhile.
            Enrollment.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
            by_entry: dict[int, list[int]] = defaultdict(list)
            for pk, entry in entries.items():
                by_entry[entry].append(pk)
            for entry, pks in by_entry.items():
                entered += Enrollment.objects.filter(journey=journey, subscriber_id__in=pks, entry=entry,
                                                     entered_at=now).count()
    if wake and entered and any(at <= now for at in ((start_at or {}).get(pk, now) for pk in wanted)):
        transaction.on_commit(_advance_soon)
    return entered


def allowed_entries(journey: Journey, people: set[int], *, now: dt.datetime) -> dict[int, int]:
    """Return the entry number each person would start, for those the entry rule and group let in."""
    history = {row["subscriber_id"]: row for row in (
        Enrollment.objects.filter(journey=journey, subscriber_id__in=people).values("subscriber_id")
        .annotate(last_entry=Max("entry"), last_entered=Max("entered_at"),
                  open=Max("id", filter=Q(state__in=OPEN_STATES))))}
    busy: set[int] = set()
    if journey.group:
        busy = set(Enrollment.objects.filter(journey__group=journey.group, state__in=OPEN_STATES,
                                             subscriber_id__in=people).exclude(journey=journey)
                   .values_list("subscriber_id", flat=True))
    allowed = {}
    for pk in people - busy:
        row = history.get(pk)
        if row is None:
            allowed[pk] = 1
            continue
        if row["open"] is not None or journey.entry_rule == EntryRule.ONCE:
            continue
        if journey.entry_rule == EntryRule.ONCE_PER_PERIOD and \
                row["last_entered"] > now - dt.timedelta(days=journey.reentry_days or 0):
            continue
        allowed[pk] = row["last_entry"] + 1
    return allowed


def active_journeys(trigger: str | None = None) -> list[Journey]:
    journeys = Journey.objects.filter(status=JourneyStatus.ACTIVE)
    return list(journeys.filter(trigger=trigger) if trigger else journeys)


def on_subscribed(subscriber_id: int) -> int:
    """Enroll a person who just subscribed in the active signup journeys; returns how many journeys."""
    return sum(enroll(journey, [subscriber_id]) for journey in active_journeys(TriggerKind.SIGNUP))


def matches(properties: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Say whether an event's properties match a journey's filters (each named property equals its value)."""
    return all(str(properties.get(key)) == str(value) for key, value in (filters or {}).items())


def latest_events(name: str, filters: dict[str, Any], people: set[int], *,
                  since: dt.datetime) -> dict[int, dt.datetime]:
    """Return, per person, when they last did the event (matching the property filters) since ``since``."""
    from subscribers.models import Event

    condition = Q(name=name)
    for key, value in (filters or {}).items():
        condition &= Q(**{f"properties__{key}": value})
    latest: dict[int, dt.datetime] = {}
    for pk, at in Event.objects.filter(condition, subscriber_id__in=people, occurred_at__gte=since) \
            .values_list("subscriber_id", "occurred_at"):
        latest[pk] = max(at, latest.get(pk, at))
    return latest


def handle_events(events: list[dict[str, Any]], *, now: dt.datetime | None = None) -> dict[str, int]:
    """React to tracked events: start event journeys, end journeys whose goal they are, wake event waits.

    ``events``: dicts with subscriber_id, name, properties, occurred_at (ISO
    text or datetime). Returns counts of entered, finished and woken.
    """
    now = now or timezone.now()
    counts: Counter[str] = Counter()
    journeys = active_journeys()
    for journey in journeys:
        if journey.trigger == TriggerKind.EVENT:
            chosen = {e["subscriber_id"]: e for e in events
                      if e["name"] == journey.trigger_event and matches(e.get("properties") or {},
                                                                          journey.trigger_filters)}
            if chosen:
                counts["entered"] += enroll(journey, chosen, now=now, trigger_data={
                    pk: {"event": e["name"], "properties": e.get("properties") or {},
                         "occurred_at": str(e.get("occurred_at") or "")} for pk, e in chosen.items()})
        if journey.exit_event:
            reached = {e["subscriber_id"] for e in events
                       if e["name"] == journey.exit_event and matches(e.get("properties") or {}, journey.exit_filters)}
            if reached:
                counts["finished"] += _exit_for_goal(journey, reached, now=now)
    waits = JourneyStep.objects.filter(journey__status=JourneyStatus.ACTIVE, kind=StepKind.WAIT_EVENT,
                                       event_name__in={e["name"] for e in events})
    for step in waits:
        people = [e["subscriber_id"] for e in events
                  if e["name"] == step.event_name and matches(e.get("properties") or {}, step.event_filters)]
        counts["woken"] += Enrollment.objects.filter(
            journey_id=step.journey_id, step_key=step.key, state=EnrollmentState.ACTIVE,
            subscriber_id__in=people).update(next_run_at=now)
    if counts["woken"]:
        transaction.on_commit(_advance_soon)
    return dict(counts)


def _exit_for_goal(journey: Journey, people: set[int], *, now: dt.datetime) -> int:
    """End the open enrollments of people who reached the journey's goal (not those mid-send)."""
    with transaction.atomic():
        rows = list(Enrollment.objects.select_for_update(**_skip_locked()).filter(
            journey=journey, subscriber_id__in=people, state=EnrollmentState.ACTIVE))
        stats: Counter[tuple[str, str]] = Counter()
        for enrollment in rows:
            stats[(enrollment.step_key, "exited")] += 1
            _finish(enrollment, EnrollmentState.EXITED, f"reached the goal: {journey.exit_event}", now)
        save_enrollments(rows, ["state", "finished_at", "note", "next_run_at", "path"])
        _bump_stats(journey.pk, stats)
    return len(rows)


# --- Triggers the scheduler looks for ------------------------------------------------------


def run_triggers(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Enroll people for segment, date and inactivity triggers; returns how many per trigger kind."""
    now = now or timezone.now()
    counts: Counter[str] = Counter()
    for journey in active_journeys():
        if journey.trigger == TriggerKind.SEGMENT_ENTRY:
            counts["segment_entry"] += enroll_segment_entries(journey, now=now)
        elif journey.trigger in (TriggerKind.DATE, TriggerKind.INACTIVITY):
            sweep_every = dt.timedelta(seconds=settings.JOURNEY_SWEEP_SECONDS)
            if journey.swept_at is None or journey.swept_at <= now - sweep_every:
                found = sweep_dates(journey, now=now) if journey.trigger == TriggerKind.DATE \
                    else sweep_inactive(journey, now=now)
                counts[journey.trigger] += found
                Journey.objects.filter(pk=journey.pk).update(swept_at=now)
    return dict(counts)


def enroll_segment_entries(journey: Journey, *, now: dt.datetime | None = None, batch: int = 20000) -> int:
    """Enroll people who entered the trigger segment since the last look (snapshot refreshes record entries)."""
    from campaigns.segments.models import SegmentMembershipChange

    changes = list(SegmentMembershipChange.objects.filter(
        segment_id=journey.trigger_segment_id, entered=True, refresh__initial=False, pk__gt=journey.segment_cursor)
        .order_by("pk").values_list("pk", "subscriber_id")[:batch])
    if not changes:
        return 0
    entered = enroll(journey, {pk for _, pk in changes}, now=now)
    Journey.objects.filter(pk=journey.pk).update(segment_cursor=changes[-1][0])
    return entered


def _local_moment(day: dt.date, at: dt.time, zone: str) -> dt.datetime:
    return dt.datetime.combine(day, at, tzinfo=policy.zone_of(zone)).astimezone(dt.UTC)


def _anniversary(month: int, day: int, year: int) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError:  # 29 February outside a leap year: the 28th
        return dt.date(year, 2, 28)


def sweep_dates(journey: Journey, *, now: dt.datetime | None = None) -> int:
    """Enroll people whose date (birthday or a date attribute) comes round in the next day and a half.

    Each starts at the journey's local time of day on the day itself, in
    their own time zone; the entry rule (e.g. once every 300 days) keeps the
    next sweeps from enrolling them again.
    """
    from subscribers.models import Subscriber

    now = now or timezone.now()
    horizon = now + dt.timedelta(hours=36)
    days = {(now + dt.timedelta(days=d)).date() for d in (-1, 0, 1, 2)}
    field_name = journey.trigger_date_field
    people = Subscriber.objects.filter(status="subscribed")
    condition = Q()
    for day in days:
        pairs = [(day.month, day.day)] + ([(2, 29)] if (day.month, day.day) == (2, 28) and
                                          _anniversary(2, 29, day.year).day == 28 else [])
        for month, mday in pairs:
            if field_name == "birthday":
                condition |= Q(birthday_month=month, birthday_day=mday)
            else:
                key = field_name.split(".", 1)[1]
                condition |= Q(**{f"attributes__{key}__endswith": f"-{month:02d}-{mday:02d}"})
    starts: dict[int, dt.datetime] = {}
    rows = people.filter(condition).values_list("pk", "timezone", "birthday_month", "birthday_day", "attributes")
    for pk, zone, month, mday, attributes in rows.iterator(chunk_size=5000):
        if field_name != "birthday":
            value = str((attributes or {}).get(field_name.split(".", 1)[1], ""))
            try:
                month, mday = int(value[5:7]), int(value[8:10])
            except ValueError:
                continue
        local_today = now.astimezone(policy.zone_of(zone)).date()
        for year in (local_today.year, local_today.year + 1):
            moment = _local_moment(_anniversary(month, mday, year), journey.trigger_time or dt.time(9), zone)
            if now - dt.timedelta(hours=12) <= moment <= horizon:
                starts[pk] = max(moment, now)
                break
    return enroll(journey, starts, now=now, start_at=starts) if starts else 0


def sweep_inactive(journey: Journey, *, now: dt.datetime | None = None, limit: int = 50000) -> int:
    """Enroll subscribed people with no open, click, visit or order for the journey's number of days."""
    from subscribers.models import Subscriber

    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=journey.inactivity_days or 0)
    quiet = Q(created_at__lt=cutoff)
    for name in ("last_open_at", "last_click_at", "last_seen_at", "last_order_at", "confirmed_at"):
        quiet &= Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__lt": cutoff})
    # Leave out people the entry rule would refuse anyway, so they never crowd out the others.
    kept_out = Enrollment.objects.filter(journey=journey)
    if journey.entry_rule == EntryRule.ONCE_PER_PERIOD:
        kept_out = kept_out.filter(Q(state__in=OPEN_STATES) |
                                   Q(entered_at__gt=now - dt.timedelta(days=journey.reentry_days or 0)))
    elif journey.entry_rule == EntryRule.EVERY_TIME:
        kept_out = kept_out.filter(state__in=OPEN_STATES)
    ids = list(Subscriber.objects.filter(quiet, status="subscribed")
               .exclude(pk__in=kept_out.values("subscriber_id")).values_list("pk", flat=True)[:limit])
    return enroll(journey, ids, now=now) if ids else 0


# --- Advancing ---------------------------------------------------------------------------------


@dataclass
class AdvanceResult:
    claimed: int = 0
    moved: int = 0
    sent: int = 0
    deferred: int = 0
    skipped: int = 0
    failed: int = 0
    finished: int = 0
    batches: int = 0

    def add(self, other: AdvanceResult) -> None:
        for name in ("claimed", "moved", "sent", "deferred", "skipped", "failed", "finished", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _skip_locked() -> dict[str, Any]:
    return {"skip_locked": True, "of": ("self",)} if connection.features.has_select_for_update_skip_locked else {}


def advance_due(*, now: dt.datetime | None = None, batch_size: int | None = None,
                seconds: float | None = None) -> AdvanceResult:
    """Advance every due enrollment, batch after batch, until none is due or the time budget is spent.

    Safe to run in several processes at once: each batch is claimed with
    SKIP LOCKED, so they share the work and never take the same person.
    On the wall clock, when the next person falls due within
    ``JOURNEY_POLL_SECONDS`` (a steady stream of waits ending), the task
    waits for them instead of leaving them to the next tick.
    """
    total = AdvanceResult()
    budget = settings.JOURNEY_TICK_SECONDS if seconds is None else seconds
    started = time.monotonic()
    while time.monotonic() - started < budget:
        result = advance_batch(now=now, batch_size=batch_size)
        if result.claimed:
            total.add(result)
            continue
        if now is not None:  # a fixed clock (a replay, a test): nothing more falls due
            break
        upcoming = next_due_at()
        pause = (upcoming - timezone.now()).total_seconds() if upcoming else None
        if pause is None or pause > settings.JOURNEY_POLL_SECONDS or \
                time.monotonic() - started + pause >= budget:
            break
        time.sleep(max(0.02, pause))
    return total


def next_due_at() -> dt.datetime | None:
    """Return when the next open enrollment of an active journey falls due (the partial index answers it)."""
    return (Enrollment.objects.filter(state__in=OPEN_STATES, next_run_at__isnull=False,
                                      journey__status=JourneyStatus.ACTIVE)
            .order_by("next_run_at").values_list("next_run_at", flat=True).first())


def advance_batch(*, now: dt.datetime | None = None, batch_size: int | None = None) -> AdvanceResult:
    """Claim one batch of due enrollments and run it; returns what happened."""
    now = now or timezone.now()
    result = AdvanceResult()
    journeys = {j.pk: j for j in Journey.objects.filter(status=JourneyStatus.ACTIVE).select_related("topic")}
    if not journeys:
        return result
    with transaction.atomic():
        batch = list(Enrollment.objects.select_for_update(**_skip_locked())
                     .filter(state__in=OPEN_STATES, next_run_at__lte=now, journey_id__in=list(journeys))
                     .order_by("next_run_at")[:batch_size or settings.JOURNEY_BATCH_SIZE])
        if not batch:
            return result
        result.claimed, result.batches = len(batch), 1
        outgoing: list[_Send] = []
        by_journey: dict[int, list[Enrollment]] = defaultdict(list)
        for enrollment in batch:
            by_journey[enrollment.journey_id].append(enrollment)
        for journey_id, enrollments in by_journey.items():
            runner = _Runner(journeys[journey_id], now=now, result=result)
            runner.run(enrollments)
            outgoing += runner.prepare_sends()
            runner.save(enrollments)
    if outgoing:
        _send_and_record(journeys, outgoing, now=now, result=result)
    return result


@dataclass
class _Send:
    enrollment_id: int
    journey_id: int
    step_key: str
    email_id: int
    outgoing: sending_actions.Outgoing


class _Runner:
    """Run one journey's share of a batch: goal checks, then each step's handler, until everyone waits."""

    def __init__(self, journey: Journey, *, now: dt.datetime, result: AdvanceResult):
        self.journey, self.now, self.result = journey, now, result
        self.steps = list(journey.steps.all())
        self.by_key = {s.key: s for s in self.steps}
        self.first = graph.first_step(self.steps)
        self.stats: Counter[tuple[str, str]] = Counter()
        self.to_send: list[tuple[Enrollment, JourneyStep]] = []
        self.people: dict[int, dict[str, Any]] = {}
        self.goal_checked: set[int] = set()

    # Bookkeeping.

    def note(self, enrollment: Enrollment, step_key: str, outcome: str) -> None:
        entry = {"step": step_key, "at": self.now.isoformat(), "outcome": outcome}
        enrollment.path = [*(enrollment.path or [])[-(PATH_LIMIT - 1):], entry]

    def move(self, enrollment: Enrollment, target: str | None, outcome: str = "", *, took_else: bool = False) -> bool:
        """Leave the current step for ``target`` (None: the journey is done); returns whether it is due now."""
        current = enrollment.step_key
        if current:
            self.stats[(current, "passed")] += 1
            if took_else:
                self.stats[(current, "took_else")] += 1
            self.note(enrollment, current, outcome or "passed")
        self.result.moved += 1
        if target is None or target not in self.by_key:
            _finish(enrollment, EnrollmentState.COMPLETED, "completed the journey", self.now)
            self.result.finished += 1
            return False
        return self.arrive(enrollment, self.by_key[target])

    def arrive(self, enrollment: Enrollment, step: JourneyStep) -> bool:
        enrollment.step_key = step.key
        enrollment.step_entered_at = self.now
        enrollment.attempts = 0
        enrollment.note = ""
        wake = self.wake_time(enrollment, step)
        enrollment.next_run_at = enrollment.due_at = wake
        return wake <= self.now

    def exit(self, enrollment: Enrollment, reason: str) -> None:
        self.stats[(enrollment.step_key or "", "exited")] += 1
        _finish(enrollment, EnrollmentState.EXITED, reason, self.now)
        self.result.finished += 1

    def edge(self, step: JourneyStep, index: int) -> str | None:
        paths = graph.edges(step, self.steps)
        return paths[index].target if index < len(paths) else None

    # When a step is due.

    def wake_time(self, enrollment: Enrollment, step: JourneyStep) -> dt.datetime:
        if step.kind in (StepKind.WAIT, StepKind.WAIT_EVENT):
            return self.now + dt.timedelta(seconds=(step.wait_amount or 0) * UNIT_SECONDS[step.wait_unit])
        if step.kind == StepKind.WAIT_UNTIL:
            return wait_until(step, self.person(enrollment.subscriber_id), now=self.now)
        return self.now

    def person(self, subscriber_id: int) -> dict[str, Any]:
        if subscriber_id not in self.people:
            self.load_people([subscriber_id])
        return self.people.get(subscriber_id, {})

    def load_people(self, ids: Iterable[int]) -> None:
        from subscribers.models import Subscriber

        missing = [pk for pk in ids if pk not in self.people]
        for row in Subscriber.objects.filter(pk__in=missing).values(
                "pk", "status", "timezone", "birthday_month", "birthday_day", "attributes"):
            self.people[row["pk"]] = row

    # Running.

    def run(self, enrollments: list[Enrollment]) -> None:
        self.load_people(e.subscriber_id for e in enrollments)
        pending = []
        for enrollment in enrollments:
            if enrollment.state == EnrollmentState.SENDING:
                step = self.by_key.get(enrollment.step_key)
                if step is None or step.kind != StepKind.SEND_EMAIL:
                    self.exit(enrollment, "their step was removed from the journey")
                else:
                    self.to_send.append((enrollment, step))  # a send a crashed worker left open
                continue
            if enrollment.due_at is None:
                enrollment.due_at = enrollment.next_run_at
            pending.append(enrollment)
        for _ in range(len(self.steps) + 2):  # no loop without a wait: every chain ends within this many hops
            if not pending:
                break
            pending = self.step_all(self.check_goal(pending))
        for enrollment in pending:  # only reachable with a graph edited under the engine: look again soon
            enrollment.next_run_at = self.now + dt.timedelta(minutes=1)

    def check_goal(self, enrollments: list[Enrollment]) -> list[Enrollment]:
        """Take out people who reached the goal or can no longer get marketing mail."""
        from subscribers.models import BLOCKED_STATUSES

        gone = {pk for pk, p in self.people.items() if p["status"] in BLOCKED_STATUSES}
        reached: set[int] = set()
        # Within one batch the clock stands still: a person checked once need not be asked again at their next hop.
        unchecked = [e for e in enrollments if e.pk not in self.goal_checked]
        self.goal_checked.update(e.pk for e in unchecked)
        if self.journey.exit_event and unchecked:
            starts = {e.pk: started_at(e) for e in unchecked}
            latest = latest_events(self.journey.exit_event, self.journey.exit_filters,
                                   {e.subscriber_id for e in unchecked}, since=min(starts.values()))
            reached = {e.pk for e in unchecked
                       if e.subscriber_id in latest and latest[e.subscriber_id] >= starts[e.pk]}
        staying = []
        for enrollment in enrollments:
            status = self.people.get(enrollment.subscriber_id, {}).get("status")
            if enrollment.subscriber_id in gone or status is None:
                self.exit(enrollment, f"can no longer get marketing mail ({status or 'erased'})")
            elif enrollment.pk in reached:
                self.exit(enrollment, f"reached the goal: {self.journey.exit_event}")
            else:
                staying.append(enrollment)
        return staying

    def step_all(self, enrollments: list[Enrollment]) -> list[Enrollment]:
        """Run each person's current step once; returns those due again now (they moved to a step with no wait)."""
        groups: dict[str, list[Enrollment]] = defaultdict(list)
        for enrollment in enrollments:
            groups[enrollment.step_key].append(enrollment)
        again: list[Enrollment] = []
        for key, group in groups.items():
            if key == NOT_STARTED:
                if self.first is None:
                    for enrollment in group:
                        _finish(enrollment, EnrollmentState.COMPLETED, "the journey has no steps", self.now)
                    continue
                again += [e for e in group if self.arrive(e, self.first)]
                continue
            step = self.by_key.get(key)
            if step is None:
                for enrollment in group:
                    self.exit(enrollment, "their step was removed from the journey")
                continue
            again += getattr(self, f"do_{step.kind}")(step, group)
        return again

    def do_wait(self, step: JourneyStep, group: list[Enrollment]) -> list[Enrollment]:
        return [e for e in group if self.move(e, self.edge(step, 0), "waited")]

    do_wait_until = do_wait

    def do_wait_event(self, step: JourneyStep, group: list[Enrollment]) -> list[Enrollment]:
        latest = latest_events(step.event_name, step.event_filters, {e.subscriber_id for e in group},
                               since=min(e.step_entered_at for e in group))
        again = []
        timeout = dt.timedelta(seconds=(step.wait_amount or 0) * UNIT_SECONDS[step.wait_unit])
        for enrollment in group:
            at = latest.get(enrollment.subscriber_id)
            if at is not None and at >= enrollment.step_entered_at:
                again += [enrollment] if self.move(enrollment, self.edge(step, 0), f"did {step.event_name}") else []
            elif self.now >= enrollment.step_entered_at + timeout:
                again += [enrollment] if self.move(enrollment, self.edge(step, 1), "timed out",
                                                   took_else=True) else []
            else:
                enrollment.next_run_at = enrollment.step_entered_at + timeout
        return again

    def do_branch(self, step: JourneyStep, group: list[Enrollment]) -> list[Enrollment]:
        yes = branch_matches(self.journey, step, group, now=self.now)
        again = []
        for enrollment in group:
            took = enrollment.pk in yes
            if self.move(enrollment, self.edge(step, 0 if took else 1), "yes" if took else "no", took_else=not took):
                again.append(enrollment)
        return again

    def do_split(self, step: JourneyStep, group: list[Enrollment]) -> list[Enrollment]:
        again = []
        for enrollment in group:
            path_a = split_bucket(enrollment.subscriber_id, enrollment.entry, step.key) < (step.split_percent or 50)
            if self.move(enrollment, self.edge(step, 0 if path_a else 1), "path A" if path_a else "path B",
                         took_else=not path_a):
                again.append(enrollment)
        return again

    def do_update_profile(self, step: JourneyStep, group: list[Enrollment]) -> list[Enrollment]:
        again = []
        for enrollment in group:
            outcome = update_profile(step, subscriber_id=enrollment.subscriber_id, journey=self.journey)
            if self.move(enrollment, self.edge(step, 0), outcome):
                again.append(enrollment)
        return again

    def do_exit(self, step: JourneyStep, group: list[Enrollment]) -> list[Enrollment]:
        for enrollment in group:
            self.stats[(step.key, "passed")] += 1
            self.note(enrollment, step.key, "exit")
            _finish(enrollment, EnrollmentState.COMPLETED, f"reached the exit step “{step}”", self.now)
            self.result.finished += 1
        return []

    def do_send_email(self, step: JourneyStep, group: list[Enrollment]) -> list[Enrollment]:
        self.to_send += [(e, step) for e in group]
        return []

    # Sending, phase 1: the gate, deliveries, "handed to the ESP".

    def prepare_sends(self) -> list[_Send]:
        if not self.to_send:
            return []
        out: list[_Send] = []
        decisions = policy.decide([e.subscriber_id for e, _ in self.to_send], topic_id=self.journey.topic_id,
                                  now=self.now)
        why = self.why([e for e, _ in self.to_send])
        keys = {e.pk: message_key(self.journey.pk, s.key, e.entry) for e, s in self.to_send}
        skip_rows, send_rows = [], []
        for enrollment, step in self.to_send:
            decision = decisions.get(enrollment.subscriber_id, policy.Decision(policy.SKIP, "erased"))
            if decision.action == policy.DEFER:
                # A send a crash left open stays so: it is resolved (never blindly repeated) when it is due.
                enrollment.next_run_at = decision.until
                enrollment.note = decision.explanation[:300]
                self.result.deferred += 1
            elif decision.action == policy.SKIP:
                skip_rows.append((enrollment, step, decision))
            else:
                send_rows.append((enrollment, step))
        for enrollment, step, decision in skip_rows:
            delivery_actions.create_deliveries([(enrollment.subscriber_id, keys[enrollment.pk],
                                                 why[enrollment.pk])], status=DeliveryStatus.SKIPPED,
                                               reason=decision.explanation)
            self.stats[(step.key, "skipped")] += 1
            self.result.skipped += 1
            enrollment.state = EnrollmentState.ACTIVE
            self.move(enrollment, self.edge(step, 0), decision.explanation)
        if not send_rows:
            return out
        deliveries = delivery_actions.create_deliveries(
            [(e.subscriber_id, keys[e.pk], why[e.pk]) for e, _ in send_rows])
        reached = set(Delivery.objects.filter(pk__in=list(deliveries.values()))
                      .filter(Q(sent_at__isnull=False) | Q(status__in=REACHED)).values_list("pk", flat=True))
        variants = _email_variants({s.email_id for _, s in send_rows})
        unknown: list[tuple[Enrollment, JourneyStep, int]] = []
        for enrollment, step in send_rows:
            delivery_id = deliveries[(keys[enrollment.pk], enrollment.subscriber_id)]
            if delivery_id in reached:  # sent before a crash, and the ESP said so
                self.stats[(step.key, "sent")] += 1
                enrollment.state = EnrollmentState.ACTIVE
                self.move(enrollment, self.edge(step, 0), "sent")
                continue
            if enrollment.state == EnrollmentState.SENDING:
                unknown.append((enrollment, step, delivery_id))
                continue
            out.append(self.hand_over(enrollment, step, delivery_id, variants))
        if unknown:
            accepted = sender.esp_accepted([d for _, _, d in unknown]) or set()
            if accepted:
                delivery_actions.record_sent_many([(d, "") for d in sorted(accepted)],
                                                  esp_name=sending_actions.esp_name(), sent_at=self.now)
            for enrollment, step, delivery_id in unknown:
                if delivery_id in accepted:
                    enrollment.state = EnrollmentState.ACTIVE
                    self.stats[(step.key, "sent")] += 1
                    self.move(enrollment, self.edge(step, 0), "sent (the ESP confirmed it after a crash)")
                else:
                    out.append(self.hand_over(enrollment, step, delivery_id, variants))
        return out

    def hand_over(self, enrollment: Enrollment, step: JourneyStep, delivery_id: int,
                  variants: dict[int, int]) -> _Send:
        enrollment.state = EnrollmentState.SENDING
        # Looked at again only if this worker dies before recording the outcome.
        enrollment.next_run_at = self.now + dt.timedelta(seconds=settings.SEND_RECONCILE_SECONDS)
        extra = {"trigger": enrollment.trigger_data or {}}
        return _Send(enrollment.pk, self.journey.pk, step.key, step.email_id,
                     sending_actions.Outgoing(enrollment.subscriber_id, variants[step.email_id], delivery_id, extra))

    def why(self, enrollments: list[Enrollment]) -> dict[int, dict[str, Any]]:
        consents = sending_actions.consent_grants([e.subscriber_id for e in enrollments])
        journey = self.journey
        return {e.pk: {"journey": journey.name, "journey_id": journey.pk, "step": e.step_key, "entry": e.entry,
                       "topic": journey.topic.name if journey.topic else "", "reason": trigger_reason(journey, e),
                       "trigger": trigger_facts(journey, e),
                       "consent": consents.get(e.subscriber_id, {})} for e in enrollments}

    def save(self, enrollments: list[Enrollment]) -> None:
        save_enrollments(enrollments, ["state", "step_key", "next_run_at", "due_at", "step_entered_at",
                                       "finished_at", "note", "attempts", "path"])
        _bump_stats(self.journey.pk, self.stats)


def save_enrollments(enrollments: list[Enrollment], fields: list[str]) -> None:
    """Write these fields of each enrollment; on PostgreSQL in one ``UPDATE … FROM unnest(arrays)``.

    Django's ``bulk_update`` builds a ``CASE WHEN id = … THEN …`` per row and
    field: for a batch of 500 that is 4,500 expressions to resolve and compile,
    which took most of a batch's time. One array per field keeps the
    statement the same size for any batch. Other databases (SQLite) get one
    prepared ``UPDATE … WHERE id = ?`` run for every row, which in-process is
    cheaper still than building those expressions.
    """
    if not enrollments:
        return
    meta = Enrollment._meta
    if connection.vendor != "postgresql":
        columns = [meta.get_field(name) for name in fields]
        sets = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in columns)
        rows = [[(None if getattr(e, f.attname) is None else json.dumps(getattr(e, f.attname), cls=f.encoder))
                 if isinstance(f, JSONField) else f.get_db_prep_save(getattr(e, f.attname), connection)
                 for f in columns] + [e.pk] for e in enrollments]
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {sets} WHERE id = %s", rows)
        return
    arrays, sets, params = ["%s::bigint[]"], [], [[e.pk for e in enrollments]]
    for name in fields:
        model_field = meta.get_field(name)
        column = connection.ops.quote_name(model_field.column)
        values = [getattr(e, model_field.attname) for e in enrollments]
        if isinstance(model_field, JSONField):
            params.append([None if v is None else json.dumps(v, cls=model_field.encoder) for v in values])
            arrays.append("%s::text[]")
            sets.append(f"{column} = v.{column}::jsonb")
        else:
            params.append([model_field.get_db_prep_save(v, connection) for v in values])
            arrays.append(f"%s::{model_field.db_type(connection)}[]")
            sets.append(f"{column} = v.{column}")
    names = ", ".join(connection.ops.quote_name(meta.get_field(n).column) for n in fields)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {connection.ops.quote_name(meta.db_table)} AS e SET {', '.join(sets)} "
                       f"FROM unnest({', '.join(arrays)}) AS v(id, {names}) WHERE e.id = v.id", params)


def _email_variants(email_ids: set[int]) -> dict[int, int]:
    """Return the variant each journey email sends (its first by label; compare versions with a split step)."""
    from campaigns.content.models import Variant

    chosen: dict[int, int] = {}
    for campaign_id, variant_id in Variant.objects.filter(campaign_id__in=email_ids).order_by("campaign_id", "label") \
            .values_list("campaign_id", "pk"):
        chosen.setdefault(campaign_id, variant_id)
    return chosen


def started_at(enrollment: Enrollment) -> dt.datetime:
    """Return when the person's trip began: the triggering event's time if earlier than the enrollment.

    Events can reach us late or in one batch; an order placed after the
    checkout that started cart recovery must end it even if both arrived together.
    """
    raw = (enrollment.trigger_data or {}).get("occurred_at")
    if raw:
        try:
            at = dt.datetime.fromisoformat(str(raw))
        except ValueError:
            return enrollment.entered_at
        if timezone.is_aware(at):
            return min(at, enrollment.entered_at)
    return enrollment.entered_at


def _finish(enrollment: Enrollment, state: str, note: str, now: dt.datetime) -> None:
    enrollment.state = state
    enrollment.finished_at = now
    enrollment.next_run_at = None
    enrollment.note = note[:300]
    enrollment.path = [*(enrollment.path or [])[-(PATH_LIMIT - 1):],
                       {"step": enrollment.step_key, "at": now.isoformat(), "outcome": note}]


def _bump_stats(journey_id: int, stats: Counter[tuple[str, str]]) -> None:
    """Add a batch's counts to the per-step totals: one UPDATE per step touched."""
    per_step: dict[str, dict[str, int]] = defaultdict(dict)
    for (key, name), count in stats.items():
        if count:
            per_step[key][name] = count
    for key, counts in per_step.items():
        JourneyStepStats.objects.get_or_create(journey_id=journey_id, step_key=key)
        JourneyStepStats.objects.filter(journey_id=journey_id, step_key=key).update(
            **{name: F(name) + count for name, count in counts.items()})


def trigger_facts(journey: Journey, enrollment: Enrollment) -> dict[str, Any]:
    """What started the person's journey, as data: the preference center words it in their language.

    ``kind`` is one of signup, event, segment, birthday, date, inactivity;
    ``on`` the day they entered (ISO), with the event's or segment's name.
    """
    on = enrollment.entered_at.date().isoformat()
    if journey.trigger == TriggerKind.SIGNUP:
        return {"kind": "signup", "on": on}
    if journey.trigger == TriggerKind.EVENT:
        return {"kind": "event", "on": on, "event": journey.trigger_event}
    if journey.trigger == TriggerKind.SEGMENT_ENTRY and journey.trigger_segment_id:
        return {"kind": "segment", "on": on, "segment": str(journey.trigger_segment)}
    if journey.trigger == TriggerKind.DATE:
        return {"kind": "birthday" if journey.trigger_date_field == "birthday" else "date", "on": on}
    return {"kind": "inactivity", "on": on, "days": journey.inactivity_days}


def trigger_reason(journey: Journey, enrollment: Enrollment) -> str:
    """Say in a sentence, in English, why the person is in the journey (for staff reading a delivery)."""
    facts = trigger_facts(journey, enrollment)
    day = f"{enrollment.entered_at:%d %B %Y}"
    return {
        "signup": f"You subscribed on {day}.",
        "event": f"You did “{facts.get('event')}” on our site on {day}.",
        "segment": f"You joined the group “{facts.get('segment')}” on {day}.",
        "birthday": "It is your birthday.",
        "date": "It is a date you told us.",
        "inactivity": f"We had not heard from you for {facts.get('days')} days.",
    }[facts["kind"]]


# --- Sending, phases 2 and 3 -------------------------------------------------------------------


def _send_and_record(journeys: dict[int, Journey], sends: list[_Send], *, now: dt.datetime,
                     result: AdvanceResult) -> None:
    from campaigns.content.models import Campaign

    groups: dict[tuple[int, int], list[_Send]] = defaultdict(list)
    for item in sends:
        groups[(item.journey_id, item.email_id)].append(item)
    emails = Campaign.objects.in_bulk({email_id for _, email_id in groups})
    for (journey_id, email_id), items in groups.items():
        answers = sending_actions.deliver(emails[email_id], [i.outgoing for i in items], now=now,
                                          tags=[f"journey-{journey_id}"])
        by_delivery = {i.outgoing.delivery_id: i for i in items}
        outcomes = {item.delivery_id: outcome for item, outcome in answers}
        _record(journeys, [(by_delivery[d], o) for d, o in outcomes.items()],
                [i for i in items if i.outgoing.delivery_id not in outcomes], now=now, result=result)


def _record(journeys: dict[int, Journey], outcomes: list[tuple[_Send, sender.Outcome]], vanished: list[_Send], *,
            now: dt.datetime, result: AdvanceResult) -> None:
    """Record what the ESP said and move each person on (or back for a retry); one transaction."""
    # Normally the wall clock, which moved on while sending; a batch run on another clock (a replay of the
    # past, a frozen test clock) keeps its own time.
    wall = timezone.now()
    done = wall if dt.timedelta(0) <= wall - now < dt.timedelta(hours=1) else now
    accepted = [(i.outgoing.delivery_id, o.message_id) for i, o in outcomes if o.kind == sender.ACCEPTED]
    rejected = [(i.outgoing.delivery_id, o.detail) for i, o in outcomes if o.kind == sender.REJECTED]
    with transaction.atomic():
        delivery_actions.record_sent_many(accepted, esp_name=sending_actions.esp_name(), sent_at=now)
        delivery_actions.record_failed_many(rejected, rejected=True)
        items = {i.enrollment_id: (i, o) for i, o in outcomes}
        items.update({i.enrollment_id: (i, None) for i in vanished})
        enrollments = list(Enrollment.objects.select_for_update().filter(pk__in=list(items),
                                                                         state=EnrollmentState.SENDING))
        by_journey: dict[int, list[Enrollment]] = defaultdict(list)
        for enrollment in enrollments:
            by_journey[enrollment.journey_id].append(enrollment)
        for journey_id, group in by_journey.items():
            runner = _Runner(journeys[journey_id], now=done, result=result)
            for enrollment in group:
                item, outcome = items[enrollment.pk]
                step = runner.by_key.get(enrollment.step_key)
                enrollment.state = EnrollmentState.ACTIVE
                if outcome is None or step is None:
                    runner.exit(enrollment, "can no longer get marketing mail (erased)")
                elif outcome.kind == sender.TRANSIENT:
                    _retry(runner, enrollment, step, outcome, item, result)
                else:
                    sent = outcome.kind == sender.ACCEPTED
                    runner.stats[(step.key, "sent" if sent else "skipped")] += 1
                    result.sent += sent
                    result.failed += not sent
                    runner.move(enrollment, runner.edge(step, 0), "sent" if sent else f"failed: {outcome.detail}")
            runner.save(group)


def _retry(runner: _Runner, enrollment: Enrollment, step: JourneyStep, outcome: sender.Outcome, item: _Send,
           result: AdvanceResult) -> None:
    """Keep the person at the send step after a transient ESP error, with a backoff; give up after the last try."""
    enrollment.attempts += 1
    if enrollment.attempts >= settings.SEND_MAX_ATTEMPTS:
        delivery_actions.record_failed_many([(item.outgoing.delivery_id, outcome.detail)], rejected=False)
        runner.stats[(step.key, "skipped")] += 1
        result.failed += 1
        runner.move(enrollment, runner.edge(step, 0), f"gave up after {enrollment.attempts} tries: {outcome.detail}")
        return
    backoff = min(3600, settings.SEND_RETRY_SECONDS * 2 ** (enrollment.attempts - 1))
    enrollment.next_run_at = runner.now + dt.timedelta(seconds=backoff)
    enrollment.note = f"will retry: {outcome.detail}"[:300]


# --- Step helpers shared with the simulator -------------------------------------------------------


def wait_until(step: JourneyStep, person: dict[str, Any], *, now: dt.datetime) -> dt.datetime:
    """Return when a “wait until” step lets the person go, in their own time zone.

    A date step waits for the person's date this year (or the next one, for a
    birthday already past), plus the offset; with no such date the person
    goes on at once. A time of day and a weekday take the next such moment.
    """
    zone = person.get("timezone", "")
    local_now = now.astimezone(policy.zone_of(zone))
    at = step.until_time or dt.time(0)
    if step.until_date_field:
        day = person_date(step.until_date_field, person, today=local_now.date())
        if day is None:
            return now
        moment = _local_moment(day + dt.timedelta(days=step.until_offset_days), at, zone)
        return max(moment, now)
    day = local_now.date()
    for _ in range(8):
        moment = _local_moment(day, at, zone)
        if moment > now and (step.until_weekday is None or day.weekday() == step.until_weekday):
            return moment
        day += dt.timedelta(days=1)
    return now


def person_date(field_name: str, person: dict[str, Any], *, today: dt.date) -> dt.date | None:
    """Return the person's date for a date field: their next birthday, or a date attribute's value."""
    if field_name == "birthday":
        month, day = person.get("birthday_month"), person.get("birthday_day")
        if not month or not day:
            return None
        this_year = _anniversary(month, day, today.year)
        return this_year if this_year >= today else _anniversary(month, day, today.year + 1)
    value = (person.get("attributes") or {}).get(field_name.split(".", 1)[-1])
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def split_bucket(subscriber_id: int, entry: int, step_key: str) -> int:
    """Return a stable 0–99 bucket for a person's trip at a split step (the same on every run)."""
    digest = hashlib.blake2b(f"{subscriber_id}:{entry}:{step_key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 100


def branch_matches(journey: Journey, step: JourneyStep, group: list[Enrollment], *, now: dt.datetime) -> set[int]:
    """Return the enrollments of ``group`` that take a branch's “yes” path (one query per branch)."""
    if step.engagement_step:
        keys = {message_key(journey.pk, step.engagement_step, e.entry) for e in group}
        done = Q(first_clicked_at__isnull=False) if step.engagement == Engagement.CLICKED \
            else Q(first_opened_at__isnull=False) | Q(first_clicked_at__isnull=False)
        engaged = set(Delivery.objects.filter(done, message_key__in=keys,
                                              subscriber_id__in={e.subscriber_id for e in group})
                      .values_list("message_key", "subscriber_id"))
        return {e.pk for e in group
                if (message_key(journey.pk, step.engagement_step, e.entry), e.subscriber_id) in engaged}
    from campaigns.segments import actions as segment_actions

    people = set(segment_actions.segment_queryset(step.condition, ctx=segment_actions.build_context(now=now))
                 .filter(pk__in={e.subscriber_id for e in group}).values_list("pk", flat=True))
    return {e.pk for e in group if e.subscriber_id in people}


def update_profile(step: JourneyStep, *, subscriber_id: int, journey: Journey) -> str:
    """Apply an “update the profile” step to one person through the subscriber and preference actions."""
    from preferences import actions as preference_actions
    from subscribers import actions as subscriber_actions
    from subscribers.models import ConsentMethod, Subscriber

    subscriber = Subscriber.objects.get(pk=subscriber_id)
    evidence = subscriber_actions.ConsentEvidence(method=ConsentMethod.AUTOMATION,
                                                  notice_version=f"journey “{journey.name}”")
    action, key = step.update_action, step.update_key.strip()
    try:
        if action in (UpdateAction.ADD_TAG, UpdateAction.REMOVE_TAG):
            tags = [t for t in (subscriber.tags or []) if str(t).lower() != key.lower()]
            if action == UpdateAction.ADD_TAG:
                tags.append(key)
            subscriber_actions.update_subscriber_profile(subscriber, changes={"tags": tags})
            return f"tag {key} {'added' if action == UpdateAction.ADD_TAG else 'removed'}"
        if action == UpdateAction.SET_ATTRIBUTE:
            subscriber_actions.update_subscriber_profile(
                subscriber, changes={"attributes": {**(subscriber.attributes or {}), key: step.update_value}})
            return f"{key} set to {step.update_value}"
        if action in (UpdateAction.SUBSCRIBE_TOPIC, UpdateAction.UNSUBSCRIBE_TOPIC):
            subscribe = action == UpdateAction.SUBSCRIBE_TOPIC
            preference_actions.set_topic_subscription(subscriber, topic=step.update_topic, subscribed=subscribe,
                                                      evidence=evidence)
            return f"{'subscribed to' if subscribe else 'unsubscribed from'} {step.update_topic}"
        if action == UpdateAction.STOP_MARKETING:
            preference_actions.unsubscribe(subscriber, evidence=evidence)
            return "marketing mail stopped (sunset)"
    except Exception as exc:  # noqa: BLE001 - a bad value must not stop the journey; the path records why
        logger.warning("Journey %s step %s could not update subscriber %s: %s", journey.pk, step.key,
                       subscriber_id, exc)
        return f"could not update the profile: {exc}"[:200]
    return "nothing to update"
