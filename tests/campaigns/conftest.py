"""Factories for deliveries, and webhook settings shared by the campaigns tests."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from campaigns import actions
from campaigns.models import Delivery

WEBHOOK_SECRET = "esp-user:s3cret-pass"
MAILGUN_SIGNING_KEY = "mailgun-webhook-signing-key"
SENT_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def basic_auth(credentials: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.fixture
def webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}
    return settings


@pytest.fixture
def make_delivery(make_subscriber):
    counter = iter(range(1, 100000))

    def make(subscriber=None, *, message_key: str | None = None, esp_name: str = "SendGrid",
             esp_message_id: str | None = None, sent_at: dt.datetime | None = SENT_AT, why=None) -> Delivery:
        n = next(counter)
        subscriber = subscriber or make_subscriber()
        delivery = actions.create_delivery(subscriber_id=subscriber.pk, message_key=message_key or "campaign:1",
                                           why=why)
        if sent_at is not None:
            delivery = actions.record_sent(delivery_id=delivery.pk, esp_name=esp_name,
                                           esp_message_id=f"msg-{n}" if esp_message_id is None else esp_message_id,
                                           sent_at=sent_at)
        return delivery

    return make
