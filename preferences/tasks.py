"""Run preferences work in the background: thin wrappers that take ids and call one action."""

from __future__ import annotations

import smtplib

from celery import shared_task

from preferences import actions

# Network trouble is worth retrying; a bad message or address is not.
TRANSIENT_ERRORS = (ConnectionError, TimeoutError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)


@shared_task(bind=True, autoretry_for=TRANSIENT_ERRORS, retry_backoff=30, retry_backoff_max=900, max_retries=6,
             acks_late=True)
def send_signup_confirmation_task(self, signup_id: int) -> bool:  # noqa: ANN001 - Celery's bound task
    """Email a signup's confirmation link once (a retry after it went out sends nothing)."""
    return actions.send_signup_confirmation(signup_id=signup_id)


@shared_task
def expire_signups_task() -> int:
    """Delete signups whose confirmation link has expired (a Beat job)."""
    return actions.expire_signups()
