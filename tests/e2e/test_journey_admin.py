"""A marketer builds a welcome journey in the admin, turns it on, reads its diagram and simulates it for a person.

Set SCREENSHOTS=1 to write docs/screenshots/journey-builder.png, journey-diagram.png and journey-simulator.png.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.content.models import ContentBlock, EmailLayout, Variant
from campaigns.content.starter import create_starter_content
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
from preferences.models import Topic, TopicSubscription
from subscribers.models import ConsentRecord, Subscriber
from tests.e2e.conftest import SCREENSHOT_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JOURNEY_NAME = "New subscriber welcome"


@pytest.fixture
def content(settings: Any) -> dict[str, Any]:
    """Two journey emails, a topic, and one person who may get marketing mail."""
    settings.QUIET_HOURS = ""
    create_starter_content(EmailLayout, ContentBlock)  # the flush of earlier transactional tests removed it
    topic = Topic.objects.create(name="Newsletter", slug="newsletter", description="News and tips")
    emails = {}
    for name, subject in (("Welcome", "Welcome aboard, {{ first_name|default:\"friend\" }}"),
                          ("Getting started tips", "Three tips to get started")):
        email = JourneyEmail.objects.create(name=name, from_email="hello@example.com", from_name="Northwind")
        Variant.objects.create(campaign=email, label="A", subject=subject,
                               html=f"<p>Hi {{{{ first_name|default:\"there\" }}}},</p><p>{subject}.</p>")
        emails[name] = email
    person = Subscriber.objects.create(email="lena@example.com", first_name="Lena", timezone="Europe/Riga",
                                       status="subscribed")
    ConsentRecord.objects.create(subscriber=person, purpose="email_marketing", granted=True, method="form",
                                 occurred_at=timezone.now() - dt.timedelta(days=3), notice_version="v1")
    TopicSubscription.objects.create(subscriber=person, topic=topic, subscribed=True)
    return {"topic": topic, "emails": emails, "person": person}


def shoot_down_to(page: Any, bottom: Any, name: str) -> None:
    """Write a PNG of the page from the top down to ``bottom`` into docs/screenshots/, only when SCREENSHOTS=1."""
    if os.environ.get("SCREENSHOTS") != "1":
        return
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    box = bottom.bounding_box()
    scroll = page.evaluate("window.scrollY")
    height = box["y"] + scroll + box["height"] + 24
    page.screenshot(path=str(SCREENSHOT_DIR / name), full_page=True, animations="disabled",
                    clip={"x": 0, "y": 0, "width": page.viewport_size["width"], "height": height})


def step(page: Any, row: int, field: str) -> Any:
    return page.locator(f"#id_steps-{row}-{field}")


def add_step(page: Any, row: int, kind: str) -> None:
    page.locator("#steps-group .add-row a").click()
    step(page, row, "kind").select_option(label=kind)


def test_build_turn_on_read_the_diagram_and_simulate(staff_page: Any, content: dict[str, Any],
                                                     screenshot: Any) -> None:
    page = staff_page

    # 1. Build: name, topic, trigger; welcome email, wait two days, tips email.
    page.goto("/admin/campaigns/journey/")
    page.locator(".object-tools").get_by_role("link", name=re.compile("Add journey")).click()
    page.wait_for_url("**/admin/campaigns/journey/add/")
    page.fill("#id_name", JOURNEY_NAME)
    page.fill("#id_description", "Greets people who subscribe and shows them around.")
    page.select_option("#id_topic", label="Newsletter")
    # Only the chosen trigger's fields show.
    page.select_option("#id_trigger", label="Does something (an event)")
    expect(page.locator("#id_trigger_event")).to_be_visible()
    expect(page.locator("#id_inactivity_days")).to_be_hidden()
    page.select_option("#id_trigger", label="Subscribes (confirmed signup)")
    expect(page.locator("#id_trigger_event")).to_be_hidden()

    step(page, 0, "kind").select_option(label="Send an email")
    expect(step(page, 0, "key")).to_have_value("email-1")  # a key is suggested for the kind
    step(page, 0, "key").fill("welcome")
    expect(step(page, 0, "email")).to_be_visible()
    expect(step(page, 0, "wait_amount")).to_be_hidden()
    step(page, 0, "email").select_option(label="Welcome")
    step(page, 0, "label").fill("Say hello and set expectations")

    add_step(page, 1, "Wait for a while")
    expect(step(page, 1, "position")).to_have_value("1")
    expect(step(page, 1, "key")).to_have_value("wait-1")
    expect(step(page, 1, "email")).to_be_hidden()
    step(page, 1, "wait_amount").fill("2")
    step(page, 1, "wait_unit").select_option(label="days")

    add_step(page, 2, "Send an email")
    expect(step(page, 2, "key")).to_have_value("email-1")
    step(page, 2, "key").fill("tips")
    step(page, 2, "email").select_option(label="Getting started tips")

    # A branch added on the page gets the segment rule builder for its condition; then it is removed again.
    add_step(page, 3, "Branch on a condition (yes / no)")
    branch = page.locator("#steps-3")
    expect(branch.get_by_role("button", name="Add a rule", exact=True)).to_be_visible()
    expect(step(page, 3, "condition")).to_be_hidden()  # the builder edits the JSON from now on
    expect(step(page, 3, "else_step")).to_be_visible()
    branch.locator(".inline-deletelink").click()
    expect(page.locator("#steps-3")).to_have_count(0)

    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_url(re.compile(r".*/admin/campaigns/journey/\d+/change/$"))
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator(".errornote")).to_have_count(0)
    journey = Journey.objects.get(name=JOURNEY_NAME)
    assert list(journey.steps.order_by("position").values_list("key", "kind", "email__name", "wait_amount")) == [
        ("welcome", "send_email", "Welcome", None), ("wait-1", "wait", None, 2),
        ("tips", "send_email", "Getting started tips", None)]
    assert journey.status == JourneyStatus.DRAFT and journey.created_by.username == "manager"
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "journey-builder.png")

    # 2. A broken edit is refused with the step named, and nothing changes.
    step(page, 1, "wait_amount").fill("")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator("#steps-group .errorlist.nonform")).to_contain_text(
        "Step “wait-1”: say how long to wait.")
    assert journey.steps.get(key="wait-1").wait_amount == 2

    # 3. Turn it on; the diagram shows the three steps in order.
    page.goto(f"/admin/campaigns/journey/{journey.pk}/change/")
    page.locator(".jd-controls input[value='Turn on']").click()
    page.wait_for_url(f"**/admin/campaigns/journey/{journey.pk}/change/")
    expect(page.locator(".messagelist")).to_contain_text("Turned on")
    expect(page.locator(".jd-status")).to_have_text("Active")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE
    diagram = page.get_by_test_id("journey-diagram")
    expect(diagram.locator(".jd-node[data-step]")).to_have_count(3)
    expect(diagram.locator("[data-step=welcome]")).to_contain_text("Send “Welcome”")
    expect(diagram.locator("[data-step=wait-1]")).to_contain_text("Wait 2 days")
    expect(diagram.locator("[data-step=wait-1] .jd-paths")).to_contain_text("→ tips")

    # 4. Simulate it for Lena: the welcome now, the tips two days later; nothing is written.
    page.locator(".object-tools").get_by_role("link", name="Simulate for a person").click()
    page.wait_for_url(f"**/admin/campaigns/journey/{journey.pk}/simulate/")
    page.get_by_label("Person").fill("lena@example.com")
    page.get_by_label("Enters at (UTC)").fill("2026-12-01T08:00")
    page.get_by_role("button", name="Simulate").click()
    timeline = page.get_by_test_id("simulation")
    expect(timeline).to_contain_text("sends “Welcome”")
    expect(timeline).to_contain_text("Tue 01 Dec 2026, 08:00 UTC")
    expect(timeline).to_contain_text("Thu 03 Dec 10:00 local")
    expect(timeline).to_contain_text("Sends “Getting started tips”")
    expect(timeline).to_contain_text("Completes the journey.")
    assert not Enrollment.objects.filter(journey=journey).exists()
    assert not Delivery.objects.exists()
    screenshot(page, "journey-simulator.png")


def test_diagram_of_a_running_journey_with_a_split(staff_page: Any, content: dict[str, Any]) -> None:
    """A journey that has run for a while: per-step counts, email results and the two paths of a split."""
    page = staff_page
    emails = content["emails"]
    journey = Journey(name="Welcome with an A/B test", topic=content["topic"], exit_event="Order Completed",
                      description="Compares a short and a long first email.")
    actions.save_journey(journey, [
        JourneyStep(position=0, key="ab", kind=StepKind.SPLIT, split_percent=50, else_step="welcome-long",
                    label="Short or long welcome?"),
        JourneyStep(position=1, key="welcome-short", kind=StepKind.SEND_EMAIL, email=emails["Welcome"],
                    next_step="wait"),
        JourneyStep(position=2, key="welcome-long", kind=StepKind.SEND_EMAIL, email=emails["Getting started tips"]),
        JourneyStep(position=3, key="wait", kind=StepKind.WAIT, wait_amount=3, wait_unit="days"),
        JourneyStep(position=4, key="opened", kind=StepKind.BRANCH, engagement_step="welcome-short",
                    engagement="opened", else_step="bye", label="Did they read the short one?"),
        JourneyStep(position=5, key="tag", kind=StepKind.UPDATE_PROFILE, update_action="add_tag",
                    update_key="engaged"),
        JourneyStep(position=6, key="bye", kind=StepKind.EXIT),
    ])
    actions.activate_journey(journey)
    people = [Subscriber.objects.create(email=f"p{n}@example.com", status="subscribed") for n in range(9)]
    places = ["wait"] * 5 + ["opened", "welcome-long"]
    for person, place in zip(people, places, strict=False):
        Enrollment.objects.create(journey=journey, subscriber=person, step_key=place, state=EnrollmentState.ACTIVE)
    Enrollment.objects.create(journey=journey, subscriber=people[7], state=EnrollmentState.COMPLETED, step_key="bye")
    Enrollment.objects.create(journey=journey, subscriber=people[8], state=EnrollmentState.EXITED, step_key="wait")
    for key, passed, took_else, exited in (("ab", 1240, 618, 0), ("welcome-short", 620, 0, 2),
                                           ("welcome-long", 612, 0, 4), ("wait", 1180, 0, 31),
                                           ("opened", 1149, 402, 0), ("tag", 747, 0, 0), ("bye", 402, 0, 0)):
        JourneyStepStats.objects.create(journey=journey, step_key=key, passed=passed, took_else=took_else,
                                        exited=exited, sent=passed if key.startswith("welcome") else 0)
    for key, sent, delivered, opens, clicks, unsubscribes in (("welcome-short", 620, 611, 352, 97, 2),
                                                              ("welcome-long", 612, 604, 288, 61, 5)):
        MessageStats.objects.create(message_key=actions.message_key(journey.pk, key, 1), sent=sent,
                                    delivered=delivered, unique_opens=opens, unique_clicks=clicks,
                                    unsubscribes=unsubscribes)

    page.goto(f"/admin/campaigns/journey/{journey.pk}/change/")
    diagram = page.get_by_test_id("journey-diagram")
    split = diagram.locator("[data-step=ab]")
    expect(split.locator(".jd-path-1")).to_contain_text("A622 → welcome-short")
    expect(split.locator(".jd-path-2")).to_contain_text("B618 → welcome-long")
    expect(diagram.locator("[data-step=welcome-short] .jd-email")).to_contain_text("15.9%")
    expect(diagram.locator("[data-step=wait] .jd-counts").first).to_contain_text("waiting now5")
    diagram.locator("[data-step=wait] a", has_text="5").click()
    page.wait_for_url(re.compile(r".*/admin/campaigns/enrollment/\?.*step_key__exact=wait.*"))
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    page.go_back()
    page.evaluate("window.scrollTo(0, 0)")
    shoot_down_to(page, diagram, "journey-diagram.png")
