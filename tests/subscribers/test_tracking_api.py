"""Contract tests of the Segment-compatible tracking API."""

import base64
import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone

from subscribers import actions
from subscribers.models import (
    AnonymousVisitor,
    ConsentRecord,
    Event,
    Order,
    Product,
    Subscriber,
    SuppressedAddress,
    email_hash,
)


@pytest.fixture
def write_key(db):
    from subscribers import views

    views._key_cache.clear()
    return actions.create_write_key(name="Shop backend")


@pytest.fixture
def api(client, write_key):
    _, key = write_key
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    def post(path, body, **extra):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post(path, data, content_type="application/json", HTTP_AUTHORIZATION=auth, **extra)

    return post


def identify(**extra):
    body = {"userId": "u-1", "traits": {"email": "Ann@Example.com", "firstName": "Ann", "lastName": "Lee"},
            "messageId": "id-1"}
    body.update(extra)
    return body


def test_identify_creates_a_contact_without_subscribing(api):
    response = api("/v1/identify", identify(
        traits={"email": "Ann@Example.com", "name": "Ann Lee", "phone": "+37120000000", "gender": "female",
                "birthday": "1990-05-17T00:00:00Z", "title": "Designer", "company": {"name": "Northwind"},
                "address": {"country": "Latvia", "city": "Rīga", "state": "Rīga"}},
        context={"locale": "lv-LV", "timezone": "Europe/Riga"}))
    assert response.status_code == 200 and response.json()["success"] is True
    ann = Subscriber.objects.get()
    assert (ann.email, ann.external_id, ann.first_name, ann.last_name) == ("Ann@example.com", "u-1", "Ann", "Lee")
    assert (ann.country.code, ann.city, ann.region, ann.language, ann.timezone) == ("LV", "Rīga", "Rīga", "lv",
                                                                                    "Europe/Riga")
    assert (ann.phone, ann.gender, ann.birth_date, ann.job_title, ann.company) == (
        "+37120000000", "female", dt.date(1990, 5, 17), "Designer", "Northwind")
    assert ann.status == "contact" and ann.source == "tracking: Shop backend"
    assert not ConsentRecord.objects.exists()


def test_identify_updates_by_user_id_and_keeps_status(api, make_subscriber):
    s = make_subscriber(email="ann@example.com", external_id="u-1", first_name="Old", status="subscribed")
    api("/v1/identify", identify(traits={"firstName": "New", "email": "ann@example.com"}))
    s.refresh_from_db()
    assert (s.first_name, s.status) == ("New", "subscribed")
    assert Subscriber.objects.count() == 1


def test_identify_matches_by_email_and_adopts_user_id(api, make_subscriber):
    s = make_subscriber(email="ann@example.com")
    api("/v1/identify", identify())
    s.refresh_from_db()
    assert s.external_id == "u-1" and Subscriber.objects.count() == 1


def test_bad_traits_are_warnings_not_losses(api):
    response = api("/v1/identify", identify(traits={"email": "ann@example.com", "firstName": "Ann",
                                                    "address": {"country": "Atlantis"}, "birthday": "someday"},
                                            context={"timezone": "Mars/Base"}))
    body = response.json()
    assert response.status_code == 200
    warnings = " ".join(w["warning"] for w in body["warnings"])
    assert "Atlantis" in warnings and "someday" in warnings and "Mars/Base" in warnings
    assert Subscriber.objects.get().first_name == "Ann"


def test_identify_with_invalid_email_is_refused(api):
    response = api("/v1/identify", identify(traits={"email": "not-an-email"}))
    assert response.status_code == 400 and "traits.email" in response.json()["error"]
    assert not Subscriber.objects.exists()


def test_erased_address_is_not_re_added(api):
    SuppressedAddress.objects.create(email_hash=email_hash("ann@example.com"))
    body = api("/v1/identify", identify()).json()
    assert "erased" in body["warnings"][0]["warning"]
    assert not Subscriber.objects.exists()


