"""Segment admin: builder endpoints, saving with errors, export permission, refused deletion, bulk actions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth.models import Group, User

from campaigns.segments import actions
from campaigns.segments.models import Segment
from preferences.models import TopicSubscription
from subscribers.models import Event, Product
from subscribers.roles import MARKETER, MARKETING_MANAGER

LATVIA = {"match": "all", "rules": [{"field": "country", "op": "equals", "value": "LV"}]}


def login(client, role: str):
    user = User.objects.create_user(username=role.replace(" ", "_").lower(), password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client


@pytest.fixture
def manager(client, db):
    return login(client, MARKETING_MANAGER)


@pytest.fixture
def marketer(client, db):
    return login(client, MARKETER)


def test_segment_list_shows_prebuilt_segments_and_counts(manager, make_subscriber):
    make_subscriber(country="LV")
    actions.recount_segments()
    page = manager.get("/admin/campaigns/segment/").content.decode()
    assert "Loyal customers" in page and "Cart abandoners" in page and "ago in" in page
    assert "Order count" not in page  # rules are summarized in words
    assert "Number of orders is 1" in page


def test_add_segment_through_the_form(manager, make_subscriber):
    make_subscriber(country="LV")
    response = manager.post("/admin/campaigns/segment/add/", {
        "name": "Latvians", "description": "", "rules": json.dumps(LATVIA), "track_membership": "on"})
    assert response.status_code == 302
    segment = Segment.objects.get(name="Latvians")
    assert segment.rules == LATVIA and segment.track_membership and segment.created_by is not None


def test_invalid_rules_are_refused_on_save_naming_the_rule(manager):
    bad = {"match": "all", "rules": [{"field": "first_name", "op": "matches", "value": "("}]}
    response = manager.post("/admin/campaigns/segment/add/", {"name": "Bad", "rules": json.dumps(bad)})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Rule 1 (First name)" in page and "not a valid pattern" in page
    assert not Segment.objects.filter(name="Bad").exists()
    response = manager.post("/admin/campaigns/segment/add/", {"name": "Bad", "rules": "{not json"})
    assert response.status_code == 200 and not Segment.objects.filter(name="Bad").exists()


def test_catalogue_describes_fields_operators_and_presets(manager):
    data = manager.get("/admin/campaigns/segment/builder/catalogue/").json()
    fields = {f["key"]: f for f in data["fields"]}
    assert {"country", "event", "bought", "cart_abandoned", "lifecycle_stage", "segment", "random_bucket"} <= set(
        fields)
    assert [o["key"] for o in fields["country"]["ops"]][:2] == ["in", "not_in"]
    assert fields["country"]["ops"][0]["value"] == "multichoice"
    assert fields["created_at"]["ops"][4]["value"] == "days"
    assert "LV" in data["presets"]["EU"] and "NO" in data["presets"]["EEA"] and "NO" not in data["presets"]["EU"]
    assert data["can_explain"] is True


def test_preview_endpoint(manager, make_subscriber):
    make_subscriber(country="LV", email="ann@example.com")
    url = "/admin/campaigns/segment/builder/preview/"
    data = manager.post(url, json.dumps({"rules": LATVIA, "segment_id": None}), content_type="application/json").json()
    assert data["count"] == 1 and data["sample"][0]["values"][0] == "ann@example.com" and data["sql"]
    bad = manager.post(url, "nope", content_type="application/json")
    assert bad.status_code == 400 and bad.json()["errors"] == ["The preview needs the rules as JSON."]
    assert manager.get(url).status_code == 405


def test_marketers_see_no_sql_plan(marketer, make_subscriber):
    url = "/admin/campaigns/segment/builder/preview/"
    data = marketer.post(url, json.dumps({"rules": LATVIA}), content_type="application/json").json()
    assert data["sql"] == "" and data["plan"] == ""
    assert marketer.get("/admin/campaigns/segment/builder/catalogue/").json()["can_explain"] is False


def test_suggestions_for_events_categories_and_properties(manager, make_subscriber):
    person = make_subscriber()
    now = dt.datetime.now(dt.UTC)
    Event.objects.create(subscriber=person, name="Product Viewed", occurred_at=now, properties={"category": "Shoes"})
    Event.objects.create(subscriber=person, name="Checkout Started", occurred_at=now, properties={})
    Product.objects.create(product_id="P1", sku="SH-1", name="Trail shoe", category="Shoes")
    url = "/admin/campaigns/segment/builder/suggest/"
    assert manager.get(url, {"kind": "event", "q": "view"}).json()["results"] == [["Product Viewed",
                                                                                   "Product Viewed"]]
    assert manager.get(url, {"kind": "category", "q": "sh"}).json()["results"] == [["Shoes", "Shoes"]]
    assert manager.get(url, {"kind": "product", "q": "trail"}).json()["results"] == [["P1", "Trail shoe (P1)"]]
    assert manager.get(url, {"kind": "property", "event": "Product Viewed"}).json()["results"] == [
        ["category", "category"]]


def test_member_export_needs_the_export_permission(client, make_subscriber, db):
    make_subscriber(country="LV", email="ann@example.com", first_name="=HYPERLINK(1)")
    make_subscriber(country="EE", email="eve@example.com")
    segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA))
    url = f"/admin/campaigns/segment/{segment.pk}/members.csv"
    login(client, MARKETER)
    assert client.get(url).status_code == 403
    client.logout()
    login(client, MARKETING_MANAGER)
    response = client.get(url)
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    lines = body.strip().splitlines()
    assert lines[0].startswith("email,first_name") and len(lines) == 2
    assert "ann@example.com" in lines[1] and "'=HYPERLINK(1)" in lines[1] and "eve@" not in body


def test_deleting_a_used_segment_shows_where_it_is_used(manager, db):
    baltic = actions.save_segment(Segment(name="Baltic", rules=LATVIA))
    actions.save_segment(Segment(name="Baltic VIPs", rules={"match": "all", "rules": [
        {"field": "segment", "op": "in_segment", "value": baltic.pk}]}))
    url = f"/admin/campaigns/segment/{baltic.pk}/delete/"
    page = manager.get(url).content.decode()
    assert "cannot be deleted" in page and "segment “Baltic VIPs”" in page
    manager.post(url, {"post": "yes"})
    assert Segment.objects.filter(pk=baltic.pk).exists()
    loyal = Segment.objects.get(system_key="loyal_customers")
    assert "lifecycle stages" in manager.get(f"/admin/campaigns/segment/{loyal.pk}/delete/").content.decode()


def test_bulk_add_segment_members_to_topic(manager, make_subscriber, topic):
    ann = make_subscriber(country="LV")
    make_subscriber(country="EE")
    opted_out = make_subscriber(country="LV")
    TopicSubscription.objects.create(subscriber=opted_out, topic=topic, subscribed=False)
    segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA))
    form = manager.post("/admin/campaigns/segment/", {"action": "add_members_to_topic",
                                                      "_selected_action": [segment.pk]})
    assert "Add the members of Latvia" in form.content.decode()
    manager.post("/admin/campaigns/segment/", {"action": "add_members_to_topic", "_selected_action": [segment.pk],
                                               "apply": "1", "topic": topic.pk})
    assert set(TopicSubscription.objects.filter(topic=topic, subscribed=True).values_list(
        "subscriber_id", flat=True)) == {ann.pk}


def test_refresh_action_and_subscriber_page_show_membership(manager, make_subscriber):
    ann = make_subscriber(country="LV", order_count=4, total_spent=400, first_order_at=dt.datetime.now(dt.UTC),
                          last_order_at=dt.datetime.now(dt.UTC))
    segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA, track_membership=True))
    response = manager.post("/admin/campaigns/segment/", {"action": "refresh_selected",
                                                          "_selected_action": [segment.pk]}, follow=True)
    assert "1 members, 1 entered, 0 left" in response.content.decode()
    assert "(first)" in manager.get(f"/admin/campaigns/segment/{segment.pk}/change/").content.decode()
    page = manager.get(f"/admin/subscribers/subscriber/{ann.pk}/change/").content.decode()
    assert "Loyal customer" in page and "member since" in page
