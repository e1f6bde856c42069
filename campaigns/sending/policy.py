"""The one gate before every marketing send, shared by campaigns and journeys.

``decide`` answers, for each person of a send chunk, whether a message about
a topic may go now: **send**, **defer** until a time, or **skip** for a
reason. It reads everything it needs for the whole chunk in a fixed number of
queries. Checks, in order (the first that fails decides):

1. status: only subscribed people (pending ones have not confirmed their
   double opt-in; contacts never subscribed; unsubscribed, bounced,
   complained and erased people never get marketing mail) — skip;
2. suppression (an erased address that came back) — skip;
3. consent: the latest email-marketing entry of the ledger grants it — skip;
4. topic: the person is subscribed to the message's topic — skip;
5. pause ("snooze" on the preference center) — defer until it ends;
6. the person's frequency choice (weekly, monthly) — defer until due;
7. the global cap, ``MARKETING_WEEKLY_CAP`` marketing emails per rolling
   7 days — defer until the oldest of them is a week old;
8. quiet hours in the person's own time zone (``QUIET_HOURS``) — defer to
   their end. Deferring never drops a message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery
from django.utils import timezone

SEND, DEFER, SKIP = "send", "defer", "skip"
MARKETING_PREFIXES = ("campaign:", "journey:")

REASONS = {
    "pending": "has not confirmed the subscription yet (double opt-in)",
    "contact": "never subscribed to marketing mail",
    "unsubscribed": "unsubscribed",
    "bounced": "the address bounced",
    "complained": "reported an earlier email as spam",
    "erased": "asked for their data to be erased",
    "suppressed": "the address is on the suppression list",
    "no_consent": "has no email-marketing consent in the ledger",
    "not_in_topic": "is not subscribed to this topic",
    "paused": "paused their emails",
    "frequency": "asked for fewer emails",
    "weekly_cap": "has had the most marketing emails allowed in 7 days",
    "quiet_hours": "it is night where they live",
}


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str = ""
    until: dt.datetime | None = None

    @property
    def explanation(self) -> str:
        """Say in words why the message waits or is not sent (stored with the delivery)."""
        if self.action == SEND:
            return "allowed"
        words = REASONS.get(self.reason, self.reason)
        if self.action == DEFER and self.until:
            return f"deferred until {self.until:%Y-%m-%d %H:%M} UTC: {words}"
        return f"skipped: {words}"


def quiet_hours() -> tuple[int, int] | None:
    """Return (start hour, end hour) of the nightly quiet time, e.g. (21, 8), or None when off."""
    raw = getattr(settings, "QUIET_HOURS", "")
    if not raw:
        return None
    start, end = (int(part) for part in raw.split("-", 1))
    return (start, end) if start != end else None


def zone_of(name: str) -> ZoneInfo:
    """Return a person's time zone (the default one for none, UTC for an unknown name)."""
    try:
        return ZoneInfo(name) if name else ZoneInfo(settings.DEFAULT_RECIPIENT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def end_of_quiet_hours(moment: dt.datetime, zone_name: str) -> dt.datetime | None:
    """Return when quiet hours end if ``moment`` falls in them in that time zone, else None."""
    hours = quiet_hours()
    if hours is None:
        return None
    start, end = hours
    local = moment.astimezone(zone_of(zone_name))
    in_quiet = (local.hour >= start or local.hour < end) if start > end else (start <= local.hour < end)
    if not in_quiet:
        return None
    day = local.date() if local.hour < end else local.date() + dt.timedelta(days=1)
    wake = dt.datetime.combine(day, dt.time(end), tzinfo=local.tzinfo)
    return wake.astimezone(dt.UTC)


def decide(subscriber_ids: Iterable[int], *, topic_id: int | None, now: dt.datetime | None = None,
           ignore_quiet_hours: bool = False, preferences: dict[int, Any] | None = None) -> dict[int, Decision]:
    """Return the decision for each person (a fixed number of queries for any chunk size).

    ``preferences``: their ``sending_preferences_for`` when the caller has already read them.
    """
    from campaigns.models import Delivery
    from preferences.api import sending_preferences_for
    from preferences.models import TopicSubscription
    from subscribers.models import ConsentPurpose, ConsentRecord, Subscriber, SuppressedAddress, email_hash

    now = now or timezone.now()
    ids = list(subscriber_ids)
    latest_consent = (ConsentRecord.objects.filter(subscriber_id=OuterRef("pk"),
                                                   purpose=ConsentPurpose.EMAIL_MARKETING, topic__isnull=True)
                      .order_by("-occurred_at", "-id").values("granted")[:1])
    people = list(Subscriber.objects.filter(pk__in=ids).annotate(consent=Subquery(latest_consent))
                  .values_list("pk", "status", "email_key", "timezone", "consent"))
    suppressed = set(SuppressedAddress.objects.filter(email_hash__in=[email_hash(p[2]) for p in people])
                     .values_list("email_hash", flat=True))
    in_topic = set(TopicSubscription.objects.filter(subscriber_id__in=ids, topic_id=topic_id, subscribed=True)
                   .values_list("subscriber_id", flat=True)) if topic_id else set(ids)
    if preferences is None:
        preferences = sending_preferences_for(subscriber_ids=ids)
    week_ago = now - dt.timedelta(days=7)
    marketing = Q(message_key__startswith=MARKETING_PREFIXES[0]) | Q(message_key__startswith=MARKETING_PREFIXES[1])
    recent = {row["subscriber_id"]: row for row in (
        Delivery.objects.filter(marketing, subscriber_id__in=ids, sent_at__gte=now - dt.timedelta(days=31))
        .values("subscriber_id").annotate(last=Max("sent_at"), week=Count("id", filter=Q(sent_at__gte=week_ago)),
                                          oldest=Min("sent_at", filter=Q(sent_at__gte=week_ago))))}
    cap = settings.MARKETING_WEEKLY_CAP
    decisions: dict[int, Decision] = {}
    for pk, status, key, zone, consent in people:
        if status != "subscribed":
            decisions[pk] = Decision(SKIP, status)
        elif email_hash(key) in suppressed:
            decisions[pk] = Decision(SKIP, "suppressed")
        elif consent is not True:
            decisions[pk] = Decision(SKIP, "no_consent")
        elif pk not in in_topic:
            decisions[pk] = Decision(SKIP, "not_in_topic")
        else:
            decisions[pk] = _timing(pk, zone, now, preferences.get(pk), recent.get(pk), cap,
                                    ignore_quiet_hours=ignore_quiet_hours)
    return decisions


def _timing(pk: int, zone: str, now: dt.datetime, prefs: object, recent: dict | None, cap: int,
            *, ignore_quiet_hours: bool) -> Decision:
    paused_until = getattr(prefs, "paused_until", None)
    if paused_until and paused_until > now:
        return Decision(DEFER, "paused", paused_until)
    interval = getattr(prefs, "min_interval", None)
    if interval and recent and recent["last"] and recent["last"] + interval > now:
        return Decision(DEFER, "frequency", recent["last"] + interval)
    if cap and recent and recent["week"] >= cap and recent["oldest"]:
        return Decision(DEFER, "weekly_cap", recent["oldest"] + dt.timedelta(days=7))
    if not ignore_quiet_hours:
        wake = end_of_quiet_hours(now, zone)
        if wake is not None:
            return Decision(DEFER, "quiet_hours", wake)
    return Decision(SEND)
