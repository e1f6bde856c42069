"""Show what a journey would do to one person, without doing it: a dry run on a virtual clock.

It walks the graph from the first step with the person's real profile:
the policy gate answers for each email at its time, waits and local times
use their time zone, branches on rules use their data today. What cannot
be known ahead (will they open, will they do the event) takes the path of
“no”, and the line says what would happen otherwise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from campaigns.journeys import actions, graph
from campaigns.journeys.models import Enrollment, Journey, JourneyStatus, JourneyStep, StepKind
from campaigns.sending import policy

MAX_LINES = 40


@dataclass(frozen=True)
class Line:
    at: dt.datetime
    local: str
    step: str
    text: str


def simulate(journey: Journey, *, subscriber_id: int, start: dt.datetime | None = None) -> list[Line]:
    """Return, step by step, when and what the journey would do to this person if they entered at ``start``."""
    from subscribers.models import BLOCKED_STATUSES, Subscriber

    now = start or timezone.now()
    person = Subscriber.objects.filter(pk=subscriber_id).values(
        "pk", "status", "timezone", "birthday_month", "birthday_day", "attributes").first()
    if person is None:
        return []
    zone = policy.zone_of(person["timezone"])
    lines: list[Line] = []

    def say(at: dt.datetime, step: str, text: str) -> None:
        lines.append(Line(at, f"{at.astimezone(zone):%a %d %b %H:%M} local", step, text))

    if person["status"] in BLOCKED_STATUSES:
        say(now, "", f"Would not enter: the person is {person['status']}.")
        return lines
    allowed = actions.allowed_entries(journey, {subscriber_id}, now=now)
    if subscriber_id not in allowed:
        say(now, "", "Would not enter now: the entry rule or another journey of the same group keeps them out.")
    else:
        say(now, "", "Enters the journey" + ("" if journey.status == JourneyStatus.ACTIVE else
                                              " (once the journey is turned on)") + ".")
    if journey.exit_event:
        say(now, "", f"Leaves as soon as they do “{journey.exit_event}” (the goal), checked before every step.")
    steps = list(journey.steps.all())
    current = graph.first_step(steps)
    at = now
    while current is not None and len(lines) < MAX_LINES:
        at, text, target = _visit(journey, current, steps, person, at, subscriber_id, allowed.get(subscriber_id, 1))
        say(at, current.key, f"{current.label}: {text}" if current.label else text[:1].upper() + text[1:])
        current = next((s for s in steps if s.key == target), None) if target else None
    if len(lines) >= MAX_LINES:
        say(at, "", "… and so on (the journey loops).")
    else:
        say(at, "", "Completes the journey.")
    return lines


def _visit(journey: Journey, step: JourneyStep, steps: list[JourneyStep], person: dict, at: dt.datetime,
           subscriber_id: int, entry: int) -> tuple[dt.datetime, str, str | None]:
    """Return when the step is done with the person, what it did, and where they go next."""
    paths = graph.edges(step, steps)
    yes, no = paths[0].target if paths else None, paths[1].target if len(paths) > 1 else None
    if step.kind == StepKind.WAIT:
        later = at + dt.timedelta(seconds=step.wait_amount * actions.UNIT_SECONDS[step.wait_unit])
        return later, f"waits {step.wait_amount} {step.get_wait_unit_display()}.", yes
    if step.kind == StepKind.WAIT_UNTIL:
        return actions.wait_until(step, person, now=at), "waits until then.", yes
    if step.kind == StepKind.WAIT_EVENT:
        later = at + dt.timedelta(seconds=step.wait_amount * actions.UNIT_SECONDS[step.wait_unit])
        return later, (f"waits up to {step.wait_amount} {step.get_wait_unit_display()} for “{step.event_name}”; "
                       f"without it, goes on here (had they done it: “{yes or 'exit'}”)."), no
    if step.kind == StepKind.SEND_EMAIL:
        decision = policy.decide([subscriber_id], topic_id=journey.topic_id, now=at)[subscriber_id]
        if decision.action == policy.DEFER and decision.until:
            return decision.until, f"sends “{step.email}” later: {decision.explanation}.", yes
        if decision.action == policy.SKIP:
            return at, f"would not send “{step.email}”: {decision.explanation}.", yes
        return at, f"sends “{step.email}”.", yes
    if step.kind == StepKind.BRANCH:
        if step.engagement_step:
            return at, (f"has not {step.get_engagement_display()} yet, so takes the “no” path "
                        f"(had they: “{yes or 'exit'}”)."), no
        fake = Enrollment(pk=0, subscriber_id=subscriber_id, entry=entry)
        matched = bool(actions.branch_matches(journey, step, [fake], now=at))
        return at, f"the condition is {'met' if matched else 'not met'} today: takes “{'yes' if matched else 'no'}”.", \
            yes if matched else no
    if step.kind == StepKind.SPLIT:
        path_a = actions.split_bucket(subscriber_id, entry, step.key) < (step.split_percent or 50)
        return at, f"random split: this person would take path {'A' if path_a else 'B'}.", yes if path_a else no
    if step.kind == StepKind.UPDATE_PROFILE:
        return at, f"{step.get_update_action_display().lower()} {step.update_key or step.update_topic or ''}".strip() \
            + ".", yes
    return at, "leaves the journey.", None
