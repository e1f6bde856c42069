"""Change what we send and what became of it: every write to deliveries, their events and totals.

Admin, views, tasks and the Anymail receiver call these functions; none of
them saves Delivery, DeliveryEvent or MessageStats rows directly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import (
    STATUS_RANK,
    BounceType,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    MessageStats,
)
from campaigns.tracking import TrackingEvent, is_machine
from subscribers.models import ConsentMethod, Subscriber, SubscriberStatus, email_key

logger = logging.getLogger(__name__)

# Fields record_tracking_events may change on a delivery (one bulk UPDATE per batch).
_TRACKED_FIELDS = [
    "status", "esp_name", "esp_message_id", "sent_at", "delivered_at", "first_opened_at", "first_clicked_at",
    "open_count", "machine_open_count", "click_count", "machine_click_count", "bounce_type", "reason",
]
# Which MessageStats counter an event for an unknown message adds to.
_UNMATCHED_COUNTER = {
    EventKind.SENT: "sent",
    EventKind.DELIVERED: "delivered",
    EventKind.OPENED: "opens",
    EventKind.CLICKED: "clicks",
    EventKind.BOUNCED: "bounces",
    EventKind.SOFT_BOUNCED: "soft_bounces",
    EventKind.COMPLAINED: "complaints",
    EventKind.UNSUBSCRIBED: "unsubscribes",
    EventKind.REJECTED: "failed",
    EventKind.FAILED: "failed",
}


@dataclass
class TrackingResult:
    """What a batch of tracking events did: recorded, ignored as retries, or for unknown messages."""

    recorded: int = 0
    duplicates: int = 0
    unmatched: int = 0


# --- Sending ---------------------------------------------------------------


def create_delivery(*, subscriber_id: int, message_key: str, why: dict[str, Any] | None = None) -> Delivery:
    """Return the one delivery of ``message_key`` to this person, creating it (queued) if needed.

    Safe to call twice: the unique (message_key, subscriber) returns the
    existing row, so a retried send step never makes a second delivery.
    """
    delivery, _ = Delivery.objects.get_or_create(
        message_key=message_key, subscriber_id=subscriber_id, defaults={"why": why or {}}
    )
    return delivery


@transaction.atomic
def record_sent(
    *, delivery_id: int, esp_name: str, esp_message_id: str = "", sent_at: dt.datetime | None = None
) -> Delivery:
    """Note that the ESP accepted the message; ``esp_message_id`` is Anymail's ``message_id`` for this recipient.

    Counts the message as sent once, however often it is called.
    """
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    first = delivery.sent_at is None
    delivery.sent_at = delivery.sent_at or sent_at or timezone.now()
    delivery.esp_name = (esp_name or delivery.esp_name)[:40]
    delivery.esp_message_id = (esp_message_id or delivery.esp_message_id)[:255]
    _raise_status(delivery, DeliveryStatus.SENT)
    delivery.save(update_fields=["sent_at", "esp_name", "esp_message_id", "status"])
    if first:
        _bump_stats({delivery.message_key: Counter(sent=1)})
    return delivery


@transaction.atomic
def record_skipped(*, delivery_id: int, reason: str) -> Delivery:
    """Note that a queued delivery will not be sent, and why (the policy gate's answer)."""
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    if delivery.status == DeliveryStatus.QUEUED:
        delivery.status = DeliveryStatus.SKIPPED
        delivery.reason = reason
        delivery.save(update_fields=["status", "reason"])
    return delivery


@transaction.atomic
def record_send_failed(*, delivery_id: int, reason: str, rejected: bool = False) -> Delivery:
    """Note that the message could not be sent: the ESP refused it (``rejected``) or sending failed."""
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    counted = delivery.status in {DeliveryStatus.FAILED, DeliveryStatus.REJECTED}
    _raise_status(delivery, DeliveryStatus.REJECTED if rejected else DeliveryStatus.FAILED)
    delivery.reason = reason
    delivery.save(update_fields=["status", "reason"])
    if not counted:
        _bump_stats({delivery.message_key: Counter(failed=1)})
    return delivery


# --- Sending in bulk (campaign and journey send chunks) --------------------------


def create_deliveries(rows: Sequence[tuple[int, str, dict[str, Any]]], *, status: str = DeliveryStatus.QUEUED,
                      reason: str = "") -> dict[tuple[str, int], int]:
    """Create the deliveries of a send chunk, (subscriber id, message key, why) each; return their ids.

    Existing deliveries of the same message and person are kept (the unique
    constraint makes a re-run chunk reuse them), so the returned map covers
    every row, old or new: (message key, subscriber id) → delivery id.
    """
    if not rows:
        return {}
    now = timezone.now()
    found: dict[tuple[str, int], int] = {}
    if connection.vendor == "postgresql":
        found = _insert_deliveries(rows, status=status, reason=reason, now=now)
    else:
        Delivery.objects.bulk_create(
            [Delivery(subscriber_id=pk, message_key=key, why=why, status=status, reason=reason, created_at=now)
             for pk, key, why in rows],
            ignore_conflicts=True, batch_size=1000,
        )
    by_key: dict[str, list[int]] = defaultdict(list)
    for pk, key, _ in rows:
        if (key, pk) not in found:
            by_key[key].append(pk)
    for key, people in by_key.items():
        for delivery_id, subscriber_id in Delivery.objects.filter(message_key=key, subscriber_id__in=people) \
                .values_list("pk", "subscriber_id"):
            found[(key, subscriber_id)] = delivery_id
    return found


def _insert_deliveries(rows: Sequence[tuple[int, str, dict[str, Any]]], *, status: str, reason: str,
                       now: dt.datetime) -> dict[tuple[str, int], int]:
    """Insert the rows' deliveries in one statement from one JSON array (PostgreSQL); return those it created.

    What bulk_create would write: every other column gets the model's
    default. Rows that already exist are left alone and not returned. The
    rows travel as one JSON document (``jsonb_to_recordset``): quoting one
    string costs far less than quoting three arrays element by element.
    """
    varying = {"subscriber_id": "v.s", "message_key": "v.k", "why": "v.w"}
    fixed = {"status": status, "reason": reason, "created_at": now}
    columns, values, params = [], [], []
    for model_field in Delivery._meta.concrete_fields:
        if model_field.primary_key:
            continue
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.attname in varying:
            values.append(varying[model_field.attname])
        else:
            value = fixed[model_field.attname] if model_field.attname in fixed else model_field.get_default()
            values.append("%s")
            params.append(model_field.get_db_prep_save(value, connection))
    why_field = Delivery._meta.get_field("why")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(values)} "
            "FROM jsonb_to_recordset(%s::jsonb) AS v(s bigint, k text, w jsonb) "
            "ON CONFLICT DO NOTHING RETURNING id, message_key, subscriber_id",
            [*params, json.dumps([{"s": r[0], "k": r[1], "w": r[2]} for r in rows], cls=why_field.encoder)])
        return {(key, subscriber_id): delivery_id for delivery_id, key, subscriber_id in cursor.fetchall()}


