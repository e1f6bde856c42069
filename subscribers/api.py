"""What other apps may ask about people: read-only, keyword-only, plain values."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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
