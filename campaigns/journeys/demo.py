"""Bring the prebuilt journeys to life on demo data: topics chosen, turned on, the last week replayed.

The replay runs the real engine on a moving clock, hour by hour: people who
confirmed their subscription enter the welcome series, the demo shop's
checkouts and orders start cart recovery and post-purchase, birthdays and
inactivity are swept, and each email goes through the policy gate and the
mail backend (captured locally by default). Some recipients open and click
a few hours later, recorded through the tracking action, so branches and the
diagram's results have something to show. Safe to run again: it does
nothing once any journey has people in it. (The daily sweeps may leave a
few advancing tasks queued; the worker finds nothing due for them.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from campaigns.journeys import actions
from campaigns.journeys.models import Enrollment, Journey, JourneyStatus, TriggerKind

# Prebuilt journey → the demo topic its emails belong to.
DEMO_TOPICS = {
    "welcome": "newsletter",
    "abandoned_cart": "offers",
    "post_purchase": "product-updates",
    "reengagement_sunset": "newsletter",
    "birthday": "offers",
    "win_back": "offers",
}
MAX_PER_TRIGGER = 3000
BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Version/17.5 Safari/605.1.15")


def _share(key: str) -> float:
    """Return a stable number in [0, 1) for a key (the same demo on every machine)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") / 2**32


def run_demo_journeys(*, days: int = 7, now: dt.datetime | None = None,
                      log: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """Turn on the prebuilt journeys with demo topics and replay the last ``days`` days; returns counts."""
    from preferences.models import Topic

    if Enrollment.objects.exists():
        return {}
    now = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    start = now - dt.timedelta(days=days)
    topics = {t.slug: t for t in Topic.objects.filter(slug__in=set(DEMO_TOPICS.values()))}
    journeys = []
    for journey in Journey.objects.filter(prebuilt_key__in=list(DEMO_TOPICS), status=JourneyStatus.DRAFT):
        topic = topics.get(DEMO_TOPICS[journey.prebuilt_key])
        if topic is None:
            continue
        journey.topic = topic
        actions.save_journey(journey, list(journey.steps.all()))
        try:
            journeys.append(actions.activate_journey(journey, now=start))
        except actions.JourneyInvalid as exc:
            log(f"{journey.name} stays off: {' '.join(exc.problems)}")
    if not journeys:
        return {}
    arrivals = _arrivals(journeys, start, now)
    counts = {"journeys": len(journeys), "entered": 0, "sent": 0}
    planned: list[tuple[dt.datetime, Any]] = []
    clock = start
    while clock <= now:
        for journey in journeys:
            due = [a for a in arrivals.get(journey.pk, []) if a[0] <= clock]
            arrivals[journey.pk] = [a for a in arrivals.get(journey.pk, []) if a[0] > clock]
            for at, subscriber_id, data in due:
                counts["entered"] += actions.enroll(journey, [subscriber_id], now=at, wake=False,
                                                    trigger_data={subscriber_id: data} if data else None)
            if journey.trigger in (TriggerKind.DATE, TriggerKind.INACTIVITY) and clock.hour == 6:
                found = actions.sweep_dates(journey, now=clock) if journey.trigger == TriggerKind.DATE \
                    else actions.sweep_inactive(journey, now=clock, limit=MAX_PER_TRIGGER // 10)
                counts["entered"] += found
        result = actions.advance_due(now=clock, seconds=60)
        counts["sent"] += result.sent
        planned += _engagement(clock)
        planned = _record_due(planned, clock)
        clock += dt.timedelta(hours=1)
    _record_due(planned, now + dt.timedelta(days=365))
    log(f"{counts['journeys']} journeys on; {counts['entered']} entries and {counts['sent']} emails replayed "
        f"over {days} days")
    return counts


def _arrivals(journeys: list[Journey], start: dt.datetime,
              now: dt.datetime) -> dict[int, list[tuple[dt.datetime, int, dict[str, Any]]]]:
    """Return who enters each signup and event journey during the replay, and when."""
    from subscribers.models import Event, Subscriber

    found: dict[int, list[tuple[dt.datetime, int, dict[str, Any]]]] = {}
    for journey in journeys:
        if journey.trigger == TriggerKind.SIGNUP:
            rows = Subscriber.objects.filter(status="subscribed", confirmed_at__gte=start, confirmed_at__lte=now) \
                .order_by("confirmed_at").values_list("confirmed_at", "pk")[:MAX_PER_TRIGGER]
            found[journey.pk] = [(at, pk, {}) for at, pk in rows]
        elif journey.trigger == TriggerKind.EVENT:
            rows = Event.objects.filter(name=journey.trigger_event, subscriber__isnull=False,
                                        occurred_at__gte=start, occurred_at__lte=now) \
                .order_by("occurred_at").values_list("occurred_at", "subscriber_id", "properties")[:MAX_PER_TRIGGER]
            found[journey.pk] = [(at, pk, {"event": journey.trigger_event, "properties": props or {},
                                           "occurred_at": at.isoformat()})
                                 for at, pk, props in rows if actions.matches(props or {}, journey.trigger_filters)]
    return found


def _engagement(clock: dt.datetime) -> list[tuple[dt.datetime, Any]]:
    """Plan what happens to the emails sent this hour: delivered; about half opened, some clicked, later."""
    from campaigns.models import Delivery
    from campaigns.tracking import TrackingEvent

    planned = []
    sent = Delivery.objects.filter(message_key__startswith="journey:", sent_at=clock).values_list("pk", "message_key")
    for delivery_id, key in sent:
        planned.append((clock + dt.timedelta(seconds=20),
                        TrackingEvent(kind="delivered", occurred_at=clock + dt.timedelta(seconds=20),
                                      source="demo", delivery_id=delivery_id)))
        share = _share(f"{delivery_id}:{key}")
        if share < 0.45:
            opened = clock + dt.timedelta(minutes=30 + int(share * 2000))
            planned.append((opened, TrackingEvent(kind="opened", occurred_at=opened, source="demo",
                                                  delivery_id=delivery_id, user_agent=BROWSER)))
            if share < 0.12:
                clicked = opened + dt.timedelta(minutes=2)
                planned.append((clicked, TrackingEvent(kind="clicked", occurred_at=clicked, source="demo",
                                                       delivery_id=delivery_id, user_agent=BROWSER,
                                                       url="https://shop.example.com/")))
    return planned


def _record_due(planned: list[tuple[dt.datetime, Any]], clock: dt.datetime) -> list[tuple[dt.datetime, Any]]:
    from campaigns import actions as tracking_actions

    due = sorted((p for p in planned if p[0] <= clock), key=lambda p: p[0])
    if due:
        tracking_actions.record_tracking_events([event for _, event in due])
    return [p for p in planned if p[0] > clock]