@transaction.atomic
def record_sent_many(sent: Sequence[tuple[int, str]], *, esp_name: str, sent_at: dt.datetime | None = None) -> int:
    """Mark many deliveries accepted by the ESP, (delivery id, ESP message id) each; count each message once.

    Deliveries already marked sent (a chunk re-run after a crash that the
    ESP's events resolved) are left as they are and not counted again.
    """
    if not sent:
        return 0
    sent_at = sent_at or timezone.now()
    ids = [delivery_id for delivery_id, _ in sent]
    fresh = dict(Delivery.objects.select_for_update().filter(pk__in=ids, sent_at__isnull=True)
                 .values_list("pk", "message_key"))
    if not fresh:
        return 0
    message_ids = {delivery_id: message_id[:255] for delivery_id, message_id in sent if delivery_id in fresh}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE campaigns_delivery d SET status = CASE WHEN d.status IN ('queued', 'skipped', 'failed') "
                "THEN 'sent' ELSE d.status END, sent_at = %s, esp_name = %s, esp_message_id = v.mid "
                "FROM unnest(%s::bigint[], %s::text[]) AS v(id, mid) WHERE d.id = v.id",
                [sent_at, esp_name[:40], list(message_ids), list(message_ids.values())])
    else:
        for delivery_id, message_id in message_ids.items():
            Delivery.objects.filter(pk=delivery_id).update(sent_at=sent_at, esp_name=esp_name[:40],
                                                           esp_message_id=message_id)
        Delivery.objects.filter(pk__in=list(message_ids), status__in=[DeliveryStatus.QUEUED, DeliveryStatus.FAILED,
                                                                      DeliveryStatus.SKIPPED]) \
            .update(status=DeliveryStatus.SENT)
    _bump_stats(_count_by_key(fresh.values(), "sent"))
    return len(fresh)


