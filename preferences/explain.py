"""Answer "why am I getting this?" from the person's latest delivery, in their language."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.translation import gettext as _


def latest_delivery(subscriber_id: int) -> dict[str, Any] | None:
    """Return the message key, ``why`` and send time of the person's latest sent delivery, or None.

    campaigns.api offers delivery_explanation(delivery_id) but no way to find
    a person's latest delivery, so this one function reads campaigns' Delivery
    directly, read-only, through its (subscriber, -created_at) index. Replace
    it with a campaigns.api call once one exists. Any failure (campaigns not
    migrated yet, a schema change) degrades to "no delivery".
    """
    try:
        from campaigns.models import Delivery

        return (Delivery.objects.filter(subscriber_id=subscriber_id, sent_at__isnull=False)
                .order_by("-created_at", "-id").values("message_key", "why", "sent_at").first())
    except Exception:  # noqa: BLE001 - the page must render without campaigns' data
        return None


def explain(*, delivery: dict[str, Any] | None, status: str, confirmed_at: dt.datetime | None) -> dict[str, Any]:
    """Return plain data for the page: when the last email went out and the reasons, as sentences.

    Understood keys of a delivery's ``why``: ``topic``, ``segment``,
    ``journey``, ``campaign`` (names, shown quoted) and ``reason`` (a sentence
    written by staff, shown as is). Other keys are ignored.
    """
    reasons: list[str] = []
    why = (delivery or {}).get("why") or {}
    if isinstance(why, dict):
        if why.get("campaign"):
            reasons.append(_("It was our campaign “%(name)s”.") % {"name": why["campaign"]})
        if why.get("journey"):
            reasons.append(_("It is part of the email series “%(name)s”.") % {"name": why["journey"]})
        if why.get("topic"):
            reasons.append(_("You are subscribed to the topic “%(name)s”.") % {"name": why["topic"]})
        if why.get("segment"):
            reasons.append(_("You are in the audience “%(name)s”.") % {"name": why["segment"]})
        if isinstance(why.get("reason"), str) and why["reason"].strip():
            reasons.append(why["reason"].strip())
    if status == "subscribed" and confirmed_at:
        membership = "confirmed"
    elif status == "subscribed":
        membership = "subscribed"
    else:
        membership = "not_subscribed"
    return {
        "sent_at": (delivery or {}).get("sent_at"),
        "reasons": reasons,
        "membership": membership,
        "confirmed_at": confirmed_at,
    }
