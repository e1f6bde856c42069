"""The sending policy gate: one test per reason, and deferrals that never drop a message."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.models import Delivery
from campaigns.sending.policy import DEFER, SEND, SKIP, Decision, decide, end_of_quiet_hours
from preferences.models import SubscriberPreferences, TopicSubscription
from subscribers.models import ConsentRecord, SuppressedAddress, email_hash

NOON = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def person(make_subscriber, topic):
    def make(**overrides):
        consent = overrides.pop("consent", True)
        in_topic = overrides.pop("in_topic", True)
        subscriber = make_subscriber(timezone=overrides.pop("timezone", "Europe/Riga"), **overrides)
        if consent is not None:
            ConsentRecord.objects.create(subscriber=subscriber, purpose="email_marketing", granted=consent,
                                         method="form", occurred_at=NOON - dt.timedelta(days=30))
        if in_topic is not None:
            TopicSubscription.objects.create(subscriber=subscriber, topic=topic, subscribed=in_topic)
        return subscriber

    return make


def one(subscriber, topic, now=NOON) -> Decision:
    return decide([subscriber.pk], topic_id=topic.pk, now=now)[subscriber.pk]


def sent(subscriber, days_ago: float, key: str = "campaign:9:variant:1"):
    Delivery.objects.create(subscriber=subscriber, message_key=f"{key}:{days_ago}", status="sent",
                            sent_at=NOON - dt.timedelta(days=days_ago))


def test_a_consenting_subscriber_in_the_topic_gets_it(person, topic):
    assert one(person(), topic) == Decision(SEND)


@pytest.mark.parametrize("status", ["pending", "contact", "unsubscribed", "bounced", "complained", "erased"])
def test_status_skips(person, topic, status):
    decision = one(person(status=status), topic)
    assert (decision.action, decision.reason) == (SKIP, status)
    assert decision.explanation.startswith("skipped: ")


def test_suppressed_address_skips(person, topic):
    subscriber = person()
    SuppressedAddress.objects.create(email_hash=email_hash(subscriber.email))
    assert one(subscriber, topic) == Decision(SKIP, "suppressed")


def test_withdrawn_or_missing_consent_skips(person, topic):
    withdrawn = person()
    ConsentRecord.objects.create(subscriber=withdrawn, purpose="email_marketing", granted=False, method="form",
                                 occurred_at=NOON - dt.timedelta(days=1))
    assert one(withdrawn, topic) == Decision(SKIP, "no_consent")
    assert one(person(consent=None), topic) == Decision(SKIP, "no_consent")


def test_not_in_topic_or_opted_out_of_it_skips(person, topic):
    assert one(person(in_topic=False), topic) == Decision(SKIP, "not_in_topic")
    assert one(person(in_topic=None), topic) == Decision(SKIP, "not_in_topic")


def test_pause_defers_until_it_ends(person, topic):
    subscriber = person()
    SubscriberPreferences.objects.create(subscriber=subscriber, token="t" * 32,
                                         paused_until=NOON + dt.timedelta(days=30))
    assert one(subscriber, topic) == Decision(DEFER, "paused", NOON + dt.timedelta(days=30))


def test_weekly_frequency_defers_until_a_week_after_the_last_email(person, topic):
    subscriber = person()
    SubscriberPreferences.objects.create(subscriber=subscriber, token="u" * 32, frequency="weekly")
    sent(subscriber, 2)
    assert one(subscriber, topic) == Decision(DEFER, "frequency", NOON + dt.timedelta(days=5))
    Delivery.objects.all().delete()
    sent(subscriber, 8)
    assert one(subscriber, topic).action == SEND


def test_global_weekly_cap_defers_until_the_oldest_is_a_week_old(person, topic, settings):
    settings.MARKETING_WEEKLY_CAP = 3
    subscriber = person()
    for days in (6, 3, 1):
        sent(subscriber, days)
    sent(subscriber, 2, key="transactional:receipt")  # not marketing: never counted
    assert one(subscriber, topic) == Decision(DEFER, "weekly_cap", NOON + dt.timedelta(days=1))
    settings.MARKETING_WEEKLY_CAP = 4
    assert one(subscriber, topic).action == SEND


def test_quiet_hours_in_local_time_defer_to_the_morning(person, topic, settings):
    settings.QUIET_HOURS = "21-8"
    riga = person(timezone="Europe/Riga")  # UTC+2 in December
    night_in_riga = dt.datetime(2026, 12, 1, 20, 30, tzinfo=dt.UTC)  # 22:30 in Riga
    decision = one(riga, topic, now=night_in_riga)
    assert decision == Decision(DEFER, "quiet_hours", dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC))
    assert "deferred until 2026-12-02 06:00 UTC" in decision.explanation
    new_york = person(timezone="America/New_York")  # 15:30 there
    assert one(new_york, topic, now=night_in_riga).action == SEND
    settings.QUIET_HOURS = ""
    assert one(riga, topic, now=night_in_riga).action == SEND


def test_quiet_hours_edges(settings):
    settings.QUIET_HOURS = "21-8"
    assert end_of_quiet_hours(dt.datetime(2026, 12, 1, 7, 59, tzinfo=dt.UTC), "UTC") == dt.datetime(
        2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    assert end_of_quiet_hours(dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC), "UTC") is None
    assert end_of_quiet_hours(dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC), "UTC") == dt.datetime(
        2026, 12, 2, 8, 0, tzinfo=dt.UTC)
    assert end_of_quiet_hours(dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC), "Not/AZone") is not None


def test_a_whole_chunk_takes_a_fixed_number_of_queries(person, topic, django_assert_max_num_queries):
    people = [person() for _ in range(30)]
    with django_assert_max_num_queries(8):
        decisions = decide([p.pk for p in people], topic_id=topic.pk, now=NOON)
    assert {d.action for d in decisions.values()} == {SEND}