@transaction.atomic
def record_failed_many(failed: Sequence[tuple[int, str]], *, rejected: bool) -> int:
    """Mark many deliveries as failed or rejected by the ESP, (delivery id, reason) each."""
    if not failed:
        return 0
    status = DeliveryStatus.REJECTED if rejected else DeliveryStatus.FAILED
    ids = [delivery_id for delivery_id, _ in failed]
    counted = dict(Delivery.objects.select_for_update().filter(pk__in=ids, sent_at__isnull=True)
                   .exclude(status__in=[DeliveryStatus.FAILED, DeliveryStatus.REJECTED])
                   .values_list("pk", "message_key"))
    for delivery_id, reason in failed:
        Delivery.objects.filter(pk=delivery_id, sent_at__isnull=True).update(status=status, reason=reason[:1000])
    _bump_stats(_count_by_key(counted.values(), "failed"))
    return len(counted)


def _count_by_key(keys: Any, counter: str) -> dict[str, Counter[str]]:
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for key in keys:
        totals[key][counter] += 1
    return totals


# --- Tracking ----------------------------------------------------------------


def record_tracking_event(event: TrackingEvent) -> TrackingResult:
    """Record one delivery or engagement event; see record_tracking_events."""
    return record_tracking_events([event])


@dataclass
class _PersonChanges:
    delivered: int = 0
    opened_at: dt.datetime | None = None
    clicked_at: dt.datetime | None = None
    suppress: str = ""
    unsubscribe: bool = False
    evidence: Any = None


@dataclass
class _Batch:
    anonymous: bool
    received_at: dt.datetime
    stats: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    rows: list[DeliveryEvent] = field(default_factory=list)
    touched: dict[int, Delivery] = field(default_factory=dict)
    people: defaultdict[int, _PersonChanges] = field(default_factory=lambda: defaultdict(_PersonChanges))

    def person(self, delivery: Delivery) -> _PersonChanges:
        return self.people[delivery.subscriber_id]


@transaction.atomic
def record_tracking_events(events: Sequence[TrackingEvent]) -> TrackingResult:
    """Record delivery and engagement events in one transaction: the entry point for webhooks and our own tracking.

    For each event: find its delivery (by our delivery id, else the ESP's
    message id), skip it if that delivery already has its ESP event id (a
    webhook retry), update the delivery's status and times, append a
    DeliveryEvent, add to the message's totals and keep the person's metrics
    current. Hard bounces and complaints suppress the person, ESP unsubscribes
    unsubscribe them. Machine opens and clicks are recorded, flagged, and never
    count as the person's engagement. In anonymous mode opens and clicks only
    add to MessageStats.

    Built for batches (SendGrid posts hundreds of events at once): a fixed
    number of queries per batch plus one UPDATE per person whose metrics change.
    Events for unknown messages are counted under "unmatched:<esp>" and logged.
    Locks are taken in one order - deliveries, people, totals - so concurrent
    batches cannot deadlock.
    """
    result = TrackingResult()
    if not events:
        return result
    ordered = sorted(events, key=lambda e: e.occurred_at)
    batch = _Batch(anonymous=settings.TRACKING_ANONYMOUS, received_at=timezone.now())
    deliveries = _DeliveryIndex.locked_for(ordered)
    seen = deliveries.recorded_event_ids(ordered)
    for event in ordered:
        delivery = deliveries.match(event)
        if delivery is None:
            result.unmatched += 1
            counter = _UNMATCHED_COUNTER.get(event.kind)
            if counter:
                batch.stats[f"unmatched:{_slug(event.source)}"][counter] += 1
            logger.info("Tracking event %s from %s for an unknown message (ESP message id %r)",
                        event.kind, event.source or "?", event.esp_message_id)
            continue
        if event.esp_event_id:
            key = (delivery.pk, event.esp_event_id)
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
        _apply(batch, delivery, event)
        result.recorded += 1
    _write(batch, deliveries)
    return result


