"""Start journeys from what other apps report: a person subscribed, events were tracked."""

from __future__ import annotations

import time
from typing import Any

from campaigns.journeys.models import Journey, JourneyStatus, JourneyStep, StepKind, TriggerKind

_EVENT_NAMES_SECONDS = 10.0
_event_names: tuple[float, frozenset[str]] = (0.0, frozenset())


def journey_event_names() -> frozenset[str]:
    """Return the event names active journeys start, end or wait on (looked up at most every 10 seconds)."""
    global _event_names
    checked, names = _event_names
    if time.monotonic() - checked > _EVENT_NAMES_SECONDS:
        active = Journey.objects.filter(status=JourneyStatus.ACTIVE)
        found = set(active.filter(trigger=TriggerKind.EVENT).values_list("trigger_event", flat=True))
        found |= set(active.exclude(exit_event="").values_list("exit_event", flat=True))
        found |= set(JourneyStep.objects.filter(journey__status=JourneyStatus.ACTIVE, kind=StepKind.WAIT_EVENT)
                     .values_list("event_name", flat=True))
        names = frozenset(found)
        _event_names = (time.monotonic(), names)
    return names


def forget_event_names() -> None:
    global _event_names
    _event_names = (0.0, frozenset())


def events_tracked(events: list[Any]) -> None:
    """Queue the events journeys care about; the task enrolls, ends and wakes within seconds."""
    from campaigns.journeys.tasks import handle_journey_events_task

    names = journey_event_names()
    wanted = [{"subscriber_id": e.subscriber_id, "name": e.name, "properties": e.properties,
               "occurred_at": e.occurred_at.isoformat()} for e in events if e.name in names]
    if wanted:
        handle_journey_events_task.delay(wanted)


def subscribed(subscriber_id: int) -> None:
    from campaigns.journeys.tasks import enroll_subscribed_task

    if Journey.objects.filter(status=JourneyStatus.ACTIVE, trigger=TriggerKind.SIGNUP).exists():
        enroll_subscribed_task.delay(subscriber_id)
