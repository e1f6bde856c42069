"""Receive Anymail's tracking signal: normalize each ESP event and hand it to the tracking action."""

from __future__ import annotations

import logging
from typing import Any

from campaigns import webhooks
from campaigns.tracking import from_anymail

logger = logging.getLogger(__name__)


def record_anymail_tracking(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """Queue the event on the webhook post's batch, or record it at once when no batch is collecting.

    An event that cannot be normalized is logged and skipped, so one odd
    event never makes the ESP retry (and re-deliver) the rest of its post.
    """
    from campaigns.actions import record_tracking_events

    try:
        item = from_anymail(event, esp_name)
    except Exception:
        logger.exception("Could not read a %s tracking event; skipped", esp_name)
        return
    if not webhooks.add_to_batch(item):
        record_tracking_events([item])
