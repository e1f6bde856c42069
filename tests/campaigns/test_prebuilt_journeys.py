"""The prebuilt journeys: what the migration creates, that re-running it keeps edits, and a person through each."""

from __future__ import annotations

import datetime as dt
import importlib
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from campaigns import actions as delivery_actions
from campaigns.content.actions import check_campaign
from campaigns.content.models import Campaign, CampaignKind, Variant
from campaigns.journeys import actions, graph, receivers
from campaigns.journeys.models import Enrollment, EnrollmentState, EntryRule, Journey, JourneyStatus, JourneyStep
from campaigns.journeys.prebuilt import EMAILS, JOURNEYS, create_prebuilt_journeys
from campaigns.models import Delivery
from campaigns.segments import actions as segment_actions
from campaigns.segments.models import Segment
from campaigns.tracking import EventKind, TrackingEvent
from preferences.models import TopicSubscription
from subscribers.actions import ingest_tracking_calls
from subscribers.models import ConsentRecord, Subscriber
from tests.campaigns.conftest import CLOCK as _CLOCK

NOON = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)  # a Tuesday; 14:00 in Riga
LONG_AGO = NOON - dt.timedelta(days=400)
KEYS = {"welcome", "abandoned_cart", "post_purchase", "reengagement_sunset", "birthday", "win_back"}
NEEDS_TOPIC = "Choose the topic the journey's emails belong to (what people subscribed to)."
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0"


@pytest.fixture(autouse=True)
def sending(settings):
    settings.QUIET_HOURS = "21-8"
    settings.MARKETING_WEEKLY_CAP = 5
    settings.OWN_TRACKING = False
    settings.BRAND_NAME = "Northwind"
    settings.BRAND_WEBSITE_URL = "https://shop.example.com"
    cache.clear()  # bestsellers are cached for ten minutes



@pytest.fixture
def member(make_subscriber, topic):
    """Make a subscribed person with email-marketing consent and the topic, subscribed long ago."""
    counter = iter(range(1, 1000))

    def make(**overrides) -> Subscriber:
        n = next(counter)
        fields = {"timezone": "Europe/Riga", "created_at": LONG_AGO, "confirmed_at": LONG_AGO,
                  "external_id": f"shopper-{n}", **overrides}
        person = make_subscriber(**fields)
        ConsentRecord.objects.create(subscriber=person, purpose="email_marketing", granted=True, method="form",
                                     occurred_at=LONG_AGO, notice_version="v1")
        TopicSubscription.objects.create(subscriber=person, topic=topic, subscribed=True)
        return person

    return make


def turn_on(key: str, topic) -> Journey:
    """Pick the topic and turn a prebuilt journey on, as a manager does in the admin."""
    journey = Journey.objects.get(prebuilt_key=key)
    journey.topic = topic
    actions.save_journey(journey, list(journey.steps.all()))
    actions.activate_journey(journey)
    receivers.forget_event_names()
    journey.refresh_from_db()
    return journey


def tick(at: dt.datetime, callbacks) -> actions.AdvanceResult:
    _CLOCK["now"] = at
    with callbacks(execute=True):
        return actions.advance_due(now=at, seconds=30)


def track(callbacks, person: Subscriber, event: str, properties: dict, at: dt.datetime) -> None:
    """Send one event through the tracking API's action, as the shop's backend would."""
    _CLOCK["now"] = at
    with callbacks(execute=True):
        result = ingest_tracking_calls([{"type": "track", "userId": person.external_id, "event": event,
                                         "properties": properties, "timestamp": at.isoformat(),
                                         "messageId": f"{event}-{person.pk}-{at.timestamp()}"}], source=None)
    assert result.accepted == 1, result.errors


