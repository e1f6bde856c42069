"""What other apps may ask about people: read-only, keyword-only, plain values."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone as django_tz

from subscribers.models import ConsentPurpose, ConsentRecord


@dataclass(frozen=True)
class ConsentState:
    purpose: str
    topic_id: int | None
    granted: bool
    method: str
    occurred_at: dt.datetime
    notice_version: str


def current_consent(*, subscriber_id: int) -> dict[tuple[str, int | None], ConsentState]:
    """Return the latest consent per (purpose, topic), derived from the ledger."""
    states: dict[tuple[str, int | None], ConsentState] = {}
    records = ConsentRecord.objects.filter(subscriber_id=subscriber_id).order_by("occurred_at", "id")
    for r in records.values_list("purpose", "topic_id", "granted", "method", "occurred_at", "notice_version"):
        states[(r[0], r[1])] = ConsentState(*r)
    return states


def has_consent(
    *, subscriber_id: int, purpose: str = ConsentPurpose.EMAIL_MARKETING, topic_id: int | None = None
) -> bool:
    """Say whether the latest ledger entry for this purpose grants consent."""
    latest = (
        ConsentRecord.objects.filter(subscriber_id=subscriber_id, purpose=purpose, topic_id=topic_id)
        .order_by("-occurred_at", "-id")
        .values_list("granted", flat=True)
        .first()
    )
    return bool(latest)


# --- Privacy rights: export ------------------------------------------------

_export_sections: dict[str, Any] = {}


def register_export_section(name: str, build: Any) -> None:
    """Let another app add ``name: build(subscriber_id)`` (plain JSON data) to a person's data export."""
    _export_sections[name] = build


def export_personal_data(*, subscriber_id: int) -> dict[str, Any]:
    """Return everything we hold about a person as plain JSON-ready data (GDPR art. 15 and 20)."""
    from preferences.models import TopicSubscription
    from subscribers.models import AttributeDefinition, Event, Order, Subscriber

    s = Subscriber.objects.get(pk=subscriber_id)
    labels = dict(AttributeDefinition.objects.values_list("key", "label"))
    profile_fields = ("email", "first_name", "last_name", "phone", "language", "region", "city", "timezone",
                      "gender", "company", "job_title", "industry", "source", "external_id", "status")
    data: dict[str, Any] = {
        "exported_at": _iso(django_tz.now()),
        "profile": {
            **{name: getattr(s, name) for name in profile_fields},
            "country": s.country.code or "",
            "birth_date": s.birth_date.isoformat() if s.birth_date else None,
            "birthday": f"{s.birthday_month:02d}-{s.birthday_day:02d}" if s.birthday_month else None,
            "tags": s.tags,
            "created_at": _iso(s.created_at),
            "confirmed_at": _iso(s.confirmed_at),
        },
        "attributes": {labels.get(k, k): v for k, v in (s.attributes or {}).items()},
        "activity": {
            "order_count": s.order_count, "total_spent": str(s.total_spent), "first_order_at": _iso(s.first_order_at),
            "last_order_at": _iso(s.last_order_at), "last_seen_at": _iso(s.last_seen_at),
            "last_open_at": _iso(s.last_open_at), "last_click_at": _iso(s.last_click_at),
            "emails_received": s.emails_received,
        },
        "consent_history": [
            {"purpose": r.purpose, "topic": r.topic.slug if r.topic else None, "granted": r.granted,
             "method": r.method, "notice_version": r.notice_version, "ip_address": r.ip_address,
             "user_agent": r.user_agent, "occurred_at": _iso(r.occurred_at)}
            for r in s.consent_records.select_related("topic").order_by("occurred_at", "id")
        ],
        "topics": [
            {"topic": ts.topic.name, "subscribed": ts.subscribed, "changed_at": _iso(ts.changed_at)}
            for ts in TopicSubscription.objects.filter(subscriber=s).select_related("topic")
        ],
        "orders": [
            {"order_id": o.order_id, "total": str(o.total), "refunded": str(o.refunded), "currency": o.currency,
             "occurred_at": _iso(o.occurred_at),
             "items": [{"name": i.name, "sku": i.sku, "price": str(i.price), "quantity": i.quantity}
                       for i in o.items.all()]}
            for o in Order.objects.filter(subscriber=s).prefetch_related("items")
        ],
        "events": [
            {"name": e.name, "properties": e.properties, "occurred_at": _iso(e.occurred_at)}
            for e in Event.objects.filter(subscriber=s).order_by("occurred_at").iterator()
        ],
    }
    for name, build in _export_sections.items():
        data[name] = build(subscriber_id)
    return data


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
