"""Celery tasks for sending: thin wrappers that take ids and call one action each."""

from celery import shared_task

from campaigns.sending import actions


@shared_task(ignore_result=True)
def dispatch_campaigns_task() -> None:
    actions.dispatch_campaigns()


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def send_chunk_task(campaign_id: int, first_id: int, last_id: int, *_: int) -> None:
    # Safe to run twice: only recipients still waiting are claimed (SKIP LOCKED), deliveries are unique.
    # (A fourth argument, from tasks queued by earlier versions, is ignored.)
    actions.send_chunk(campaign_id, first_id, last_id)


@shared_task(ignore_result=True)
def reconcile_sends_task() -> None:
    actions.reconcile_sends()
