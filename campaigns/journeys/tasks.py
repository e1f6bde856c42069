"""Celery tasks for journeys: thin wrappers that call one action each; safe to run twice or at once."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from campaigns.journeys import actions


@shared_task(ignore_result=True)
def run_journeys_task() -> None:
    """Each scheduler tick: enroll for segment, date and inactivity triggers, then start advancing tasks."""
    actions.run_triggers()
    for _ in range(max(1, settings.JOURNEY_PARALLEL)):
        # Ticks come every 10 seconds: one that waited this long behind busy workers is no longer needed.
        advance_journeys_task.apply_async(expires=60)


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def advance_journeys_task() -> None:
    # Batches are claimed with SKIP LOCKED: several of these running at once share the work.
    actions.advance_due()


@shared_task(ignore_result=True)
def handle_journey_events_task(events: list[dict[str, Any]]) -> None:
    actions.handle_events(events)


@shared_task(ignore_result=True)
def enroll_subscribed_task(subscriber_id: int) -> None:
    actions.on_subscribed(subscriber_id)
