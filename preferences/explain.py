"""Answer "why am I getting this?" from the person's latest delivery, in their language."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import formats
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
    ``journey``, ``campaign`` (names, shown quoted), ``trigger`` (what
    started a journey, as data; worded here in the page's language) and
    ``reason`` (a sentence in English, shown as is when there is no
    ``trigger``: deliveries recorded before it existed). Other keys are ignored.
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
        started = _trigger_sentence(why.get("trigger"))
        if started:
            reasons.append(started)  # the same as "reason", in the page's language
        elif isinstance(why.get("reason"), str) and why["reason"].strip():
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


def _trigger_sentence(trigger: Any) -> str:
    """Word what started a journey (``campaigns.journeys.actions.trigger_facts``), or "" if not understood."""
    if not isinstance(trigger, dict):
        return ""
    try:
        date = formats.date_format(dt.date.fromisoformat(str(trigger.get("on"))), "DATE_FORMAT")
    except ValueError:
        return ""
    kind = trigger.get("kind")
    if kind == "signup":
        return _("You subscribed on %(date)s.") % {"date": date}
    if kind == "event":
        return _("You did “%(event)s” on our site on %(date)s.") % {"event": trigger.get("event", ""), "date": date}
    if kind == "segment":
        return _("You joined the group “%(name)s” on %(date)s.") % {"name": trigger.get("segment", ""),
                                                                    "date": date}
    if kind == "birthday":
        return _("It is your birthday.")
    if kind == "date":
        return _("It is a date you told us.")
    if kind == "inactivity":
        return _("We had not heard from you for a while.")
    return ""
