"""What other apps may ask of campaigns: keyword-only, plain values, no model instances."""

from __future__ import annotations

from typing import Any

from campaigns import tracking
from campaigns.models import STATS_FIELDS, Delivery, MessageStats


def anymail_metadata(*, delivery_id: int) -> dict[str, str]:
    """Return the metadata to send with an AnymailMessage so its webhooks find the delivery again."""
    return {"delivery_id": str(delivery_id)}


def tracked_html(html_body: str, *, delivery_id: int) -> str:
    """Return HTML whose links go through our click redirect, with our open pixel (ESPs without tracking)."""
    return tracking.add_tracking(html_body, delivery_id=delivery_id)


def open_pixel_url(*, delivery_id: int) -> str:
    return tracking.open_pixel_url(delivery_id)


def click_url(*, delivery_id: int, url: str) -> str:
    return tracking.click_url(delivery_id, url)


def delivery_explanation(*, delivery_id: int) -> dict[str, Any] | None:
    """Return why a delivery was sent (for "why am I getting this?"), or None for an unknown delivery."""
    row = Delivery.objects.filter(pk=delivery_id).values("message_key", "why", "sent_at", "subscriber_id").first()
    if row is None:
        return None
    return {"message_key": row["message_key"], "why": row["why"] or {}, "sent_at": row["sent_at"],
            "subscriber_id": row["subscriber_id"]}


def message_stats(*, message_key: str) -> dict[str, int]:
    """Return the running totals of one message (all zero when nothing was recorded yet)."""
    row = MessageStats.objects.filter(message_key=message_key).values(*STATS_FIELDS).first()
    return dict(row) if row else dict.fromkeys(STATS_FIELDS, 0)


def lifecycle_stage(*, subscriber_id: int) -> tuple[str, str]:
    """Return a person's lifecycle stage as (key, label), derived from the prebuilt segments."""
    from campaigns.segments import actions as segment_actions

    stage = segment_actions.lifecycle_stage(subscriber_id=subscriber_id) or "lead"
    return stage, segment_actions.lifecycle_label(stage)


def segment_history(*, subscriber_id: int) -> list[dict[str, Any]]:
    """Return the tracked segments a person is in (``member_since``) and their recent entries and exits."""
    from campaigns.segments import actions as segment_actions

    return segment_actions.segment_history(subscriber_id=subscriber_id)


def journey_history(*, subscriber_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Return a person's journey trips, newest first: journey, trip number, state, current step, dates, note."""
    from campaigns.journeys.models import Enrollment

    rows = (Enrollment.objects.filter(subscriber_id=subscriber_id).select_related("journey")
            .order_by("-entered_at", "-id")[:limit])
    return [{"journey": e.journey.name, "journey_id": e.journey_id, "entry": e.entry, "state": e.state,
             "state_label": e.get_state_display(), "step": e.step_key, "entered_at": e.entered_at,
             "finished_at": e.finished_at, "next_run_at": e.next_run_at, "note": e.note} for e in rows]
