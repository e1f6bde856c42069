"""Journeys on the real stack: an event through the tracking API starts a journey in a real Celery worker on Redis,
and two scheduler ticks at once on PostgreSQL share the due people without sending anyone twice."""

import base64
import datetime as dt
import json
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.content.models import Campaign, CampaignKind, Variant
from campaigns.journeys import actions, receivers
from campaigns.journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStep,
    JourneyStepStats,
    StepKind,
    TriggerKind,
)
from campaigns.models import Delivery, DeliveryStatus
from preferences.models import Topic, TopicSubscription
from subscribers import actions as subscriber_actions
from subscribers.models import ConsentRecord, Subscriber
from tests.mock_esp import MockESP, anymail_settings

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The links are in the content: transactional tests flush the starter layout.
FOOTER = '<a href="{{ unsubscribe_url }}">Unsubscribe</a><a href="{{ preferences_url }}">Preferences</a>'


@pytest.fixture
def sending(settings):
    settings.QUIET_HOURS = ""
    settings.OWN_TRACKING = False
    settings.MARKETING_WEEKLY_CAP = 0
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    return settings


def members(topic: Topic, count: int) -> list[Subscriber]:
    people = Subscriber.objects.bulk_create([
        Subscriber(email=f"shopper{i}@example.com", email_key=f"shopper{i}@example.com", first_name=f"Shopper{i}",
                   external_id=f"u-{i}", status="subscribed", timezone="UTC") for i in range(count)])
    ConsentRecord.objects.bulk_create([
        ConsentRecord(subscriber=p, purpose="email_marketing", granted=True, method="form",
                      occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) for p in people])
    TopicSubscription.objects.bulk_create([TopicSubscription(subscriber=p, topic=topic) for p in people])
    return people


def cart_journey(topic: Topic) -> Journey:
    content = Campaign.objects.create(name="Your cart", kind=CampaignKind.JOURNEY, from_email="shop@example.com")
    Variant.objects.create(campaign=content, label="A", subject='{{ first_name|default:"Hi" }}, your cart is waiting',
                           html='<p>Hi {{ first_name|default:"there" }}, you left '
                                '{% for p in trigger.properties.products %}{{ p.name }} {% endfor %}behind.</p>'
                                + FOOTER)
    journey = Journey(name="Cart abandonment", topic=topic, trigger=TriggerKind.EVENT,
                      trigger_event="Checkout Started")
    actions.save_journey(journey, [
        JourneyStep(position=0, key="reminder", kind=StepKind.SEND_EMAIL, email=content),
        JourneyStep(position=1, key="day", kind=StepKind.WAIT, wait_amount=1, wait_unit="days"),
    ])
    actions.activate_journey(journey)
    journey.refresh_from_db()
    return journey


def test_tracked_event_enrolls_and_sends_through_a_real_worker(worker, sending, client):
    from subscribers import views

    topic = Topic.objects.create(name="Offers", slug="offers")
    shopper, bystander = members(topic, 2)
    receivers.forget_event_names()
    journey = cart_journey(topic)
    views._key_cache.clear()
    _, key = subscriber_actions.create_write_key(name="Shop backend")
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    with MockESP() as esp:
        sending.ANYMAIL = anymail_settings(esp.url)
        response = client.post("/v1/track", json.dumps({
            "userId": shopper.external_id, "event": "Checkout Started", "messageId": "checkout-1",
            "properties": {"products": [{"name": "Trail boots"}]}}),
            content_type="application/json", HTTP_AUTHORIZATION=auth)
        assert response.status_code == 200, response.content
        deadline = time.monotonic() + 30
        delivery = None
        while time.monotonic() < deadline:
            delivery = Delivery.objects.filter(subscriber=shopper, status=DeliveryStatus.SENT).first()
            if delivery is not None:
                break
            time.sleep(0.2)
        assert delivery is not None, list(Enrollment.objects.values("subscriber_id", "state", "step_key", "note"))
        assert delivery.message_key == actions.message_key(journey.pk, "reminder", 1)
        assert delivery.esp_name == "postmark" and delivery.esp_message_id
        assert esp.accepted == Counter({str(delivery.pk): 1})
        # The outcome is recorded in the same transaction that moves the person on.
        enrollment = Enrollment.objects.get(journey=journey, subscriber=shopper)
        assert (enrollment.state, enrollment.step_key, enrollment.entry) == (EnrollmentState.ACTIVE, "day", 1)
        assert enrollment.trigger_data["properties"] == {"products": [{"name": "Trail boots"}]}
        assert [p["step"] for p in enrollment.path] == ["reminder"]
    assert not Enrollment.objects.filter(subscriber=bystander).exists()
    assert not Delivery.objects.filter(subscriber=bystander).exists()


def test_two_scheduler_ticks_at_once_share_the_due_people_and_send_each_once(real_stack, sending):
    sending.JOURNEY_BATCH_SIZE = 20
    sending.SEND_CONCURRENCY = 8
    # A transient ESP error (e.g. a kept-alive connection the ESP closed) is retried within the same tick.
    sending.SEND_RETRY_SECONDS = 0
    topic = Topic.objects.create(name="Offers", slug="offers")
    people = members(topic, 300)
    journey = cart_journey(topic)
    now = timezone.now()
    # Everyone is due at the send step (as after a wait that ended for all of them in the same minute).
    Enrollment.objects.bulk_create([
        Enrollment(journey=journey, subscriber=p, step_key="reminder", next_run_at=now - dt.timedelta(seconds=i % 60),
                   due_at=now - dt.timedelta(seconds=i % 60), entered_at=now - dt.timedelta(hours=1),
                   trigger_data={"event": "Checkout Started", "properties": {"products": [{"name": "Boots"}]}})
        for i, p in enumerate(people)])
    start = threading.Barrier(2)
    results: dict[str, actions.AdvanceResult] = {}
    errors: list[BaseException] = []

    def tick(name: str) -> None:
        try:
            start.wait(10)
            results[name] = actions.advance_due(seconds=120)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    with MockESP(latency=0.02) as esp:
        sending.ANYMAIL = anymail_settings(esp.url)
        threads = [threading.Thread(target=tick, args=(name,)) for name in ("tick-1", "tick-2")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert not any(t.is_alive() for t in threads), "a tick did not finish"
        assert not errors, errors
        assert esp.duplicates == 0 and len(esp.accepted) == 300, (
            results, list(Enrollment.objects.exclude(step_key="day").values("state", "step_key", "note")))

    one, two = results["tick-1"], results["tick-2"]
    assert one.claimed > 0 and two.claimed > 0, (one.claimed, two.claimed)
    assert one.claimed + two.claimed >= 300  # more only for a retried send
    assert one.sent + two.sent == 300 and one.failed + two.failed == 0
    per_person = Counter(Delivery.objects.filter(message_key=actions.message_key(journey.pk, "reminder", 1))
                         .values_list("subscriber_id", flat=True))
    assert per_person == Counter({p.pk: 1 for p in people})
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 300
    assert {int(k) for k in esp.accepted} == set(Delivery.objects.values_list("pk", flat=True))
    rows = list(Enrollment.objects.filter(journey=journey).values_list("state", "step_key", "path"))
    assert len(rows) == 300
    assert all(state == EnrollmentState.ACTIVE and step == "day" for state, step, _ in rows)
    assert all([p["step"] for p in path] == ["reminder"] for _, _, path in rows)
    stats = JourneyStepStats.objects.get(journey=journey, step_key="reminder")
    assert (stats.passed, stats.sent, stats.skipped) == (300, 300, 0)
