"""The journey screens: building through the admin, the checks, the buttons, the diagram, the simulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User

from campaigns.content.models import Campaign, CampaignKind, Variant
from campaigns.journeys import actions
from campaigns.journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyEmail,
    JourneyStatus,
    JourneyStep,
    JourneyStepStats,
    StepKind,
)
from campaigns.models import Delivery, MessageStats
from subscribers.models import Subscriber
from subscribers.roles import ANALYST, MARKETER, MARKETING_MANAGER, sync_staff_groups

FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Preferences</a></p>'
STEP_FIELDS = ("position", "key", "kind", "label", "email", "wait_amount", "wait_unit", "until_time", "until_weekday",
               "until_date_field", "until_offset_days", "event_name", "event_filters", "condition",
               "engagement_step", "engagement", "split_percent", "update_action", "update_key", "update_value",
               "update_topic", "next_step", "else_step")
ADD_URL = "/admin/campaigns/journey/add/"
NAME = "Test onboarding"  # the app ships journeys of its own (prebuilt); keep clear of their names


@pytest.fixture(autouse=True)
def daytime(settings):
    settings.QUIET_HOURS = ""
    settings.MARKETING_WEEKLY_CAP = 0


def journey_email(name: str, *, written: bool = True) -> JourneyEmail:
    email = JourneyEmail.objects.create(name=name, from_email="shop@example.com")
    if written:
        Variant.objects.create(campaign=email, label="A", subject=name,
                               html=f'<p>{name} for {{{{ first_name|default:"you" }}}}</p>' + FOOTER)
    return email


def form_data(steps: list[dict[str, Any]], *, initial: int = 0, **journey: Any) -> dict[str, Any]:
    """Return the POST of the journey form with its step inline, as the browser sends it."""
    data = {"name": NAME, "description": "", "topic": "", "group": "", "trigger": "signup",
            "trigger_event": "", "trigger_filters": "", "trigger_segment": "", "trigger_date_field": "",
            "trigger_time": "", "inactivity_days": "", "entry_rule": "once", "reentry_days": "", "exit_event": "",
            "exit_filters": "", "steps-TOTAL_FORMS": str(len(steps)), "steps-INITIAL_FORMS": str(initial),
            "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000", "_continue": "Save and continue editing"}
    data.update({k: "" if v is None else v for k, v in journey.items()})
    for index, step in enumerate(steps):
        row = dict.fromkeys(STEP_FIELDS, "")
        row.update({"position": str(index), "wait_unit": "days", "until_offset_days": "0"})
        row.update({k: "" if v is None else str(v) for k, v in step.items()})
        data.update({f"steps-{index}-{name}": value for name, value in row.items()})
    return data


def welcome_steps(first: JourneyEmail, second: JourneyEmail) -> list[dict[str, Any]]:
    return [{"key": "welcome", "kind": StepKind.SEND_EMAIL, "email": first.pk},
            {"key": "two-days", "kind": StepKind.WAIT, "wait_amount": 2},
            {"key": "tips", "kind": StepKind.SEND_EMAIL, "email": second.pk}]


def saved_steps(journey: Journey) -> list[tuple[str, str]]:
    return list(journey.steps.order_by("position").values_list("key", "kind"))


def test_a_journey_with_steps_is_created_through_the_admin(admin_client, topic):
    welcome, tips = journey_email("Welcome"), journey_email("Tips")
    response = admin_client.post(ADD_URL, form_data(welcome_steps(welcome, tips), topic=topic.pk))
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.non_form_errors()
    journey = Journey.objects.get(name=NAME)
    assert saved_steps(journey) == [("welcome", "send_email"), ("two-days", "wait"), ("tips", "send_email")]
    assert journey.status == JourneyStatus.DRAFT and journey.created_by.username == "admin"
    step = journey.steps.get(key="two-days")
    assert (step.wait_amount, step.wait_unit, step.email_id) == (2, "days", None)


def test_fields_a_step_kind_does_not_use_are_not_saved(admin_client, topic):
    welcome = journey_email("Welcome")
    # The browser hid the email select after the kind changed to a wait; the leftover value must not be stored.
    steps = [{"key": "w", "kind": StepKind.WAIT, "wait_amount": 1, "email": welcome.pk, "else_step": "w"}]
    response = admin_client.post(ADD_URL, form_data(steps, trigger_segment="", trigger_event="Left over"))
    assert response.status_code == 302
    journey = Journey.objects.get(name=NAME)
    step = journey.steps.get()
    assert step.email_id is None and step.else_step == "" and journey.trigger_event == ""


def test_an_invalid_graph_is_refused_naming_each_step_and_nothing_is_saved(admin_client):
    steps = [{"key": "email-1", "kind": StepKind.SEND_EMAIL},
             {"key": "wait-1", "kind": StepKind.WAIT, "wait_amount": 1, "next_step": "nowhere"}]
    before = (Journey.objects.count(), JourneyStep.objects.count())
    response = admin_client.post(ADD_URL, form_data(steps))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Step “email-1”: choose the email to send." in page
    assert "Step “wait-1”: its next step “nowhere” is not a step of this journey." in page
    assert (Journey.objects.count(), JourneyStep.objects.count()) == before


def test_editing_keeps_every_step_and_deletes_the_ones_marked(admin_client, topic):
    welcome, tips = journey_email("Welcome"), journey_email("Tips")
    admin_client.post(ADD_URL, form_data(welcome_steps(welcome, tips)))
    journey = Journey.objects.get(name=NAME)
    ids = dict(journey.steps.values_list("key", "pk"))
    steps = [{**s, "id": ids[s["key"]], "journey": journey.pk} for s in welcome_steps(welcome, tips)]
    steps[1]["DELETE"] = "on"
    steps[2]["label"] = "Tips after the welcome"
    response = admin_client.post(f"/admin/campaigns/journey/{journey.pk}/change/",
                                 form_data(steps, initial=3))
    assert response.status_code == 302
    assert saved_steps(journey) == [("welcome", "send_email"), ("tips", "send_email")]
    assert journey.steps.get(key="tips").label == "Tips after the welcome"
    journey.refresh_from_db()
    assert journey.version == 2


def test_turn_on_reports_every_problem_then_succeeds(admin_client, topic, django_capture_on_commit_callbacks):
    welcome, tips = journey_email("Welcome", written=False), journey_email("Tips")
    admin_client.post(ADD_URL, form_data(welcome_steps(welcome, tips), trigger="event"))
    journey = Journey.objects.get(name=NAME)
    response = admin_client.post(f"/admin/campaigns/journey/{journey.pk}/control/activate/", follow=True)
    errors = [str(m) for m in response.context["messages"] if m.level_tag == "error"]
    assert any(e.startswith("Trigger: name the event") for e in errors)
    assert any("topic" in e for e in errors)
    assert any(e.startswith("Step “welcome” (email “Welcome”)") for e in errors), errors
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT

    Variant.objects.create(campaign=welcome, label="A", subject="Welcome", html="<p>Hello</p>" + FOOTER)
    response = admin_client.post(f"/admin/campaigns/journey/{journey.pk}/change/", form_data(
        [{**s, "id": journey.steps.get(key=s["key"]).pk, "journey": journey.pk} for s in welcome_steps(welcome, tips)],
        initial=3, trigger="event", trigger_event="Account Created", topic=topic.pk))
    assert response.status_code == 302
    with django_capture_on_commit_callbacks():
        response = admin_client.post(f"/admin/campaigns/journey/{journey.pk}/control/activate/", follow=True)
    notes = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert ("success", "Turned on: people who meet the trigger from now on enter the journey.") in notes
    assert all(level == "success" for level, _ in notes)
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE
    page = response.content.decode()
    assert 'value="Pause"' in page and 'value="Turn on"' not in page

    admin_client.post(f"/admin/campaigns/journey/{journey.pk}/control/pause/")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.PAUSED
    with django_capture_on_commit_callbacks():
        admin_client.post(f"/admin/campaigns/journey/{journey.pk}/control/resume/")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE
    admin_client.post(f"/admin/campaigns/journey/{journey.pk}/control/archive/")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ARCHIVED
    admin_client.post(f"/admin/campaigns/journey/{journey.pk}/control/activate/")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ARCHIVED  # archived is for good
    assert admin_client.get(f"/admin/campaigns/journey/{journey.pk}/control/pause/").status_code == 405


def test_saving_an_active_journey_checks_what_it_needs_to_run(admin_client, topic):
    welcome, tips = journey_email("Welcome"), journey_email("Tips")
    journey = Journey(name="On", topic=topic)
    actions.save_journey(journey, [JourneyStep(position=i, key=s["key"], kind=s["kind"],
                                               email_id=s.get("email"), wait_amount=s.get("wait_amount"))
                                   for i, s in enumerate(welcome_steps(welcome, tips))])
    actions.activate_journey(journey)
    data = form_data([{**s, "id": journey.steps.get(key=s["key"]).pk, "journey": journey.pk}
                      for s in welcome_steps(welcome, tips)], initial=3, name="On", topic="")
    response = admin_client.post(f"/admin/campaigns/journey/{journey.pk}/change/", data)
    assert response.status_code == 200
    assert "Choose the topic the journey&#x27;s emails belong to" in response.content.decode()
    journey.refresh_from_db()
    assert journey.topic == topic


def test_buttons_need_the_change_permission(client, topic):
    sync_staff_groups(Group, Permission)
    analyst = User.objects.create_user("ana", password="pw", is_staff=True)
    analyst.groups.add(Group.objects.get(name=ANALYST))
    journey = Journey.objects.create(name="Quiet")
    client.force_login(analyst)
    assert client.get(f"/admin/campaigns/journey/{journey.pk}/change/").status_code == 200
    assert client.post(f"/admin/campaigns/journey/{journey.pk}/control/archive/").status_code == 403
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT


def test_staff_roles_cover_the_journey_screens(db):
    sync_staff_groups(Group, Permission)

    def codenames(role: str) -> set[str]:
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    models = ("journey", "journeystep", "enrollment", "journeyemail")
    assert {f"{verb}_{m}" for m in models for verb in ("add", "change", "delete", "view")} <= codenames(
        MARKETING_MANAGER)
    assert {f"change_{m}" for m in models} <= codenames(MARKETER)
    assert not {f"delete_{m}" for m in models} & codenames(MARKETER)
    assert {f"view_{m}" for m in models} <= codenames(ANALYST)
    assert not {f"change_{m}" for m in models} & codenames(ANALYST)


def test_diagram_shows_waiting_passed_paths_and_email_results(admin_client, topic, make_subscriber):
    welcome = journey_email("Welcome")
    journey = Journey(name="Diagram", topic=topic)
    actions.save_journey(journey, [
        JourneyStep(position=0, key="welcome", kind=StepKind.SEND_EMAIL, email=welcome),
        JourneyStep(position=1, key="ab", kind=StepKind.SPLIT, split_percent=50, else_step="bye"),
        JourneyStep(position=2, key="wait", kind=StepKind.WAIT, wait_amount=3),
        JourneyStep(position=3, key="bye", kind=StepKind.EXIT),
    ])
    people = [make_subscriber() for _ in range(6)]
    for person, (state, step) in zip(people, [("active", "wait"), ("active", "wait"), ("sending", "welcome"),
                                              ("completed", "bye"), ("exited", "wait"), ("active", "")],
                                     strict=True):
        Enrollment.objects.create(journey=journey, subscriber=person, state=state, step_key=step)
    JourneyStepStats.objects.create(journey=journey, step_key="ab", passed=40, took_else=15)
    JourneyStepStats.objects.create(journey=journey, step_key="wait", passed=20, exited=3)
    # Two trips through the welcome step, and another journey whose keys must not be counted.
    MessageStats.objects.create(message_key=actions.message_key(journey.pk, "welcome", 1), sent=90, delivered=80,
                                unique_opens=40, unique_clicks=8, unsubscribes=1)
    MessageStats.objects.create(message_key=actions.message_key(journey.pk, "welcome", 2), sent=10, delivered=20,
                                unique_opens=4, unique_clicks=2)
    MessageStats.objects.create(message_key=actions.message_key(journey.pk + 1, "welcome", 1), sent=999)

    response = admin_client.get(f"/admin/campaigns/journey/{journey.pk}/change/")
    boxes = {box["key"]: box for box in response.context["diagram"]["boxes"]}
    assert list(boxes) == ["welcome", "ab", "wait", "bye"]
    assert boxes["wait"]["waiting"] == 2 and boxes["wait"]["exited"] == 3 and boxes["wait"]["passed"] == 20
    assert boxes["welcome"]["waiting"] == 1
    expected = {"sent": 100, "delivered": 100, "unique_opens": 44, "unique_clicks": 10, "unsubscribes": 1,
                "click_rate": "10.0%"}
    assert {k: boxes["welcome"]["email"][k] for k in expected} == expected
    assert [(p["label"], p["count"], p["target"]) for p in boxes["ab"]["paths"]] == [("A", 25, "wait"),
                                                                                      ("B", 15, "bye")]
    diagram = response.context["diagram"]
    assert (diagram["open"], diagram["completed"], diagram["exited"], diagram["starting"]) == (4, 1, 1, 1)
    page = response.content.decode()
    assert 'data-testid="journey-diagram"' in page and "→ <a href=\"#jd-step-bye\">bye</a>" in page
    assert "step_key__exact=wait" in page


def test_diagram_takes_a_fixed_number_of_queries(admin_client, topic, django_assert_max_num_queries):
    emails = [journey_email(f"Mail {n}") for n in range(8)]
    journey = Journey(name="Long", topic=topic)
    actions.save_journey(journey, [JourneyStep(position=n, key=f"m{n}", kind=StepKind.SEND_EMAIL, email=e)
                                   for n, e in enumerate(emails)])
    from campaigns.journeys.admin import diagram

    with django_assert_max_num_queries(4):
        boxes = diagram(journey)["boxes"]
        assert [b["summary"] for b in boxes][:1] == ["Send “Mail 0”"]


def test_simulator_shows_the_timeline_and_creates_nothing(admin_client, topic, make_subscriber):
    welcome = journey_email("Welcome")
    journey = Journey(name="Sim", topic=topic)
    actions.save_journey(journey, [
        JourneyStep(position=0, key="welcome", kind=StepKind.SEND_EMAIL, email=welcome),
        JourneyStep(position=1, key="later", kind=StepKind.WAIT, wait_amount=2, wait_unit="days"),
    ])
    person = make_subscriber(email="sim@example.com", timezone="Europe/Riga")
    before = (Enrollment.objects.count(), Delivery.objects.count(), Subscriber.objects.count(),
              JourneyStepStats.objects.count(), MessageStats.objects.count())
    url = f"/admin/campaigns/journey/{journey.pk}/simulate/"
    response = admin_client.get(url, {"q": "SIM@example.com", "start": "2026-12-01T10:00"})
    assert response.status_code == 200
    lines = response.context["lines"]
    assert lines[0].at == dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
    assert [line.step for line in lines if line.step] == ["welcome", "later"]
    assert lines[-1].at == dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC)
    page = response.content.decode()
    assert "Thu 03 Dec 12:00 local" in page and "Waits 2 days" in page
    assert (Enrollment.objects.count(), Delivery.objects.count(), Subscriber.objects.count(),
            JourneyStepStats.objects.count(), MessageStats.objects.count()) == before
    assert admin_client.get(url, {"q": str(person.pk)}).context["person"] == person
    assert "No subscriber" in admin_client.get(url, {"q": "nobody@example.com"}).content.decode()
    assert "YYYY-MM-DD" in admin_client.get(url, {"q": "sim@example.com", "start": "soon"}).content.decode()


def test_enrollment_list_filters_and_shows_the_path(admin_client, topic, make_subscriber):
    first, second = Journey.objects.create(name="First"), Journey.objects.create(name="Second")
    ann, bob = make_subscriber(email="ann@example.com"), make_subscriber(email="bob@example.com")
    at = "2026-12-01T12:00:00+00:00"
    done = Enrollment.objects.create(journey=first, subscriber=ann, state=EnrollmentState.COMPLETED, step_key="tips",
                                     path=[{"step": "welcome", "at": at, "outcome": "sent"},
                                           {"step": "tips", "at": at, "outcome": "sent"}])
    Enrollment.objects.create(journey=second, subscriber=bob, state=EnrollmentState.ACTIVE, step_key="wait")
    page = admin_client.get("/admin/campaigns/enrollment/", {"journey__id__exact": first.pk}).content.decode()
    assert "ann@example.com" in page and "bob@example.com" not in page
    page = admin_client.get("/admin/campaigns/enrollment/", {"journey__id__exact": second.pk,
                                                              "state__in": "active,sending",
                                                              "step_key__exact": "wait"}).content.decode()
    assert "bob@example.com" in page and "ann@example.com" not in page
    assert "ann@example.com" in admin_client.get("/admin/campaigns/enrollment/", {"q": "ann@"}).content.decode()
    detail = admin_client.get(f"/admin/campaigns/enrollment/{done.pk}/change/").content.decode()
    assert '<ol class="mk-path">' in detail and "<code>welcome</code> sent" in detail
    assert 'name="_save"' not in detail
    assert admin_client.get("/admin/campaigns/enrollment/add/").status_code == 403


def test_journey_email_screen_edits_content_shows_usage_and_previews(admin_client, topic):
    response = admin_client.post("/admin/campaigns/journeyemail/add/", {
        "name": "Cart reminder", "from_name": "Shop", "from_email": "shop@example.com", "reply_to": "",
        "layout": "", "sensitive_justification": "",
        "variants-TOTAL_FORMS": "1", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "1",
        "variants-MAX_NUM_FORMS": "1000", "variants-0-label": "A", "variants-0-subject": "You left something",
        "variants-0-preheader": "", "variants-0-from_name": "", "variants-0-html": "<p>Hi</p>" + FOOTER,
        "variants-0-text": ""})
    assert response.status_code == 302
    email = Campaign.objects.get(name="Cart reminder")
    assert email.kind == CampaignKind.JOURNEY and email.variants.get().subject == "You left something"
    # Journey emails are not campaigns: the campaign list leaves them out.
    assert email not in admin_client.get("/admin/campaigns/campaign/").context["cl"].result_list
    journey = Journey(name="Cart")
    actions.save_journey(journey, [JourneyStep(key="remind", kind=StepKind.SEND_EMAIL, email=email)])
    page = admin_client.get(f"/admin/campaigns/journeyemail/{email.pk}/change/").content.decode()
    assert "Cart</a> (step “remind”)" in page and "schedule_mode" not in page
    assert f"/admin/campaigns/journeyemail/{email.pk}/preview/" in page
    preview = admin_client.get(f"/admin/campaigns/journeyemail/{email.pk}/preview/")
    assert preview.status_code == 200 and "You left something" in preview.content.decode()
    assert "Journey emails</a>" in preview.content.decode()
    sent = admin_client.post(f"/admin/campaigns/journeyemail/{email.pk}/preview/",
                             {"variant": email.variants.get().pk, "to": "qa@example.com"})
    assert sent.status_code == 302 and sent["Location"].startswith(
        f"/admin/campaigns/journeyemail/{email.pk}/preview/?")


def test_the_email_select_offers_only_journey_emails(admin_client):
    journey_email("Journey mail")
    Campaign.objects.create(name="Newsletter", kind=CampaignKind.CAMPAIGN)
    page = admin_client.get(ADD_URL).content.decode()
    assert "Journey mail" in page and "Newsletter" not in page


def test_the_journey_list_shows_trigger_in_words_and_counts(admin_client, topic, make_subscriber):
    journey = Journey.objects.create(name="Carts", trigger="event", trigger_event="Checkout Started",
                                     trigger_filters={"category": "Shoes"}, topic=topic)
    Enrollment.objects.create(journey=journey, subscriber=make_subscriber(), state=EnrollmentState.ACTIVE)
    Enrollment.objects.create(journey=journey, subscriber=make_subscriber(), state=EnrollmentState.COMPLETED)
    page = admin_client.get("/admin/campaigns/journey/").content.decode()
    assert "Does “Checkout Started” (category = Shoes)" in page
    assert "state__in=active%2Csending" in page
    assert admin_client.get("/admin/campaigns/journey/", {"status__exact": "draft",
                                                          "trigger__exact": "event"}).status_code == 200


def test_the_email_select_links_to_the_journey_email_screen(admin_client):
    email = journey_email("Journey mail")
    page = admin_client.get(ADD_URL).content.decode()
    assert "/admin/campaigns/journeyemail/add/?_to_field=id&amp;_popup=1" in page
    assert "/admin/campaigns/campaign/add/?_to_field" not in page
    assert admin_client.get(f"/admin/campaigns/journeyemail/{email.pk}/change/?_popup=1").status_code == 200


@pytest.mark.parametrize(("kind", "amount", "unit", "words"), [
    (StepKind.WAIT, 1, "hours", "Wait 1 hour"),
    (StepKind.WAIT, 3, "days", "Wait 3 days"),
    (StepKind.WAIT, None, "weeks", "Wait ? weeks"),
    (StepKind.WAIT_EVENT, 1, "weeks", "Wait up to 1 week for “Order Completed”"),
])
def test_the_diagram_says_durations_in_plain_english(kind, amount, unit, words):
    from campaigns.journeys.admin import step_in_words

    step = JourneyStep(kind=kind, wait_amount=amount, wait_unit=unit, event_name="Order Completed")
    assert step_in_words(step) == words


def test_a_mistyped_journey_address_is_not_a_server_error(admin_client):
    for address in ("/admin/campaigns/journey/²/change/", "/admin/campaigns/journey/12/progress/change/"):
        response = admin_client.get(address, follow=True)
        assert response.status_code in (200, 404)
        assert response.status_code == 404 or "doesn’t exist" in response.content.decode()


def test_filters_that_are_not_json_say_how_to_write_them():
    from django.core.exceptions import ValidationError

    from campaigns.journeys.admin import FiltersField

    field = FiltersField(required=False)
    with pytest.raises(ValidationError) as caught:
        field.clean("{category: shoes}")
    assert "Write the filters as JSON" in str(caught.value) and '{"category": "shoes"' in str(caught.value)
    assert field.clean("") == {}
    assert field.clean('{"category": "shoes"}') == {"category": "shoes"}
