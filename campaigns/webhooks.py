"""Mount Anymail's tracking webhooks at /anymail/<esp>/tracking/, each post recorded as one batch.

Anymail authenticates every post (WEBHOOK_SECRET basic auth for all ESPs;
Mailgun's signature too), parses it and sends ``anymail.signals.tracking``
once per event. Our receiver (campaigns.receivers) collects those events
while the view runs, and the whole post is recorded by one
``record_tracking_events`` call after the view succeeded: one transaction,
a fixed number of queries, instead of one transaction per event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from functools import wraps
from typing import Any

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailImproperlyInstalled
from anymail.utils import get_anymail_setting
from anymail.webhooks import amazon_ses
from anymail.webhooks.base import AnymailBaseWebhookView
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.views.decorators.csrf import csrf_exempt

from campaigns.tracking import TrackingEvent

logger = logging.getLogger(__name__)

_batch: ContextVar[list[TrackingEvent] | None] = ContextVar("campaigns_tracking_batch", default=None)


def add_to_batch(event: TrackingEvent) -> bool:
    """Queue the event on the running webhook post's batch; False when no post is collecting."""
    batch = _batch.get()
    if batch is None:
        return False
    batch.append(event)
    return True


def batched(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap an Anymail webhook view so the events of one post are recorded together after it succeeds."""

    @wraps(view)
    def record_as_batch(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        from campaigns.actions import record_tracking_events

        token = _batch.set([])
        try:
            response = view(request, *args, **kwargs)
            events = _batch.get() or []
        finally:
            _batch.reset(token)
        # An error here becomes a 500 and the ESP retries the post; the
        # transaction rolled back and retried events are deduplicated.
        if events and response.status_code < 400:
            record_tracking_events(events)
        return response

    return csrf_exempt(record_as_batch)


class AmazonSESTrackingWebhookView(amazon_ses.AmazonSESTrackingWebhookView):
    """Accept Amazon SES events without boto3, which Anymail needs only to confirm SNS subscriptions.

    Anymail 15.2 loads boto3 settings whenever the view is built, so without
    the optional ``boto3`` package every SES post failed. Here they are loaded
    only for a SubscriptionConfirmation; without boto3 that is logged with the
    token for confirming the subscription by hand in the SNS console.
    Anymail does not verify SNS message signatures: WEBHOOK_SECRET basic auth
    (over HTTPS) is what authenticates these posts.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.auto_confirm_enabled = get_anymail_setting(
            "auto_confirm_sns_subscriptions", esp_name=self.esp_name, kwargs=kwargs, default=True
        )
        self._boto3_kwargs = {name: kwargs.pop(name) for name in ("session_params", "client_params") if name in kwargs}
        AnymailBaseWebhookView.__init__(self, **kwargs)

    def auto_confirm_sns_subscription(self, sns_message: dict[str, Any]) -> None:
        if self.auto_confirm_enabled and self.basic_auth:
            try:
                self.session_params, self.client_params = amazon_ses._get_anymail_boto3_params(
                    kwargs=dict(self._boto3_kwargs)
                )
            except AnymailImproperlyInstalled:
                logger.warning(
                    "Amazon SNS subscription to %s not confirmed: boto3 is not installed. "
                    "Confirm it in the SNS console with token %s.",
                    sns_message.get("TopicArn"), sns_message.get("Token"),
                )
                return
        super().auto_confirm_sns_subscription(sns_message)


def _tracking_patterns() -> list[URLPattern]:
    patterns = []
    for pattern in anymail_urls.urlpatterns:
        name = pattern.name or ""
        if not (name.endswith("_tracking_webhook") or name == "mandrill_webhook"):
            continue
        view = pattern.callback
        if name == "amazon_ses_tracking_webhook":
            view = AmazonSESTrackingWebhookView.as_view()
        patterns.append(URLPattern(pattern.pattern, batched(view), pattern.default_args, name))
    return patterns


app_name = "anymail"
urlpatterns = _tracking_patterns()
