"""The journey engine: triggers, entry rules, each kind of step, the goal, the gate, edits, sends once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from campaigns.content.models import Campaign, CampaignKind, EmailLayout, Variant
from campaigns.journeys import actions, graph
from campaigns.journeys.models import (
    Enrollment,
    EnrollmentState,
    EntryRule,
    Journey,
    JourneyStatus,
    JourneyStep,
    JourneyStepStats,
    StepKind,
    TriggerKind,
    UpdateAction,
)
from campaigns.models import Delivery, DeliveryStatus
from preferences.models import TopicSubscription
from subscribers.actions import TrackedEvent, announce_events
from subscribers.models import ConsentRecord, Event, Subscriber
from tests.campaigns.conftest import CLOCK as _CLOCK

NOON = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Preferences</a></p>'


@pytest.fixture(autouse=True)
def daytime(settings):
    settings.QUIET_HOURS = ""
    settings.OWN_TRACKING = False
    settings.MARKETING_WEEKLY_CAP = 0


@pytest.fixture
def member(audience_member):
    return audience_member


def email(name: str, subject: str = "", html: str = "") -> Campaign:
    content = Campaign.objects.create(name=name, kind=CampaignKind.JOURNEY, from_email="shop@example.com")
    Variant.objects.create(campaign=content, label="A", subject=subject or name,
                           html=(html or f'<p>{name} for {{{{ first_name|default:"you" }}}}</p>') + FOOTER)
    return content


def build(topic, steps: list[dict], **fields) -> Journey:
    journey = Journey(name=fields.pop("name", "Test journey"), topic=topic, **fields)
    objects = [JourneyStep(position=i, **spec) for i, spec in enumerate(steps)]
    actions.save_journey(journey, objects)
    actions.activate_journey(journey)
    journey.refresh_from_db()
    return journey


def tick(at: dt.datetime, callbacks) -> actions.AdvanceResult:
    _CLOCK["now"] = at
    with callbacks(execute=True):
        return actions.advance_due(now=at, seconds=30)


def state(journey, person):
    return Enrollment.objects.filter(journey=journey, subscriber=person).order_by("-entry").first()


def subjects() -> list[str]:
    return [m.subject for m in mail.outbox]


def test_welcome_series_sends_each_email_after_its_wait_and_completes(topic, member, clock,
                                                                      django_capture_on_commit_callbacks):
    journey = build(topic, [
        {"key": "hello", "kind": StepKind.SEND_EMAIL, "email": email("Welcome")},
        {"key": "two-days", "kind": StepKind.WAIT, "wait_amount": 2, "wait_unit": "days"},
        {"key": "tips", "kind": StepKind.SEND_EMAIL, "email": email("Tips")},
    ], trigger=TriggerKind.SIGNUP)
    person = member()
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.on_subscribed(person.pk) == 1
    tick(NOON, django_capture_on_commit_callbacks)
    assert subjects() == ["Welcome"]
    assert state(journey, person).step_key == "two-days"
    tick(NOON + dt.timedelta(days=1), django_capture_on_commit_callbacks)
    assert subjects() == ["Welcome"]
    tick(NOON + dt.timedelta(days=2, minutes=1), django_capture_on_commit_callbacks)
    assert subjects() == ["Welcome", "Tips"]
    enrollment = state(journey, person)
    assert enrollment.state == EnrollmentState.COMPLETED
    assert [p["step"] for p in enrollment.path][:3] == ["hello", "two-days", "tips"]
    delivery = Delivery.objects.get(message_key=actions.message_key(journey.pk, "hello", 1))
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.why["journey"] == "Test journey" and "subscribed" in delivery.why["reason"]
    stats = {s.step_key: (s.passed, s.sent) for s in JourneyStepStats.objects.filter(journey=journey)}
    assert stats["hello"] == (1, 1) and stats["tips"] == (1, 1)


def test_entry_rules_once_per_period_and_every_time(topic, member, clock):
    person = member()
    once = build(topic, [{"key": "w", "kind": StepKind.WAIT, "wait_amount": 1}], name="Once")
    assert actions.enroll(once, [person.pk]) == 1
    assert actions.enroll(once, [person.pk]) == 0  # already in it
    Enrollment.objects.filter(journey=once).update(state=EnrollmentState.COMPLETED)
    assert actions.enroll(once, [person.pk]) == 0  # once ever

    period = build(topic, [{"key": "w", "kind": StepKind.WAIT, "wait_amount": 1}], name="Period",
                   entry_rule=EntryRule.ONCE_PER_PERIOD, reentry_days=30)
    assert actions.enroll(period, [person.pk], now=NOON) == 1
    Enrollment.objects.filter(journey=period).update(state=EnrollmentState.COMPLETED)
    assert actions.enroll(period, [person.pk], now=NOON + dt.timedelta(days=10)) == 0
    assert actions.enroll(period, [person.pk], now=NOON + dt.timedelta(days=31)) == 1
    assert state(period, person).entry == 2

    every = build(topic, [{"key": "w", "kind": StepKind.WAIT, "wait_amount": 1}], name="Every",
                  entry_rule=EntryRule.EVERY_TIME)
    assert actions.enroll(every, [person.pk]) == 1
    Enrollment.objects.filter(journey=every).update(state=EnrollmentState.EXITED)
    assert actions.enroll(every, [person.pk]) == 1


def test_journeys_of_one_group_never_run_at_once_for_a_person(topic, member, clock):
    person = member()
    first = build(topic, [{"key": "w", "kind": StepKind.WAIT, "wait_amount": 1}], name="Promo 1", group="promo")
    second = build(topic, [{"key": "w", "kind": StepKind.WAIT, "wait_amount": 1}], name="Promo 2", group="promo")
    assert actions.enroll(first, [person.pk]) == 1
    assert actions.enroll(second, [person.pk]) == 0


def test_people_who_cannot_get_mail_are_not_enrolled(topic, member, clock):
    journey = build(topic, [{"key": "w", "kind": StepKind.WAIT, "wait_amount": 1}])
    gone = member(status="unsubscribed")
    assert actions.enroll(journey, [gone.pk]) == 0


def test_cart_abandonment_starts_on_the_event_and_the_goal_ends_it(topic, member, clock,
                                                                     django_capture_on_commit_callbacks):
    journey = build(topic, [
        {"key": "hour", "kind": StepKind.WAIT, "wait_amount": 1, "wait_unit": "hours"},
        {"key": "reminder", "kind": StepKind.SEND_EMAIL,
         "email": email("Your cart", html="<p>{% for p in trigger.properties.products %}{{ p.name }} "
                                          "{% endfor %}</p>")},
        {"key": "day", "kind": StepKind.WAIT, "wait_amount": 23, "wait_unit": "hours"},
        {"key": "incentive", "kind": StepKind.SEND_EMAIL, "email": email("10% off")},
    ], trigger=TriggerKind.EVENT, trigger_event="Checkout Started", exit_event="Order Completed",
        entry_rule=EntryRule.EVERY_TIME)
    buyer, browser = member(first_name="Buyer"), member(first_name="Browser")
    events = [TrackedEvent(p.pk, "Checkout Started", {"products": [{"name": "Boots"}]}, NOON) for p in (buyer, browser)]
    with django_capture_on_commit_callbacks(execute=True):
        announce_events(events)  # what the tracking API does after storing them
    assert Enrollment.objects.filter(journey=journey).count() == 2
    tick(NOON + dt.timedelta(hours=1, minutes=1), django_capture_on_commit_callbacks)
    assert sorted(subjects()) == ["Your cart", "Your cart"]
    assert "Boots" in mail.outbox[0].alternatives[0][0]
    # The buyer completes the order: they leave at once, before the incentive.
    Event.objects.create(subscriber=buyer, name="Order Completed", occurred_at=NOON + dt.timedelta(hours=3))
    with django_capture_on_commit_callbacks(execute=True):
        announce_events([TrackedEvent(buyer.pk, "Order Completed", {}, NOON + dt.timedelta(hours=3))])
    assert state(journey, buyer).state == EnrollmentState.EXITED
    assert "goal" in state(journey, buyer).note
    tick(NOON + dt.timedelta(hours=25), django_capture_on_commit_callbacks)
    assert sorted(subjects()) == ["10% off", "Your cart", "Your cart"]
    assert mail.outbox[-1].to == [browser.email]


def test_goal_is_checked_before_every_step_even_without_the_event_hook(topic, member, clock,
                                                                       django_capture_on_commit_callbacks):
    journey = build(topic, [
        {"key": "hour", "kind": StepKind.WAIT, "wait_amount": 1, "wait_unit": "hours"},
        {"key": "reminder", "kind": StepKind.SEND_EMAIL, "email": email("Your cart")},
    ], trigger=TriggerKind.EVENT, trigger_event="Checkout Started", exit_event="Order Completed")
    person = member()
    actions.enroll(journey, [person.pk], now=NOON)
    Event.objects.create(subscriber=person, name="Order Completed", occurred_at=NOON + dt.timedelta(minutes=5))
    tick(NOON + dt.timedelta(hours=2), django_capture_on_commit_callbacks)
    assert subjects() == []
    assert state(journey, person).state == EnrollmentState.EXITED


def test_an_order_reported_together_with_the_checkout_still_ends_cart_recovery(
        topic, member, clock, django_capture_on_commit_callbacks):
    journey = build(topic, [
        {"key": "hour", "kind": StepKind.WAIT, "wait_amount": 1, "wait_unit": "hours"},
        {"key": "reminder", "kind": StepKind.SEND_EMAIL, "email": email("Your cart")},
    ], trigger=TriggerKind.EVENT, trigger_event="Checkout Started", exit_event="Order Completed")
    person = member()
    # Both events happened ten minutes ago and reach us in one batch, checkout first.
    checkout, order = NOON - dt.timedelta(minutes=10), NOON - dt.timedelta(minutes=9)
    Event.objects.create(subscriber=person, name="Order Completed", occurred_at=order)
    actions.handle_events([{"subscriber_id": person.pk, "name": "Checkout Started", "properties": {},
                            "occurred_at": checkout.isoformat()}], now=NOON)
    tick(NOON + dt.timedelta(hours=2), django_capture_on_commit_callbacks)
    assert subjects() == []
    assert "goal" in state(journey, person).note


def test_wait_for_an_event_takes_the_yes_path_when_it_happens_and_no_after_the_timeout(
        topic, member, clock, django_capture_on_commit_callbacks):
    journey = build(topic, [
        {"key": "wait-visit", "kind": StepKind.WAIT_EVENT, "event_name": "Product Viewed", "wait_amount": 3,
         "wait_unit": "days", "else_step": "nudge"},
        {"key": "thanks", "kind": StepKind.SEND_EMAIL, "email": email("Thanks for looking"), "next_step": "end"},
        {"key": "nudge", "kind": StepKind.SEND_EMAIL, "email": email("Come back")},
        {"key": "end", "kind": StepKind.EXIT},
    ], trigger=TriggerKind.SIGNUP)
    visitor, stranger = member(first_name="V"), member(first_name="S")
    actions.enroll(journey, [visitor.pk, stranger.pk], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    Event.objects.create(subscriber=visitor, name="Product Viewed", occurred_at=NOON + dt.timedelta(hours=5))
    with django_capture_on_commit_callbacks(execute=True):
        result = actions.handle_events([{"subscriber_id": visitor.pk, "name": "Product Viewed", "properties": {}}],
                                       now=NOON + dt.timedelta(hours=5))
    assert result["woken"] == 1
    tick(NOON + dt.timedelta(hours=5), django_capture_on_commit_callbacks)
    assert [(m.to[0], m.subject) for m in mail.outbox] == [(visitor.email, "Thanks for looking")]
    tick(NOON + dt.timedelta(days=3, minutes=1), django_capture_on_commit_callbacks)
    assert (stranger.email, "Come back") in [(m.to[0], m.subject) for m in mail.outbox]
    assert len(mail.outbox) == 2
    stats = JourneyStepStats.objects.get(journey=journey, step_key="wait-visit")
    assert (stats.passed, stats.took_else) == (2, 1)


def test_branch_on_a_segment_rule_and_on_engagement_with_an_earlier_email(topic, member, clock,
                                                                           django_capture_on_commit_callbacks):
    journey = build(topic, [
        {"key": "first", "kind": StepKind.SEND_EMAIL, "email": email("First")},
        {"key": "wait", "kind": StepKind.WAIT, "wait_amount": 1},
        {"key": "opened", "kind": StepKind.BRANCH, "engagement_step": "first", "engagement": "opened",
         "else_step": "country"},
        {"key": "engaged", "kind": StepKind.UPDATE_PROFILE, "update_action": UpdateAction.ADD_TAG,
         "update_key": "engaged", "next_step": "done"},
        {"key": "country", "kind": StepKind.BRANCH,
         "condition": {"match": "all", "rules": [{"field": "country", "op": "in", "value": ["LV"]}]},
         "else_step": "done"},
        {"key": "latvian", "kind": StepKind.UPDATE_PROFILE, "update_action": UpdateAction.ADD_TAG,
         "update_key": "lv-quiet"},
        {"key": "done", "kind": StepKind.EXIT},
    ])
    opener, latvian, other = member(country="DE"), member(country="LV"), member(country="DE")
    actions.enroll(journey, [opener.pk, latvian.pk, other.pk], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    Delivery.objects.filter(subscriber=opener).update(first_opened_at=NOON + dt.timedelta(hours=1))
    tick(NOON + dt.timedelta(days=1, minutes=1), django_capture_on_commit_callbacks)
    tags = {p.pk: p.tags for p in Subscriber.objects.all()}
    assert tags[opener.pk] == ["engaged"]
    assert tags[latvian.pk] == ["lv-quiet"]
    assert tags[other.pk] == []
    assert all(e.state == EnrollmentState.COMPLETED for e in Enrollment.objects.filter(journey=journey))


def test_random_split_is_stable_and_near_its_share(topic, member, clock, django_capture_on_commit_callbacks):
    buckets = [actions.split_bucket(i, 1, "split") for i in range(2000)]
    assert buckets == [actions.split_bucket(i, 1, "split") for i in range(2000)]
    assert 900 < sum(b < 50 for b in buckets) < 1100
    journey = build(topic, [
        {"key": "split", "kind": StepKind.SPLIT, "split_percent": 50, "else_step": "b"},
        {"key": "a", "kind": StepKind.UPDATE_PROFILE, "update_action": UpdateAction.ADD_TAG, "update_key": "A",
         "next_step": "end"},
        {"key": "b", "kind": StepKind.UPDATE_PROFILE, "update_action": UpdateAction.ADD_TAG, "update_key": "B"},
        {"key": "end", "kind": StepKind.EXIT},
    ])
    people = [member() for _ in range(20)]
    actions.enroll(journey, [p.pk for p in people], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    for person in Subscriber.objects.filter(pk__in=[p.pk for p in people]):
        expected = "A" if actions.split_bucket(person.pk, 1, "split") < 50 else "B"
        assert person.tags == [expected]
    stats = JourneyStepStats.objects.get(journey=journey, step_key="split")
    assert stats.passed == 20 and stats.took_else == sum(
        actions.split_bucket(p.pk, 1, "split") >= 50 for p in people)


def test_the_gate_defers_in_quiet_hours_and_skips_people_without_the_topic(topic, member, clock, settings,
                                                                           django_capture_on_commit_callbacks):
    settings.QUIET_HOURS = "21-8"
    journey = build(topic, [{"key": "hello", "kind": StepKind.SEND_EMAIL, "email": email("Hello")},
                            {"key": "end", "kind": StepKind.EXIT}])
    night_owl = member(timezone="Asia/Tokyo")  # 21:00 in Tokyo at noon UTC
    unsubscribed_topic = member()
    TopicSubscription.objects.filter(subscriber=unsubscribed_topic).update(subscribed=False)
    actions.enroll(journey, [night_owl.pk, unsubscribed_topic.pk], now=NOON)
    result = tick(NOON, django_capture_on_commit_callbacks)
    assert (result.deferred, result.skipped) == (1, 1)
    waiting = state(journey, night_owl)
    assert waiting.step_key == "hello" and "night" in waiting.note
    assert waiting.next_run_at == dt.datetime(2026, 12, 1, 23, 0, tzinfo=dt.UTC)  # 08:00 in Tokyo
    assert Delivery.objects.get(subscriber=unsubscribed_topic).status == DeliveryStatus.SKIPPED
    assert state(journey, unsubscribed_topic).state == EnrollmentState.COMPLETED
    tick(waiting.next_run_at, django_capture_on_commit_callbacks)
    assert [m.to[0] for m in mail.outbox] == [night_owl.email]


def test_wait_until_a_local_time_and_until_the_birthday(topic, member, clock):
    step = JourneyStep(kind=StepKind.WAIT_UNTIL, until_time=dt.time(9), until_weekday=0)
    # 1 December 2026 is a Tuesday; the next Monday 09:00 in Riga (UTC+2) is 7 December 07:00 UTC.
    assert actions.wait_until(step, {"timezone": "Europe/Riga"}, now=NOON) == dt.datetime(2026, 12, 7, 7, 0,
                                                                                          tzinfo=dt.UTC)
    birthday = JourneyStep(kind=StepKind.WAIT_UNTIL, until_date_field="birthday", until_time=dt.time(9))
    person = {"timezone": "America/New_York", "birthday_month": 12, "birthday_day": 3}
    assert actions.wait_until(birthday, person, now=NOON) == dt.datetime(2026, 12, 3, 14, 0, tzinfo=dt.UTC)
    assert actions.wait_until(birthday, {"timezone": "UTC"}, now=NOON) == NOON  # no date: go on


def test_removing_a_step_from_an_active_journey_lets_its_people_leave_cleanly(topic, member, clock,
                                                                              django_capture_on_commit_callbacks):
    journey = build(topic, [
        {"key": "long", "kind": StepKind.WAIT, "wait_amount": 5},
        {"key": "short", "kind": StepKind.WAIT, "wait_amount": 1},
        {"key": "mail", "kind": StepKind.SEND_EMAIL, "email": email("Later")},
    ])
    first, second = member(), member()
    actions.enroll(journey, [first.pk], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    Enrollment.objects.filter(journey=journey).update(step_key="short", next_run_at=NOON + dt.timedelta(days=1))
    actions.enroll(journey, [second.pk], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)  # second waits at "long"
    steps = [s for s in journey.steps.all() if s.key != "long"]
    actions.save_journey(journey, steps, deleted=[s for s in journey.steps.all() if s.key == "long"])
    assert state(journey, second).state == EnrollmentState.EXITED
    assert "removed" in state(journey, second).note
    assert state(journey, first).state == EnrollmentState.ACTIVE
    tick(NOON + dt.timedelta(days=1, minutes=1), django_capture_on_commit_callbacks)
    assert [m.to[0] for m in mail.outbox] == [first.email]
    journey.refresh_from_db()
    assert journey.version == 2


def test_a_send_left_open_by_a_crash_is_not_sent_twice(topic, member, clock, django_capture_on_commit_callbacks,
                                                        settings):
    journey = build(topic, [{"key": "hello", "kind": StepKind.SEND_EMAIL, "email": email("Hello")}])
    person = member()
    actions.enroll(journey, [person.pk], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    # As if the worker died after the ESP accepted the message but before recording it:
    Enrollment.objects.filter(journey=journey).update(state=EnrollmentState.SENDING, step_key="hello",
                                                      next_run_at=NOON, finished_at=None)
    Delivery.objects.update(status=DeliveryStatus.DELIVERED)  # the ESP's webhook said so meanwhile
    tick(NOON + dt.timedelta(minutes=20), django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    assert state(journey, person).state == EnrollmentState.COMPLETED
    # With no word from the ESP, it goes out again (the ESP never got it).
    Enrollment.objects.filter(journey=journey).update(state=EnrollmentState.SENDING, next_run_at=NOON,
                                                      finished_at=None)
    Delivery.objects.update(status=DeliveryStatus.QUEUED, sent_at=None)
    tick(NOON + dt.timedelta(minutes=40), django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2
    assert Delivery.objects.count() == 1


def test_sunset_step_unsubscribes_with_an_automation_ledger_entry(topic, member, clock,
                                                                  django_capture_on_commit_callbacks):
    journey = build(topic, [{"key": "sunset", "kind": StepKind.UPDATE_PROFILE,
                             "update_action": UpdateAction.STOP_MARKETING}], name="Sunset")
    person = member()
    actions.enroll(journey, [person.pk], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    person.refresh_from_db()
    assert person.status == "unsubscribed"
    latest = ConsentRecord.objects.filter(subscriber=person).order_by("-id").first()
    assert (latest.granted, latest.method) == (False, "automation")
    assert "Sunset" in latest.notice_version


def test_paused_journeys_hold_people_and_archived_ones_let_them_go(topic, member, clock,
                                                                    django_capture_on_commit_callbacks):
    journey = build(topic, [{"key": "hello", "kind": StepKind.SEND_EMAIL, "email": email("Hello")}])
    person = member()
    actions.enroll(journey, [person.pk], now=NOON)
    assert actions.pause_journey(journey)
    tick(NOON, django_capture_on_commit_callbacks)
    assert mail.outbox == [] and state(journey, person).state == EnrollmentState.ACTIVE
    actions.activate_journey(journey)
    tick(NOON, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    other = member()
    actions.enroll(journey, [other.pk], now=NOON)
    assert actions.archive_journey(journey) == 1
    assert state(journey, other).state == EnrollmentState.EXITED
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ARCHIVED
    with pytest.raises(actions.JourneyInvalid):
        actions.activate_journey(journey)


def step(**fields) -> JourneyStep:
    return JourneyStep(**{"position": 0, **fields})


@pytest.mark.parametrize(("steps", "message"), [
    ([], "Add at least one step"),
    ([step(key="a", kind=StepKind.SEND_EMAIL)], "Step “a”: choose the email"),
    ([step(key="a", kind=StepKind.WAIT)], "Step “a”: say how long to wait"),
    ([step(key="a", kind=StepKind.WAIT, wait_amount=1, next_step="zz")], "“zz” is not a step"),
    ([step(key="a", kind=StepKind.EXIT), step(key="b", kind=StepKind.EXIT, position=1)],
     "Step “b” can never be reached"),
    ([step(key="a", kind=StepKind.UPDATE_PROFILE, update_action="add_tag", update_key="x"),
      step(key="b", kind=StepKind.SPLIT, split_percent=50, position=1, next_step="a", else_step="a")],
     "form a loop without a wait"),
    ([step(key="a", kind=StepKind.BRANCH, engagement_step="nope", engagement="opened")],
     "“nope” is not an email step"),
    ([step(key="a", kind=StepKind.SPLIT, split_percent=100)], "between 1 and 99%"),
    ([step(key="a", kind=StepKind.WAIT, wait_amount=1), step(key="a", kind=StepKind.EXIT, position=1)],
     "Two steps are called “a”"),
])
def test_invalid_graphs_are_refused_naming_the_step(steps, message):
    problems = graph.graph_problems(steps)
    assert any(message in p for p in problems), problems


def test_a_loop_with_a_wait_is_allowed():
    steps = [step(key="a", kind=StepKind.WAIT, wait_amount=1),
             step(key="b", kind=StepKind.BRANCH, engagement_step="", condition={"match": "all", "rules": []},
                  position=1, next_step="a", else_step="")]
    assert graph.graph_problems(steps) == []


def test_a_journey_cannot_be_turned_on_with_an_email_missing_its_unsubscribe_link(topic, db):
    bare = EmailLayout.objects.create(name="Bare", html="<html><body>{{ content }}</body></html>")
    content = Campaign.objects.create(name="No footer", kind=CampaignKind.JOURNEY, layout=bare)
    Variant.objects.create(campaign=content, label="A", subject="Hi", html="<p>Hi</p>")
    journey = Journey(name="Bad", topic=None, trigger=TriggerKind.EVENT)
    actions.save_journey(journey, [JourneyStep(key="a", kind=StepKind.SEND_EMAIL, email=content)])
    with pytest.raises(actions.JourneyInvalid) as raised:
        actions.activate_journey(journey)
    text = " ".join(raised.value.problems)
    assert "name the event" in text and "Choose the topic" in text and "Step “a” (email “No footer”)" in text


def test_the_simulator_tells_what_would_happen_without_doing_it(topic, member, clock, settings):
    from campaigns.journeys.simulator import simulate

    settings.QUIET_HOURS = "21-8"
    journey = build(topic, [
        {"key": "hello", "kind": StepKind.SEND_EMAIL, "email": email("Welcome")},
        {"key": "wait", "kind": StepKind.WAIT, "wait_amount": 2, "wait_unit": "days"},
        {"key": "visit", "kind": StepKind.WAIT_EVENT, "event_name": "Product Viewed", "wait_amount": 1,
         "else_step": "nudge"},
        {"key": "end", "kind": StepKind.EXIT},
        {"key": "nudge", "kind": StepKind.SEND_EMAIL, "email": email("Come back")},
    ], exit_event="Order Completed")
    person = member(timezone="Asia/Tokyo")
    lines = simulate(journey, subscriber_id=person.pk, start=NOON)
    text = [line.text for line in lines]
    assert text[0] == "Enters the journey."
    assert "Order Completed" in text[1]
    assert lines[2].step == "hello" and "later" in text[2] and "night" in text[2]
    assert lines[2].at == dt.datetime(2026, 12, 1, 23, 0, tzinfo=dt.UTC) and "08:00" in lines[2].local
    assert lines[3].at == dt.datetime(2026, 12, 3, 23, 0, tzinfo=dt.UTC)
    assert lines[4].step == "visit" and lines[5].step == "nudge"
    assert text[-1] == "Completes the journey."
    assert Enrollment.objects.count() == 0 and not mail.outbox


def test_the_subscriber_page_lists_the_persons_journeys(admin_client, topic, member, clock,
                                                        django_capture_on_commit_callbacks):
    journey = build(topic, [{"key": "hello", "kind": StepKind.SEND_EMAIL, "email": email("Hello")},
                            {"key": "rest", "kind": StepKind.WAIT, "wait_amount": 3}], name="Welcome series")
    person = member()
    actions.enroll(journey, [person.pk], now=NOON)
    tick(NOON, django_capture_on_commit_callbacks)
    page = admin_client.get(f"/admin/subscribers/subscriber/{person.pk}/change/").content.decode()
    assert "Welcome series" in page and "at step “rest”" in page and "2026-12-04 12:00" in page