def sent(journey: Journey, person: Subscriber) -> list[tuple[str, dt.datetime]]:
    """Return (step, sent at) of the journey's deliveries to a person, checking there is one per message."""
    rows = list(Delivery.objects.filter(subscriber=person, message_key__startswith=f"journey:{journey.pk}:")
                .order_by("sent_at", "pk").values_list("message_key", "status", "sent_at"))
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys)), keys
    assert all(status in actions.REACHED and at is not None for _, status, at in rows), rows
    return [(key.split(":")[3], at) for key, _, at in rows]


def mail_to(person: Subscriber) -> list:
    return [m for m in mail.outbox if m.to == [person.email]]


def html(message) -> str:
    return message.alternatives[0][0]


def enrollment(journey: Journey, person: Subscriber) -> Enrollment:
    return Enrollment.objects.filter(journey=journey, subscriber=person).order_by("-entry").first()


# --- What the migration made ----------------------------------------------------------------------


def test_the_migration_creates_six_draft_journeys_that_need_only_a_topic(db):
    journeys = {j.prebuilt_key: j for j in Journey.objects.filter(prebuilt_key__isnull=False)}
    assert set(journeys) == KEYS
    for journey in journeys.values():
        assert journey.status == JourneyStatus.DRAFT and journey.topic_id is None
        assert "Before turning it on" in journey.description
        steps = list(journey.steps.all())
        assert graph.graph_problems(steps) == []
        assert graph.trigger_problems(journey) == []
        assert actions.journey_problems(journey, activating=True) == [NEEDS_TOPIC], journey.name
        for step in steps:
            if step.email_id:
                assert step.email.kind == CampaignKind.JOURNEY
                assert [v.label for v in step.email.variants.all()] == ["A"]
                errors = [p.message for p in check_campaign(step.email) if p.level == "error"]
                assert errors == [], (step.email.name, errors)
    win_back = journeys["win_back"]
    assert win_back.trigger_segment.system_key == "lapsed_customers"
    assert (win_back.exit_event, win_back.entry_rule, win_back.reentry_days) == ("Order Completed",
                                                                                 EntryRule.ONCE_PER_PERIOD, 90)
    assert journeys["birthday"].trigger_time == dt.time(9, 0)
    assert Campaign.objects.filter(kind=CampaignKind.JOURNEY).count() == len(EMAILS)


def test_running_it_again_creates_nothing_and_keeps_a_marketers_edits(db):
    models = (Journey, JourneyStep, Campaign, Variant, Segment)
    welcome = Journey.objects.get(prebuilt_key="welcome")
    Journey.objects.filter(pk=welcome.pk).update(description="Our own words", group="onboarding")
    JourneyStep.objects.filter(journey=welcome, key="wait-2-days").update(wait_amount=4)
    Variant.objects.filter(campaign__name=EMAILS["welcome-1"]["name"]).update(subject="Hello from us")
    counts = [m.objects.count() for m in models]

    assert create_prebuilt_journeys(*models) == 0
    migration = importlib.import_module("campaigns.migrations.0012_prebuilt_journeys")
    state = MigrationLoader(connection).project_state(("campaigns", "0012_prebuilt_journeys"))
    migration.create(state.apps, None)  # the migration itself, with its historical models
    assert [m.objects.count() for m in models] == counts
    welcome.refresh_from_db()
    assert (welcome.description, welcome.group) == ("Our own words", "onboarding")
    assert JourneyStep.objects.get(journey=welcome, key="wait-2-days").wait_amount == 4
    assert Variant.objects.get(campaign__name=EMAILS["welcome-1"]["name"]).subject == "Hello from us"

    # A deleted prebuilt journey comes back, reusing its emails rather than copying them.
    Journey.objects.get(prebuilt_key="birthday").delete()
    assert create_prebuilt_journeys(*models) == 1
    assert Campaign.objects.filter(name=EMAILS["birthday"]["name"]).count() == 1
    # A journey of the marketer's own with a prebuilt name is left alone.
    Journey.objects.get(prebuilt_key="birthday").delete()
    Journey.objects.create(name="Birthday", description="Mine")
    assert create_prebuilt_journeys(*models) == 0
    assert Journey.objects.get(name="Birthday").prebuilt_key is None


