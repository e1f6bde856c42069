"""A marketer builds a segment in the admin's rule builder, watches the live preview, and saves it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.segments.models import Segment
from subscribers.models import Event

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXPECTED_RULES = {"match": "all", "rules": [
    {"field": "country", "op": "in", "value": ["LV", "LT"]},
    {"match": "any", "rules": [
        {"field": "order_count", "op": "gte", "value": 2},
        {"field": "event", "op": "at_least", "value": 1, "event": "Product Viewed", "within_days": 30},
    ]},
]}


def rule(page: Any, path: str) -> Any:
    return page.get_by_role("group", name=f"Rule {path}", exact=True)


def choose_field(row: Any, field: str, op: str) -> None:
    row.get_by_role("combobox", name="Field", exact=True).select_option(label=field)
    row.get_by_role("combobox", name="Operator", exact=True).select_option(label=op)


def build_baltic_buyers(page: Any) -> None:
    """Country is any of Latvia, Lithuania AND (orders ≥ 2 OR viewed a product in the last 30 days), by clicking."""
    page.get_by_role("button", name="Add a rule", exact=True).click()
    country = rule(page, "1")
    choose_field(country, "Country", "is any of")
    choices = country.get_by_role("searchbox", name="Filter country choices")
    for name in ("Latvia", "Lithuania"):
        choices.fill(name[:4])
        country.get_by_role("checkbox", name=name, exact=True).check()
    expect(country.get_by_role("button", name="Remove Latvia")).to_be_visible()
    expect(country.get_by_role("button", name="Remove Lithuania")).to_be_visible()

    page.get_by_role("button", name="Add a group", exact=True).click()
    group = page.get_by_role("group", name="Group 2", exact=True)
    group.get_by_role("combobox", name="Group 2: match").select_option(label="any of")

    orders = rule(page, "2.1")
    choose_field(orders, "Number of orders", "≥")
    orders.get_by_role("spinbutton", name="Value").fill("2")

    page.get_by_role("button", name="Add a rule to group 2", exact=True).click()
    viewed = rule(page, "2.2")
    choose_field(viewed, "Performed event", "at least N times")
    viewed.get_by_role("spinbutton", name="Value").fill("1")
    # The event name autocompletes from the events people performed.
    event = viewed.get_by_label("Event", exact=True)
    event.fill("Product")
    expect(viewed.locator("datalist option[value='Product Viewed']")).to_have_count(1)
    event.fill("Product Viewed")
    viewed.get_by_label("Within the last N days (empty: ever)", exact=True).fill("30")


def test_build_preview_and_save_a_nested_segment(staff_page: Any, make_subscriber: Any, screenshot: Any) -> None:
    now = timezone.now()
    matching = [
        make_subscriber(country="LV", order_count=3, first_name="Ilze", last_name="Ozola"),
        make_subscriber(country="LV", order_count=2, first_name="Jānis", last_name="Kalniņš"),
        make_subscriber(country="LT", order_count=0, first_name="Rūta", last_name="Petraitė",
                        last_seen_at=now - dt.timedelta(days=5)),
    ]
    Event.objects.create(subscriber=matching[2], name="Product Viewed", occurred_at=now - dt.timedelta(days=5),
                         properties={"category": "Shoes"})
    old_viewer = make_subscriber(country="LT", order_count=1)
    Event.objects.create(subscriber=old_viewer, name="Product Viewed", occurred_at=now - dt.timedelta(days=40))
    other_event = make_subscriber(country="LV", order_count=0)
    Event.objects.create(subscriber=other_event, name="Order Completed", occurred_at=now - dt.timedelta(days=2))
    make_subscriber(country="EE", order_count=5)  # the wrong country
    make_subscriber(country="LV", order_count=1)  # neither enough orders nor a view
    make_subscriber(country="", order_count=4)  # no country at all

    page = staff_page
    page.goto("/admin/campaigns/segment/add/")
    builder = page.locator(".segment-builder")
    count = builder.locator(".sb-count-number")
    expect(count).to_have_text("8")  # no rules yet: everyone
    page.fill("#id_name", "Baltic buyers and browsers")

    build_baltic_buyers(page)

    expect(builder.locator(".sb-errors")).to_be_hidden()
    expect(count).to_have_text(str(len(matching)))
    expect(builder.locator(".sb-count-time")).to_contain_text("counted in")
    sample = builder.locator(".sb-sample tbody tr")
    expect(sample).to_have_count(len(matching))
    ilze = builder.locator(".sb-sample").get_by_role("link", name="Ilze Ozola")
    expect(ilze).to_have_attribute("href", f"/admin/subscribers/subscriber/{matching[0].pk}/change/")
    expect(builder.locator(".sb-sample thead")).to_contain_text("Country")
    # A Marketing manager may read the SQL and the plan, folded away until asked for.
    explain = builder.locator("details.sb-explain")
    expect(explain).to_be_visible()
    explain.locator("summary").click()
    expect(explain.locator("pre").first).to_contain_text("SELECT")
    explain.locator("summary").click()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "segment-builder.png")

    # Nothing sticks out sideways on a laptop or a narrow window.
    for width in (1280, 800):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), width

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/campaigns/segment/")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    segment = Segment.objects.get(name="Baltic buyers and browsers")
    rules = segment.rules
    country_rule = rules["rules"][0]
    assert sorted(country_rule["value"]) == ["LT", "LV"]
    country_rule["value"] = ["LV", "LT"]
    assert rules == EXPECTED_RULES


def test_an_invalid_pattern_names_the_rule_and_saving_is_refused(staff_page: Any, make_subscriber: Any) -> None:
    make_subscriber(first_name="Anna")
    page = staff_page
    page.goto("/admin/campaigns/segment/add/")
    builder = page.locator(".segment-builder")
    expect(builder.locator(".sb-count-number")).to_have_text("1")
    page.fill("#id_name", "Broken pattern")

    page.get_by_role("button", name="Add a rule", exact=True).click()
    first_name = rule(page, "1")
    choose_field(first_name, "First name", "matches pattern")
    value = first_name.get_by_role("textbox", name="Value")
    value.fill("(")
    value.press("Enter")  # Enter in the builder does not submit the form

    errors = builder.locator(".sb-errors")
    expect(errors).to_be_visible()
    expect(errors).to_contain_text("Rule 1 (First name)")
    expect(errors).to_contain_text("is not a valid pattern")
    expect(builder.locator(".sb-count-number")).to_have_text("—")
    expect(first_name).to_have_class(re.compile(r"\bsb-invalid\b"))
    expect(first_name.locator(".sb-error")).to_contain_text("is not a valid pattern")
    expect(page.locator(".errornote")).to_have_count(0)  # not submitted yet

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-rules .errorlist")).to_contain_text("Rule 1 (First name)")
    expect(page.locator(".field-rules .errorlist")).to_contain_text("is not a valid pattern")
    assert re.search(r"/admin/campaigns/segment/add/$", page.url)
    assert not Segment.objects.exists()
    # The refused rules come back into the builder as they were, ready to fix.
    expect(rule(page, "1").get_by_role("textbox", name="Value")).to_have_value("(")
    rule(page, "1").get_by_role("textbox", name="Value").fill("^An")
    expect(builder.locator(".sb-count-number")).to_have_text("1")
    expect(builder.locator(".sb-errors")).to_be_hidden()