def test_anonymous_events_attach_when_identified(api):
    api("/v1/page", {"anonymousId": "anon-7", "name": "Home", "properties": {"url": "https://shop.example/"},
                     "messageId": "p-1"})
    api("/v1/track", {"anonymousId": "anon-7", "event": "Product Viewed", "messageId": "t-1",
                      "properties": {"product_id": "sku-1", "name": "Trail shoe", "price": 89.5}})
    assert Event.objects.filter(subscriber__isnull=True, anonymous_id="anon-7").count() == 2
    api("/v1/identify", identify(anonymousId="anon-7"))
    ann = Subscriber.objects.get()
    assert set(Event.objects.filter(subscriber=ann).values_list("name", flat=True)) == {"Page Viewed",
                                                                                         "Product Viewed"}
    api("/v1/track", {"anonymousId": "anon-7", "event": "Cart Viewed", "messageId": "t-2"})
    assert Event.objects.get(name="Cart Viewed").subscriber == ann
    assert AnonymousVisitor.objects.filter(subscriber=ann).count() == 2  # anon-7 and user:u-1


def test_events_for_an_unknown_user_id_wait_for_identify(api):
    api("/v1/track", {"userId": "u-1", "event": "Signed In", "messageId": "t-1"})
    event = Event.objects.get()
    assert event.subscriber is None and event.anonymous_id == "user:u-1"
    api("/v1/identify", identify())
    event.refresh_from_db()
    assert event.subscriber == Subscriber.objects.get()


def test_alias_links_previous_id(api):
    api("/v1/track", {"anonymousId": "old-device", "event": "App Opened", "messageId": "t-1"})
    api("/v1/identify", identify())
    api("/v1/alias", {"previousId": "old-device", "userId": "u-1", "messageId": "a-1"})
    assert Event.objects.get(name="App Opened").subscriber == Subscriber.objects.get()


def test_track_stores_event_with_properties_and_corrected_time(api, make_subscriber):
    make_subscriber(external_id="u-1")
    now = timezone.now()
    sent_at = now + dt.timedelta(hours=1)  # the device's clock is an hour fast
    happened = sent_at - dt.timedelta(minutes=10)
    api("/v1/track", {"userId": "u-1", "event": "Video Played", "properties": {"title": "Intro"},
                      "timestamp": happened.isoformat(), "sentAt": sent_at.isoformat(), "messageId": "t-1",
                      "context": {"page": {"url": "https://shop.example/v"}, "ip": "198.51.100.1"}})
    event = Event.objects.get()
    assert event.properties == {"title": "Intro"}
    assert event.context == {"page": {"url": "https://shop.example/v"}}
    assert abs(event.occurred_at - (now - dt.timedelta(minutes=10))) < dt.timedelta(seconds=5)
    assert event.source.name == "Shop backend"


def test_duplicate_message_ids_are_stored_once(api):
    body = {"anonymousId": "a", "event": "Clicked", "messageId": "same"}
    api("/v1/track", body)
    response = api("/v1/batch", {"batch": [{**body, "type": "track"}, {**body, "type": "track"}]})
    assert response.json()["duplicates"] == 2
    assert Event.objects.count() == 1