class _DeliveryIndex:
    """The deliveries a batch refers to, locked, and how to find each event's one."""

    def __init__(self, rows: list[Delivery]) -> None:
        self.by_id = {d.pk: d for d in rows}
        self.by_message_id: defaultdict[str, list[Delivery]] = defaultdict(list)
        for d in rows:
            if d.esp_message_id:
                self.by_message_id[d.esp_message_id].append(d)

    @classmethod
    def locked_for(cls, events: Sequence[TrackingEvent]) -> _DeliveryIndex:
        """Load and lock (in id order) the deliveries the events name, by our id or by (message id, address).

        The address narrows the message-id lookup: one Mailgun batch send
        shares its message id among all its recipients, and an event must
        not lock them all.
        """
        ids = {e.delivery_id for e in events if e.delivery_id}
        addressed = {(e.esp_message_id, email_key(e.recipient)) for e in events if e.esp_message_id and e.recipient}
        bare = {e.esp_message_id for e in events if e.esp_message_id and not e.recipient}
        if not ids and not addressed and not bare:
            return cls([])
        condition = Q()
        if ids:
            condition |= Q(pk__in=ids)
        if addressed:
            condition |= Q(esp_message_id__in={m for m, _ in addressed},
                           subscriber__email_key__in={k for _, k in addressed})
        if bare:
            condition |= Q(esp_message_id__in=bare)
        rows = (
            Delivery.objects.select_for_update(of=("self",))
            .filter(condition)
            .annotate(recipient_key=F("subscriber__email_key"))
            .defer("why")
            .order_by("pk")
        )
        return cls(list(rows))

    def match(self, event: TrackingEvent) -> Delivery | None:
        if event.delivery_id and event.delivery_id in self.by_id:
            return self.by_id[event.delivery_id]
        candidates = self.by_message_id.get(event.esp_message_id, []) if event.esp_message_id else []
        if event.recipient:
            wanted = email_key(event.recipient)
            return next((d for d in candidates if d.recipient_key == wanted), None)
        return candidates[0] if len(candidates) == 1 else None

    def recorded_event_ids(self, events: Sequence[TrackingEvent]) -> set[tuple[int, str]]:
        event_ids = {e.esp_event_id for e in events if e.esp_event_id}
        if not event_ids or not self.by_id:
            return set()
        return set(
            DeliveryEvent.objects.filter(delivery_id__in=list(self.by_id), esp_event_id__in=event_ids)
            .values_list("delivery_id", "esp_event_id")
        )

    @staticmethod
    def statuses(people: Sequence[int]) -> dict[int, str]:
        return dict(Subscriber.objects.filter(pk__in=people).values_list("pk", "status"))


def _apply(batch: _Batch, delivery: Delivery, event: TrackingEvent) -> None:
    """Fold one event into the delivery (in memory), the totals and the person's pending changes."""
    kind = event.kind
    at = event.occurred_at
    stats = batch.stats[delivery.message_key]
    batch.touched[delivery.pk] = delivery
    machine = False
    keep_row = True
    if kind == EventKind.SENT:
        if delivery.sent_at is None:
            delivery.sent_at = at
            stats["sent"] += 1
        delivery.esp_name = delivery.esp_name or event.source[:40]
        delivery.esp_message_id = delivery.esp_message_id or event.esp_message_id
        _raise_status(delivery, DeliveryStatus.SENT)
    elif kind == EventKind.DELIVERED:
        if delivery.delivered_at is None:
            delivery.delivered_at = at
            stats["delivered"] += 1
            batch.person(delivery).delivered += 1
        _raise_status(delivery, DeliveryStatus.DELIVERED)
    elif kind == EventKind.DEFERRED:
        delivery.reason = event.detail or delivery.reason
    elif kind == EventKind.BOUNCED:
        if delivery.bounce_type != BounceType.HARD:
            stats["bounces"] += 1
        delivery.bounce_type = BounceType.HARD
        delivery.reason = event.detail or delivery.reason
        _raise_status(delivery, DeliveryStatus.BOUNCED)
        _suppress(batch.person(delivery), SubscriberStatus.BOUNCED, event)
    elif kind == EventKind.SOFT_BOUNCED:
        if not delivery.bounce_type:
            stats["soft_bounces"] += 1
            delivery.bounce_type = BounceType.SOFT
        delivery.reason = event.detail or delivery.reason
        _raise_status(delivery, DeliveryStatus.SOFT_BOUNCED)
    elif kind in {EventKind.REJECTED, EventKind.FAILED}:
        if delivery.status not in {DeliveryStatus.REJECTED, DeliveryStatus.FAILED}:
            stats["failed"] += 1
        delivery.reason = event.detail or delivery.reason
        _raise_status(delivery, DeliveryStatus.REJECTED if kind == EventKind.REJECTED else DeliveryStatus.FAILED)
    elif kind == EventKind.COMPLAINED:
        if delivery.status != DeliveryStatus.COMPLAINED:
            stats["complaints"] += 1
        _raise_status(delivery, DeliveryStatus.COMPLAINED)
        _suppress(batch.person(delivery), SubscriberStatus.COMPLAINED, event)
    elif kind == EventKind.UNSUBSCRIBED:
        if delivery.status != DeliveryStatus.UNSUBSCRIBED:
            stats["unsubscribes"] += 1
        _raise_status(delivery, DeliveryStatus.UNSUBSCRIBED)
        person = batch.person(delivery)
        person.unsubscribe = True
        person.evidence = person.evidence or _evidence(event)
    elif kind in {EventKind.OPENED, EventKind.CLICKED}:
        machine = is_machine(
            user_agent=event.user_agent,
            ip_address=event.ip_address,
            occurred_at=at,
            reference_at=delivery.delivered_at or delivery.sent_at,
            machine_hint=event.machine_hint,
        )
        _apply_engagement(batch, delivery, stats, kind, at, machine)
        keep_row = not batch.anonymous
    if keep_row:
        batch.rows.append(
            DeliveryEvent(
                delivery_id=delivery.pk,
                kind=kind,
                occurred_at=at,
                received_at=batch.received_at,
                source=event.source[:40],
                esp_event_id=event.esp_event_id[:255],
                url=event.url if kind == EventKind.CLICKED else "",
                user_agent=event.user_agent[:500],
                ip_address=event.ip_address,
                is_machine=machine,
                detail=event.detail,
            )
        )


