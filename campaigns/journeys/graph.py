"""Read a journey's steps as a graph: where each step leads, and what makes a graph invalid.

Pure functions over plain step objects (saved or not), so the admin form,
the engine, the diagram and the simulator read the graph the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from campaigns.journeys.models import EntryRule, StepKind, TriggerKind, UpdateAction

# Steps where time passes; a loop must contain one of them.
WAITING_KINDS = frozenset({StepKind.WAIT, StepKind.WAIT_UNTIL, StepKind.WAIT_EVENT})
# Steps with a yes / no (or A / B) fork: the second path is ``else_step``.
FORKING_KINDS = frozenset({StepKind.WAIT_EVENT, StepKind.BRANCH, StepKind.SPLIT})
PATH_LABELS = {StepKind.WAIT_EVENT: ("did it", "timed out"), StepKind.BRANCH: ("yes", "no"),
               StepKind.SPLIT: ("A", "B")}


@dataclass(frozen=True)
class Edge:
    label: str
    target: str | None  # a step key, or None: the person leaves the journey


def ordered(steps: Sequence[Any]) -> list[Any]:
    return sorted(steps, key=lambda s: (s.position, s.pk or 0))


def edges(step: Any, steps: Sequence[Any]) -> list[Edge]:
    """Return where a step leads: its next step (or the one below), and for forks the second path."""
    if step.kind == StepKind.EXIT:
        return []
    order = ordered(steps)
    below = None
    for index, other in enumerate(order):
        if other is step or (step.pk and other.pk == step.pk) or other.key == step.key:
            below = order[index + 1].key if index + 1 < len(order) else None
            break
    first = Edge(PATH_LABELS[step.kind][0] if step.kind in FORKING_KINDS else "", step.next_step or below)
    if step.kind not in FORKING_KINDS:
        return [first]
    return [first, Edge(PATH_LABELS[step.kind][1], step.else_step or None)]


def first_step(steps: Sequence[Any]) -> Any | None:
    order = ordered(steps)
    return order[0] if order else None


def step_problems(step: Any, keys: set[str], *, email_keys: set[str]) -> list[str]:
    """Return what is wrong with one step on its own (its fields and the keys it points to)."""
    problems = []
    kind = step.kind
    if kind == StepKind.SEND_EMAIL and not step.email_id:
        problems.append("choose the email to send.")
    if kind in (StepKind.WAIT, StepKind.WAIT_EVENT) and not step.wait_amount:
        problems.append("say how long to wait." if kind == StepKind.WAIT else "say how long to wait for the event.")
    if kind == StepKind.WAIT_UNTIL and step.until_time is None and step.until_weekday is None \
            and not step.until_date_field:
        problems.append("choose a time of day, a weekday or a date to wait for.")
    if kind == StepKind.WAIT_UNTIL and step.until_date_field and not valid_date_field(step.until_date_field):
        problems.append("the date to wait for must be “birthday” or “attribute.<key>”.")
    if kind == StepKind.WAIT_EVENT and not step.event_name.strip():
        problems.append("name the event to wait for.")
    if kind == StepKind.BRANCH:
        if not step.condition and not step.engagement_step:
            problems.append("give a condition, or an earlier email and whether it was opened or clicked.")
        if step.engagement_step and step.engagement_step not in email_keys:
            problems.append(f"“{step.engagement_step}” is not an email step of this journey.")
        if step.engagement_step and not step.engagement:
            problems.append("say whether the email must have been opened or clicked.")
    if kind == StepKind.SPLIT and not (step.split_percent and 0 < step.split_percent < 100):
        problems.append("the share taking path A must be between 1 and 99%.")
    if kind == StepKind.UPDATE_PROFILE:
        problems += _update_problems(step)
    for name, target in (("next step", step.next_step), ("“no” / B path", step.else_step)):
        if target and target not in keys:
            problems.append(f"its {name} “{target}” is not a step of this journey.")
    if step.else_step and kind not in FORKING_KINDS:
        problems.append("only waits for an event, branches and splits have a second path.")
    return problems


def _update_problems(step: Any) -> list[str]:
    action = step.update_action
    if not action:
        return ["choose what to update."]
    if action in (UpdateAction.ADD_TAG, UpdateAction.REMOVE_TAG, UpdateAction.SET_ATTRIBUTE) \
            and not step.update_key.strip():
        return ["name the tag or attribute."]
    if action in (UpdateAction.SUBSCRIBE_TOPIC, UpdateAction.UNSUBSCRIBE_TOPIC) and not step.update_topic_id:
        return ["choose the topic."]
    return []


def valid_date_field(name: str) -> bool:
    return name == "birthday" or (name.startswith("attribute.") and len(name) > len("attribute."))


def graph_problems(steps: Sequence[Any]) -> list[str]:
    """Return every problem of the graph, each naming its step: bad fields, unreachable steps, loops without waits."""
    steps = ordered(steps)
    if not steps:
        return ["Add at least one step."]
    problems = []
    keys: dict[str, Any] = {}
    for step in steps:
        if step.key in keys:
            problems.append(f"Two steps are called “{step.key}”; give each step its own key.")
        keys[step.key] = step
    email_keys = {s.key for s in steps if s.kind == StepKind.SEND_EMAIL}
    for step in steps:
        problems += [f"Step “{step.key}”: {p}" for p in step_problems(step, set(keys), email_keys=email_keys)]
    graph = {s.key: [e.target for e in edges(s, steps) if e.target in keys] for s in steps}
    reachable = _reachable(steps[0].key, graph)
    for step in steps:
        if step.key not in reachable:
            problems.append(f"Step “{step.key}” can never be reached: no step leads to it.")
    for cycle in _cycles_without_wait(graph, keys):
        problems.append(f"Steps {' → '.join(f'“{k}”' for k in cycle)} form a loop without a wait: "
                        "add a wait step to it.")
    return problems


def _reachable(start: str, graph: dict[str, list[str | None]]) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        key = stack.pop()
        if key in seen or key is None:
            continue
        seen.add(key)
        stack.extend(t for t in graph.get(key, []) if t)
    return seen


def _cycles_without_wait(graph: dict[str, list[str | None]], steps: dict[str, Any]) -> list[list[str]]:
    """Return loops made only of steps where no time passes (the engine would spin on them)."""
    instant = {k: [t for t in targets if t and steps[t].kind not in WAITING_KINDS]
               for k, targets in graph.items() if steps[k].kind not in WAITING_KINDS}
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(key: str, trail: list[str]) -> None:
        state[key] = 1
        for target in instant.get(key, []):
            if state.get(target) == 1:
                loop = trail[trail.index(target):] + [target] if target in trail else [key, target]
                if not any(set(loop) == set(other) for other in found):
                    found.append(loop)
            elif target not in state:
                visit(target, [*trail, target])
        state[key] = 2

    for key in instant:
        if key not in state:
            visit(key, [key])
    return found


def trigger_problems(journey: Any) -> list[str]:
    """Return what is wrong with a journey's trigger, entry rule and goal."""
    problems = []
    trigger = journey.trigger
    if trigger == TriggerKind.EVENT and not journey.trigger_event.strip():
        problems.append("Trigger: name the event that starts the journey (e.g. Checkout Started).")
    if trigger == TriggerKind.SEGMENT_ENTRY and not journey.trigger_segment_id:
        problems.append("Trigger: choose the segment people enter.")
    if trigger == TriggerKind.DATE:
        if not valid_date_field(journey.trigger_date_field):
            problems.append("Trigger: the date must be “birthday” or “attribute.<key>” of a date attribute.")
        if journey.trigger_time is None:
            problems.append("Trigger: choose the local time of day people enter (e.g. 09:00).")
    if trigger == TriggerKind.INACTIVITY and not journey.inactivity_days:
        problems.append("Trigger: say after how many inactive days people enter.")
    if journey.entry_rule == EntryRule.ONCE_PER_PERIOD and not journey.reentry_days:
        problems.append("Entry: say how many days must pass before someone may enter again.")
    for name, value in (("Trigger filters", journey.trigger_filters), ("Goal filters", journey.exit_filters)):
        if value and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
            problems.append(f"{name}: write them as {{\"property\": \"value\"}}.")
    return problems