def test_ecommerce_order_lifecycle_keeps_metrics_current(api, make_subscriber):
    s = make_subscriber(external_id="u-1")
    product = {"product_id": "p-1", "sku": "SH-1", "name": "Trail shoe", "category": "Shoes", "price": 50,
               "quantity": 2, "url": "https://shop.example/p-1", "image_url": "https://shop.example/p-1.jpg"}
    order = {"order_id": "o-1", "total": 100, "revenue": 90, "currency": "eur", "products": [product]}
    api("/v1/batch", {"batch": [
        {"type": "track", "userId": "u-1", "event": "Order Completed", "properties": order, "messageId": "o1",
         "timestamp": "2026-01-10T10:00:00Z"},
        {"type": "track", "userId": "u-1", "event": "Order Completed", "messageId": "o2",
         "properties": {"order_id": "o-2", "total": 50, "products": []}, "timestamp": "2026-03-01T10:00:00Z"},
    ]})
    # The same order again (new messageId) is not counted twice.
    api("/v1/track", {"userId": "u-1", "event": "Order Completed", "properties": order, "messageId": "o1-retry"})
    s.refresh_from_db()
    assert (s.order_count, s.total_spent, s.average_order_value) == (2, Decimal("150.00"), Decimal("75.00"))
    assert s.first_order_at == dt.datetime(2026, 1, 10, 10, tzinfo=dt.UTC)
    assert s.last_order_at == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    stored = Order.objects.get(order_id="o-1")
    assert (stored.total, stored.revenue, stored.currency) == (Decimal("100.00"), Decimal("90.00"), "EUR")
    item = stored.items.get()
    assert (item.quantity, item.price, item.product.name, item.product.category) == (2, Decimal("50.00"),
                                                                                     "Trail shoe", "Shoes")
    assert Product.objects.get(product_id="p-1").image_url == "https://shop.example/p-1.jpg"
    refund = {"type": "track", "userId": "u-1", "event": "Order Refunded",
              "properties": {"order_id": "o-1", "total": 30}, "messageId": "r-1"}
    api("/v1/batch", {"batch": [refund]})
    api("/v1/batch", {"batch": [refund]})  # a retried refund is applied once
    stored.refresh_from_db()
    s.refresh_from_db()
    assert (stored.refunded, stored.status) == (Decimal("30.00"), "partially_refunded")
    assert (s.total_spent, s.average_order_value) == (Decimal("120.00"), Decimal("60.00"))
    api("/v1/track", {"userId": "u-1", "event": "Order Refunded", "properties": {"order_id": "o-1"},
                      "messageId": "r-2"})
    stored.refresh_from_db()
    assert (stored.refunded, stored.status) == (Decimal("100.00"), "refunded")


def test_anonymous_order_counts_once_identified(api):
    api("/v1/track", {"anonymousId": "anon-1", "event": "Order Completed", "messageId": "o1",
                      "properties": {"order_id": "o-9", "total": 40}})
    assert Order.objects.get().subscriber is None
    api("/v1/identify", identify(anonymousId="anon-1"))
    ann = Subscriber.objects.get()
    assert Order.objects.get().subscriber == ann
    assert (ann.order_count, ann.total_spent) == (1, Decimal("40.00"))


def test_product_events_upsert_the_catalogue_without_blanking(api):
    api("/v1/track", {"anonymousId": "a", "event": "Product Viewed", "messageId": "1",
                      "properties": {"product_id": "p-1", "name": "Shoe", "category": "Shoes", "price": 10}})
    api("/v1/track", {"anonymousId": "a", "event": "Product Added", "messageId": "2",
                      "properties": {"product_id": "p-1", "price": 12}})
    product = Product.objects.get()
    assert (product.name, product.category, product.price) == ("Shoe", "Shoes", Decimal("12.00"))


def test_page_and_track_move_last_seen_forward_only(api, make_subscriber):
    s = make_subscriber(external_id="u-1")
    api("/v1/batch", {"batch": [
        {"type": "page", "userId": "u-1", "messageId": "1", "timestamp": "2026-05-01T10:00:00Z"},
        {"type": "track", "userId": "u-1", "event": "x", "messageId": "2", "timestamp": "2026-05-02T10:00:00Z"},
    ]})
    api("/v1/page", {"userId": "u-1", "messageId": "3", "timestamp": "2026-04-01T10:00:00Z"})
    s.refresh_from_db()
    assert s.last_seen_at == dt.datetime(2026, 5, 2, 10, tzinfo=dt.UTC)


def test_group_and_screen_are_stored(api):
    api("/v1/group", {"userId": "u-1", "groupId": "acme", "traits": {"name": "Acme"}, "messageId": "g"})
    api("/v1/screen", {"anonymousId": "a", "name": "Cart", "messageId": "s"})
    assert set(Event.objects.values_list("name", flat=True)) == {"Group", "Screen Viewed"}


# --- bad input ---------------------------------------------------------------