# Per kind: the counters and times an open or a click moves.
_ENGAGEMENT = {
    EventKind.OPENED: ("opens", "human_opens", "unique_opens", "open_count", "machine_open_count",
                       "first_opened_at", DeliveryStatus.OPENED, "opened_at"),
    EventKind.CLICKED: ("clicks", "human_clicks", "unique_clicks", "click_count", "machine_click_count",
                        "first_clicked_at", DeliveryStatus.CLICKED, "clicked_at"),
}


def _apply_engagement(batch: _Batch, delivery: Delivery, stats: Counter[str], kind: str, at: dt.datetime,
                      machine: bool) -> None:
    total, human, unique, count, machine_count, first_at, status, person_at = _ENGAGEMENT[kind]
    stats[total] += 1
    if not machine:
        stats[human] += 1
    if batch.anonymous:
        return
    setattr(delivery, count, getattr(delivery, count) + 1)
    if machine:
        setattr(delivery, machine_count, getattr(delivery, machine_count) + 1)
        return
    first = getattr(delivery, first_at)
    if first is None:
        stats[unique] += 1
    if first is None or at < first:
        setattr(delivery, first_at, at)
    _raise_status(delivery, status)
    person = batch.person(delivery)
    setattr(person, person_at, max(getattr(person, person_at) or at, at))


def _suppress(person: _PersonChanges, status: str, event: TrackingEvent) -> None:
    # A complaint outranks a bounce: it is the stronger "never again".
    if person.suppress != SubscriberStatus.COMPLAINED:
        person.suppress = status
        person.evidence = _evidence(event)


def _evidence(event: TrackingEvent) -> Any:
    from subscribers.actions import ConsentEvidence

    what = {EventKind.BOUNCED: "hard bounce", EventKind.COMPLAINED: "spam complaint"}.get(event.kind, event.kind)
    return ConsentEvidence(
        method=ConsentMethod.API,
        notice_version=f"{event.source or 'ESP'} webhook: {what}"[:200],
        occurred_at=event.occurred_at,
    )


def _write(batch: _Batch, deliveries: _DeliveryIndex) -> None:
    """Write a folded batch: events, deliveries, then people in id order, then totals in key order."""
    if batch.rows:
        _insert_events(batch.rows)
    if batch.touched:
        _save_deliveries(sorted(batch.touched.values(), key=lambda d: d.pk))
    if batch.people:
        statuses = deliveries.statuses(list(batch.people))
        live = [pk for pk in sorted(batch.people)
                if statuses.get(pk, SubscriberStatus.ERASED) != SubscriberStatus.ERASED]
        _record_engagement(live, batch.people)
        for subscriber_id in live:
            _change_status(subscriber_id, batch.people[subscriber_id])
    _bump_stats(batch.stats, now=batch.received_at)


