"""Factories for deliveries, a frozen clock, and webhook settings shared by the campaigns tests."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from campaigns import actions
from campaigns.models import Delivery

WEBHOOK_SECRET = "esp-user:s3cret-pass"
MAILGUN_SIGNING_KEY = "mailgun-webhook-signing-key"
SENT_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
NOON = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
# The frozen time; tests and their helpers move it by setting CLOCK["now"].
CLOCK = {"now": NOON}


@pytest.fixture
def clock(monkeypatch):
    """Freeze django.utils.timezone.now (what tasks and actions read) at CLOCK["now"], noon on 1 December first."""
    CLOCK["now"] = NOON
    monkeypatch.setattr("django.utils.timezone.now", lambda: CLOCK["now"])
    return CLOCK


@pytest.fixture
def audience_member(make_subscriber, topic):
    """Make a subscribed person (Riga time) with marketing consent and the topic (``in_topic=False``: opted out)."""
    from preferences.models import TopicSubscription
    from subscribers.models import ConsentRecord

    def make(**overrides):
        in_topic = overrides.pop("in_topic", True)
        person = make_subscriber(timezone=overrides.pop("timezone", "Europe/Riga"), **overrides)
        ConsentRecord.objects.create(subscriber=person, purpose="email_marketing", granted=True, method="form",
                                     occurred_at=NOON - dt.timedelta(days=10), notice_version="v1")
        TopicSubscription.objects.create(subscriber=person, topic=topic, subscribed=in_topic)
        return person

    return make


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