def test_missing_or_revoked_write_key_is_refused(client, write_key):
    obj, key = write_key
    no_key = client.post("/v1/track", json.dumps({"anonymousId": "a", "event": "x"}),
                         content_type="application/json")
    assert no_key.status_code == 401 and "write key" in no_key.json()["error"]
    actions.revoke_write_key(obj)
    from subscribers import views

    views._key_cache.clear()
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    revoked = client.post("/v1/track", json.dumps({"anonymousId": "a", "event": "x"}),
                          content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]
    assert not Event.objects.exists()


def test_write_key_in_body_is_accepted(client, write_key):
    _, key = write_key
    response = client.post("/v1/track", json.dumps({"writeKey": key, "anonymousId": "a", "event": "x"}),
                           content_type="application/json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/track", b"{not json", "not valid JSON"),
        ("/v1/track", {"anonymousId": "a"}, "track needs an event name"),
        ("/v1/track", {"event": "x"}, "userId or anonymousId is required"),
        ("/v1/track", {"anonymousId": "a", "event": "x", "properties": [1]}, "properties must be a JSON object"),
        ("/v1/track", {"anonymousId": "a", "event": "x", "timestamp": "yesterday"}, "not an ISO 8601"),
        ("/v1/alias", {"userId": "u"}, "alias needs previousId and userId"),
        ("/v1/group", {"userId": "u"}, "group needs a groupId"),
        ("/v1/batch", {"batch": "nope"}, "needs a “batch” array"),
        ("/v1/track", [1, 2], "must be a JSON object"),
    ],
)
def test_bad_calls_get_clear_errors(api, path, body, words):
    response = api(path, body)
    assert response.status_code == 400
    assert words in response.json()["error"] or words in json.dumps(response.json())
    assert not Event.objects.exists()


def test_batch_keeps_good_calls_and_names_bad_ones(api):
    response = api("/v1/batch", {"batch": [
        {"type": "track", "anonymousId": "a", "event": "Good", "messageId": "1"},
        {"type": "track", "anonymousId": "a", "messageId": "2"},
        {"type": "nonsense", "anonymousId": "a"},
    ]})
    body = response.json()
    assert response.status_code == 200 and body["accepted"] == 1
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert list(Event.objects.values_list("name", flat=True)) == ["Good"]


def test_size_limits_are_segments(api):
    big = {"anonymousId": "a", "event": "x", "properties": {"blob": "x" * 33000}}
    assert api("/v1/track", big).status_code == 413
    batch = {"batch": [{"type": "track", "anonymousId": "a", "event": "x", "properties": {"b": "y" * 20000}}] * 30}
    assert api("/v1/batch", batch).status_code == 413
    in_batch = api("/v1/batch", {"batch": [{**big, "type": "track"}]})
    assert in_batch.status_code == 400 and "larger than 32 KB" in in_batch.json()["errors"][0]["error"]


def test_get_is_not_allowed(client, write_key):
    assert client.get("/v1/track").status_code == 405


def test_order_refund_for_unknown_order_is_a_warning(api):
    body = api("/v1/track", {"anonymousId": "a", "event": "Order Refunded", "messageId": "r",
                             "properties": {"order_id": "missing"}}).json()
    assert "unknown order" in body["warnings"][0]["warning"]


def test_create_write_key_command_prints_a_working_key(db, capsys, client):
    from django.core.management import call_command

    call_command("create_write_key", "Website")
    key = capsys.readouterr().out.strip()
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    response = client.post("/v1/track", json.dumps({"anonymousId": "a", "event": "x"}),
                           content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert response.status_code == 200


def test_a_deadlock_victim_is_run_again_other_errors_are_not():
    from django.db import OperationalError

    from subscribers.tracking.ingest import _retry_on_deadlock

    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("deadlock detected")
        return "stored"

    assert _retry_on_deadlock(flaky) == "stored" and len(attempts) == 3

    def broken():
        attempts.append(1)
        raise OperationalError("disk full")

    attempts.clear()
    with pytest.raises(OperationalError, match="disk full"):
        _retry_on_deadlock(broken)
    assert len(attempts) == 1