_EVENT_FIELDS = ["delivery_id", "kind", "occurred_at", "received_at", "source", "esp_event_id", "url", "user_agent",
                 "ip_address", "is_machine", "detail"]


def _insert_events(rows: list[DeliveryEvent]) -> None:
    """Append event rows: on PostgreSQL one INSERT from arrays, which costs a fraction of bulk_create's."""
    if connection.vendor != "postgresql":
        DeliveryEvent.objects.bulk_create(rows, batch_size=500)
        return
    fields = {f.attname: f for f in DeliveryEvent._meta.concrete_fields}
    columns = ", ".join(fields[name].column for name in _EVENT_FIELDS)
    arrays = ", ".join(f"%s::{fields[name].db_type(connection)}[]" for name in _EVENT_FIELDS)
    params = [[getattr(row, name) for row in rows] for name in _EVENT_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {DeliveryEvent._meta.db_table} ({columns}) SELECT * FROM unnest({arrays})", params)


def _save_deliveries(deliveries: list[Delivery]) -> None:
    """Write the tracked fields of many deliveries.

    On PostgreSQL one UPDATE joins the rows to arrays of new values (Django's
    bulk_update builds a CASE per row and field, which costs more than the
    whole rest of a batch). Elsewhere (the embedded SQLite setup) one UPDATE per row.
    """
    if connection.vendor != "postgresql":
        for delivery in deliveries:
            values = {name: getattr(delivery, name) for name in _TRACKED_FIELDS}
            Delivery.objects.filter(pk=delivery.pk).update(**values)
        return
    table = Delivery._meta.db_table
    columns = {f.name: (f.column, f.db_type(connection)) for f in Delivery._meta.concrete_fields}
    arrays = ", ".join(f"%s::{columns[name][1]}[]" for name in ["id", *_TRACKED_FIELDS])
    names = ", ".join(columns[name][0] for name in ["id", *_TRACKED_FIELDS])
    assignments = ", ".join(f"{columns[name][0]} = v.{columns[name][0]}" for name in _TRACKED_FIELDS)
    params = [[d.pk for d in deliveries]] + [[getattr(d, name) for d in deliveries] for name in _TRACKED_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({names}) WHERE {table}.id = v.id",
            params,
        )


def _record_engagement(subscriber_ids: list[int], people: dict[int, _PersonChanges]) -> None:
    """Keep the people's engagement metrics current: one statement for the whole batch."""
    from subscribers.actions import EngagementChange, record_email_engagement_batch

    record_email_engagement_batch([
        EngagementChange(subscriber_id=pk, delivered=people[pk].delivered, opened_at=people[pk].opened_at,
                         clicked_at=people[pk].clicked_at)
        for pk in subscriber_ids
    ])


def _change_status(subscriber_id: int, changes: _PersonChanges) -> None:
    from preferences.actions import unsubscribe
    from subscribers.actions import suppress_subscriber

    if changes.suppress:
        suppress_subscriber(subscriber_id=subscriber_id, status=changes.suppress, evidence=changes.evidence)
    elif changes.unsubscribe:
        subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
        if subscriber is not None:
            unsubscribe(subscriber, evidence=changes.evidence)


def _bump_stats(deltas: dict[str, Counter[str]], *, now: dt.datetime | None = None) -> None:
    """Add to the per-message totals: one UPDATE per message, in key order (a stable lock order)."""
    now = now or timezone.now()
    for message_key in sorted(deltas):
        counts = {name: n for name, n in deltas[message_key].items() if n}
        if not counts:
            continue
        updates = {name: F(name) + n for name, n in counts.items()}
        rows = MessageStats.objects.filter(message_key=message_key)
        if not rows.update(**updates, updated_at=now):
            MessageStats.objects.bulk_create([MessageStats(message_key=message_key)], ignore_conflicts=True)
            rows.update(**updates, updated_at=now)


def _raise_status(delivery: Delivery, status: str) -> None:
    if STATUS_RANK[status] > STATUS_RANK[delivery.status]:
        delivery.status = status


def _slug(esp_name: str) -> str:
    return (esp_name or "unknown").strip().lower().replace(" ", "_")[:80]