def test_every_prebuilt_spec_names_existing_emails():
    used = {step["email"] for spec in JOURNEYS for step in spec["steps"] if "email" in step}
    assert used == set(EMAILS)
    assert len({e["name"] for e in EMAILS.values()}) == len(EMAILS)


# --- A person through each journey ----------------------------------------------------------------


def test_welcome_series_sends_three_emails_at_once_after_two_days_and_after_five(
        topic, member, clock, django_capture_on_commit_callbacks):
    journey = turn_on("welcome", topic)
    person = member(first_name="Ilze")
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.on_subscribed(person.pk) == 1  # what confirming a signup calls
    assert [m.subject for m in mail_to(person)] == ["Welcome to Northwind"]
    assert "Hi Ilze," in html(mail.outbox[0]) and "https://shop.example.com" in html(mail.outbox[0])
    tick(NOON + dt.timedelta(days=2) - dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert len(mail_to(person)) == 1
    tick(NOON + dt.timedelta(days=2), django_capture_on_commit_callbacks)
    tick(NOON + dt.timedelta(days=5) - dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert len(mail_to(person)) == 2
    tick(NOON + dt.timedelta(days=5), django_capture_on_commit_callbacks)
    tick(NOON + dt.timedelta(days=9), django_capture_on_commit_callbacks)  # nothing is sent twice
    assert [m.subject for m in mail_to(person)] == ["Welcome to Northwind", "A few things worth knowing",
                                                   "Popular with our customers right now"]
    assert sent(journey, person) == [("welcome", NOON), ("tips", NOON + dt.timedelta(days=2)),
                                     ("popular", NOON + dt.timedelta(days=5))]
    assert enrollment(journey, person).state == EnrollmentState.COMPLETED
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.on_subscribed(person.pk) == 0  # once ever


def test_welcome_at_night_waits_for_eight_in_the_morning_local_time(topic, member, clock,
                                                                    django_capture_on_commit_callbacks):
    journey = turn_on("welcome", topic)
    night = dt.datetime(2026, 12, 2, 3, 30, tzinfo=dt.UTC)  # 22:30 in New York
    eight = dt.datetime(2026, 12, 2, 13, 0, tzinfo=dt.UTC)  # 08:00 in New York
    person = member(timezone="America/New_York")
    _CLOCK["now"] = night
    with django_capture_on_commit_callbacks(execute=True):
        actions.on_subscribed(person.pk)
    assert mail.outbox == []
    waiting = enrollment(journey, person)
    assert waiting.step_key == "welcome" and waiting.next_run_at == eight and "night" in waiting.note
    tick(eight - dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert mail.outbox == []
    tick(eight, django_capture_on_commit_callbacks)
    tick(eight + dt.timedelta(days=2), django_capture_on_commit_callbacks)
    tick(eight + dt.timedelta(days=5), django_capture_on_commit_callbacks)
    assert sent(journey, person) == [("welcome", eight), ("tips", eight + dt.timedelta(days=2)),
                                     ("popular", eight + dt.timedelta(days=5))]
    assert all(at.astimezone(ZoneInfo("America/New_York")).hour == 8 for _, at in sent(journey, person))


CART = {"currency": "EUR", "products": [{"product_id": "boots-1", "name": "Trail boots", "price": 89.5, "quantity": 1},
                                        {"product_id": "socks-2", "name": "Wool socks", "price": 12, "quantity": 2}]}


def test_abandoned_cart_reminds_after_an_hour_and_offers_a_code_to_those_who_did_not_buy(
        topic, member, clock, django_capture_on_commit_callbacks):
    journey = turn_on("abandoned_cart", topic)
    buyer, browser = member(first_name="Buyer"), member(first_name="Browser")
    for person in (buyer, browser):
        track(django_capture_on_commit_callbacks, person, "Checkout Started", CART, NOON)
    assert Enrollment.objects.filter(journey=journey, state=EnrollmentState.ACTIVE).count() == 2
    tick(NOON + dt.timedelta(minutes=59), django_capture_on_commit_callbacks)
    assert mail.outbox == []
    tick(NOON + dt.timedelta(hours=1), django_capture_on_commit_callbacks)
    assert [m.subject for m in mail_to(browser)] == ["You left something in your cart"]
    reminder = html(mail_to(browser)[0])
    assert "Trail boots" in reminder and "Wool socks × 2" in reminder and "Hi Browser," in reminder
    assert "89.50" in reminder

    # The buyer completes the order: they leave at once and get no offer.
    track(django_capture_on_commit_callbacks, buyer, "Order Completed",
          {"order_id": "A-1001", "total": 113.5, **CART}, NOON + dt.timedelta(hours=3))
    assert enrollment(journey, buyer).state == EnrollmentState.EXITED
    assert "goal" in enrollment(journey, buyer).note
    tick(NOON + dt.timedelta(hours=24) - dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert len(mail_to(browser)) == 1
    tick(NOON + dt.timedelta(hours=24), django_capture_on_commit_callbacks)
    assert [m.subject for m in mail_to(browser)] == ["You left something in your cart",
                                                    "10% off the items in your cart"]
    offer = html(mail_to(browser)[1])
    assert "CART10" in offer and "Trail boots" in offer and "Before turning" not in offer  # the note is not sent
    assert [m.subject for m in mail_to(buyer)] == ["You left something in your cart"]
    assert sent(journey, browser) == [("reminder", NOON + dt.timedelta(hours=1)),
                                      ("offer", NOON + dt.timedelta(hours=24))]
    assert sent(journey, buyer) == [("reminder", NOON + dt.timedelta(hours=1))]
    assert enrollment(journey, browser).state == EnrollmentState.COMPLETED

    # Another checkout the same day starts nothing; the next day it starts a new trip.
    track(django_capture_on_commit_callbacks, buyer, "Checkout Started", CART, NOON + dt.timedelta(hours=5))
    assert Enrollment.objects.filter(journey=journey, subscriber=buyer).count() == 1
    track(django_capture_on_commit_callbacks, buyer, "Checkout Started", CART, NOON + dt.timedelta(days=1, hours=1))
    assert enrollment(journey, buyer).entry == 2


def test_post_purchase_thanks_with_the_order_total_then_recommends_a_week_later(
        topic, member, clock, django_capture_on_commit_callbacks):
    journey = turn_on("post_purchase", topic)
    regular, buyer = member(), member(first_name="Anna")
    track(django_capture_on_commit_callbacks, regular, "Order Completed",  # before the journey cared: a bestseller
          {"order_id": "A-1", "total": 60, "currency": "EUR", "products": [
              {"product_id": "jacket-1", "name": "Rain jacket", "category": "Outdoor", "price": 60, "quantity": 3}]},
          NOON - dt.timedelta(days=3))
    mail.outbox.clear()
    Enrollment.objects.filter(subscriber=regular).delete()
    Delivery.objects.filter(subscriber=regular).delete()
    track(django_capture_on_commit_callbacks, buyer, "Order Completed",
          {"order_id": "A-1002", "total": 113.5, "currency": "EUR", "products": [
              {"product_id": "boots-1", "name": "Trail boots", "category": "Outdoor", "price": 89.5, "quantity": 1}]},
          NOON)
    assert [m.subject for m in mail_to(buyer)] == ["Thank you for your order"]
    thanks = html(mail_to(buyer)[0])
    assert "A-1002" in thanks and "113.50" in thanks and "Trail boots" in thanks
    tick(NOON + dt.timedelta(days=7) - dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert len(mail_to(buyer)) == 1
    tick(NOON + dt.timedelta(days=7), django_capture_on_commit_callbacks)
    assert [m.subject for m in mail_to(buyer)] == ["Thank you for your order", "Picked for you"]
    assert "Rain jacket" in html(mail_to(buyer)[1])
    assert sent(journey, buyer) == [("thank-you", NOON), ("cross-sell", NOON + dt.timedelta(days=7))]
    assert enrollment(journey, buyer).state == EnrollmentState.COMPLETED
    # Every order starts it again once the last trip is over.
    track(django_capture_on_commit_callbacks, buyer, "Order Completed",
          {"order_id": "A-1003", "total": 20, "currency": "EUR"}, NOON + dt.timedelta(days=10))
    assert [m.subject for m in mail_to(buyer)][-1] == "Thank you for your order"
    assert enrollment(journey, buyer).entry == 2


def _open(delivery: Delivery, at: dt.datetime) -> None:
    delivery_actions.record_tracking_event(TrackingEvent(kind=EventKind.OPENED, occurred_at=at,
                                                         delivery_id=delivery.pk, source="test", user_agent=BROWSER))


def test_reengagement_sunsets_people_who_never_open_and_lets_an_opener_go_subscribed(
        topic, member, clock, django_capture_on_commit_callbacks):
    journey = turn_on("reengagement_sunset", topic)
    sleeper, opener = member(first_name="Sleeper"), member(first_name="Opener")
    member(last_open_at=NOON - dt.timedelta(days=10))  # active: never enters
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.sweep_inactive(journey, now=NOON) == 2
    tick(NOON, django_capture_on_commit_callbacks)
    assert [m.subject for m in mail_to(sleeper)] == ["It's been a while"]
    _open(Delivery.objects.get(subscriber=opener), NOON + dt.timedelta(days=1))

    day = NOON
    for days in (7, 7, 3):
        day += dt.timedelta(days=days)
        tick(day - dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
        tick(day, django_capture_on_commit_callbacks)
    assert [m.subject for m in mail_to(sleeper)] == ["It's been a while", "Too many emails? Choose what you get",
                                                    "Should we stop emailing you?"]
    assert sent(journey, sleeper) == [("miss-you", NOON), ("preferences", NOON + dt.timedelta(days=7)),
                                      ("last-chance", NOON + dt.timedelta(days=14))]
    sleeper.refresh_from_db()
    assert sleeper.status == "unsubscribed" and sleeper.tags == ["unengaged"]
    latest = ConsentRecord.objects.filter(subscriber=sleeper).order_by("-occurred_at", "-id").first()
    assert (latest.granted, latest.method) == (False, "automation")
    assert "Re-engagement and sunset" in latest.notice_version
    assert enrollment(journey, sleeper).state == EnrollmentState.COMPLETED
    steps = [p["step"] for p in enrollment(journey, sleeper).path]
    assert steps.index("opened-preferences") < steps.index("tag-unengaged") < steps.index("sunset") \
        < steps.index("sunset-done")

    opener.refresh_from_db()
    assert opener.status == "subscribed" and opener.tags == []
    assert sent(journey, opener) == [("miss-you", NOON)]
    assert enrollment(journey, opener).path[-1]["step"] == "came-back"


def test_reengagement_keeps_someone_who_opens_only_the_preferences_email(topic, member, clock,
                                                                         django_capture_on_commit_callbacks):
    journey = turn_on("reengagement_sunset", topic)
    person = member()
    actions.sweep_inactive(journey, now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    tick(NOON + dt.timedelta(days=7), django_capture_on_commit_callbacks)
    _open(Delivery.objects.get(message_key=actions.message_key(journey.pk, "preferences", 1)),
          NOON + dt.timedelta(days=8))
    tick(NOON + dt.timedelta(days=14), django_capture_on_commit_callbacks)
    tick(NOON + dt.timedelta(days=17), django_capture_on_commit_callbacks)
    person.refresh_from_db()
    assert person.status == "subscribed" and person.tags == []
    assert enrollment(journey, person).path[-1]["step"] == "stayed"


def test_birthday_email_goes_at_nine_in_the_morning_where_the_person_lives(topic, member, clock,
                                                                           django_capture_on_commit_callbacks):
    journey = turn_on("birthday", topic)
    los_angeles = ZoneInfo("America/Los_Angeles")
    person = member(first_name="Maris", timezone="America/Los_Angeles", birthday_month=12, birthday_day=2)
    later = member(birthday_month=12, birthday_day=9)
    member()  # no birthday on the profile
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.run_triggers(now=NOON) == {"date": 1}
    nine = dt.datetime(2026, 12, 2, 9, 0, tzinfo=los_angeles).astimezone(dt.UTC)
    assert nine == dt.datetime(2026, 12, 2, 17, 0, tzinfo=dt.UTC)
    assert enrollment(journey, person).next_run_at == nine
    tick(nine - dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert mail.outbox == []
    tick(nine, django_capture_on_commit_callbacks)
    assert [m.subject for m in mail.outbox] == ["Happy birthday, Maris!"]
    assert "BIRTHDAY15" in html(mail.outbox[0])
    assert sent(journey, person) == [("birthday", nine)]
    assert sent(journey, later) == []
    # The next sweeps do not enroll them again this year.
    for hours in (24, 48):
        with django_capture_on_commit_callbacks(execute=True):
            actions.run_triggers(now=NOON + dt.timedelta(hours=hours))
    assert Enrollment.objects.filter(journey=journey, subscriber=person).count() == 1


def test_win_back_starts_when_a_customer_enters_the_lapsed_segment_and_a_new_order_ends_it(
        topic, member, clock, django_capture_on_commit_callbacks):
    journey = turn_on("win_back", topic)
    lapsed = journey.trigger_segment
    last_order = NOON - dt.timedelta(days=100)
    stays_away = member(order_count=1, first_order_at=last_order, last_order_at=last_order)
    comes_back = member(order_count=1, first_order_at=last_order, last_order_at=last_order)
    member()  # never ordered: a lead, never lapsed
    segment_actions.refresh_membership(lapsed)  # the starting point: nobody is lapsed yet
    start = NOON + dt.timedelta(days=81)  # 181 days after their last order
    _CLOCK["now"] = start
    segment_actions.refresh_membership(lapsed)
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.run_triggers(now=start) == {"segment_entry": 2}
    assert sorted(m.subject for m in mail.outbox) == ["What's new since your last visit"] * 2
    tick(start + dt.timedelta(days=5), django_capture_on_commit_callbacks)
    assert [m.subject for m in mail_to(comes_back)][-1] == "15% off to welcome you back"
    track(django_capture_on_commit_callbacks, comes_back, "Order Completed",
          {"order_id": "W-1", "total": 40, "currency": "EUR"}, start + dt.timedelta(days=6))
    assert enrollment(journey, comes_back).state == EnrollmentState.EXITED
    tick(start + dt.timedelta(days=12), django_capture_on_commit_callbacks)
    assert sent(journey, stays_away) == [("whats-new", start), ("offer", start + dt.timedelta(days=5)),
                                         ("reminder", start + dt.timedelta(days=12))]
    assert "WELCOMEBACK15" in html(mail_to(stays_away)[-1])
    assert sent(journey, comes_back) == [("whats-new", start), ("offer", start + dt.timedelta(days=5))]
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.run_triggers(now=start + dt.timedelta(days=13)) == {"segment_entry": 0}


def test_win_back_and_reengagement_never_run_at_once_for_a_person(topic, member, clock,
                                                                  django_capture_on_commit_callbacks):
    win_back = turn_on("win_back", topic)
    reengagement = turn_on("reengagement_sunset", topic)
    person = member(order_count=1, last_order_at=NOON - dt.timedelta(days=200))
    assert actions.enroll(win_back, [person.pk], now=NOON) == 1
    assert actions.sweep_inactive(reengagement, now=NOON) == 0
