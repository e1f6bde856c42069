"""Management commands: import_subscribers, seed_demo, create_demo_login."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Max, Min, Q, Sum

from subscribers import demo
from subscribers.demo import seed_demo
from subscribers.models import ConsentRecord, Event, Order, OrderItem, Subscriber

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def test_import_command_dry_run_then_real(db, write_csv, topic, capsys):
    path = write_csv("Email,First Name\nann@example.com,Ann\nbad,Bo\n")
    call_command("import_subscribers", str(path), "--dry-run", "--topic", "offers")
    out = capsys.readouterr().out
    assert "new: 1" in out and "errors: 1" in out and "row 3, column Email" in out
    assert not Subscriber.objects.exists()
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_subscribers", str(path))
    report = path.with_name("report.csv")
    call_command("import_subscribers", str(path), "--skip-bad-rows", "--consent-notice", "v9", "--topic", "offers",
                 "--report", str(report))
    assert Subscriber.objects.get().topic_subscriptions.get().topic == topic
    assert ConsentRecord.objects.filter(notice_version="v9").count() == 2  # marketing + topic
    assert "3,,error,Email" in report.read_text()


def test_import_command_explains_unknown_topic_and_missing_file(db, write_csv):
    with pytest.raises(CommandError, match="No topic with slug"):
        call_command("import_subscribers", str(write_csv("Email\na@example.com\n")), "--topic", "nope")
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_subscribers", "/nonexistent.csv")


def test_seed_demo_is_reproducible_and_idempotent(db):
    call_command("seed_demo", "--subscribers", "120", "--seed", "7")
    first = list(Subscriber.objects.order_by("external_id").values_list("email", "country", "language", "status"))
    call_command("seed_demo", "--subscribers", "120", "--seed", "7")
    assert Subscriber.objects.count() == 120
    _clear()
    call_command("seed_demo", "--subscribers", "120", "--seed", "7")
    again = list(Subscriber.objects.order_by("external_id").values_list("email", "country", "language", "status"))
    assert first == again
    languages = {row[2] for row in again}
    assert {"en", "pl", "tr"} <= languages
    assert len({row[1] for row in again}) >= 5
    statuses = {row[3] for row in again}
    assert {"subscribed", "unsubscribed"} <= statuses
    # Everyone who is subscribed has a consent record.
    subscribed = Subscriber.objects.filter(status="subscribed")
    assert not subscribed.exclude(consent_records__purpose="email_marketing").exists()


def _clear() -> None:
    Subscriber.objects.all().delete()
    Order.objects.all().delete()  # orders outlive their buyer (revenue stays true); clear them for a re-seed


def _snapshot() -> dict[str, list[tuple]]:
    """Return every seeded row without database ids (people by external id), in a stable order."""
    people = list(Subscriber.objects.order_by("external_id").values_list(
        "external_id", "email", "created_at", "order_count", "total_spent", "average_order_value", "first_order_at",
        "last_order_at", "last_seen_at", "last_open_at", "last_click_at", "emails_received", "attributes"))
    events = sorted(
        (e.subscriber.external_id, e.name, e.occurred_at, repr(sorted(e.properties.items())), repr(e.context))
        for e in Event.objects.select_related("subscriber"))
    orders = sorted(Order.objects.values_list("order_id", "subscriber__external_id", "total", "occurred_at"))
    items = sorted(OrderItem.objects.values_list("order__order_id", "product__product_id", "sku", "name",
                                                 "category", "price", "quantity"))
    consents = sorted(ConsentRecord.objects.values_list("subscriber__external_id", "purpose", "topic__slug",
                                                        "granted", "occurred_at"), key=repr)
    return {"people": people, "events": events, "orders": orders, "items": items, "consents": consents}


def test_seed_demo_same_seed_gives_the_same_rows_and_a_resumed_run_matches_a_full_one(db):
    assert seed_demo(subscribers=90, seed=3, now=NOW) == 90
    full = _snapshot()
    assert len(full["events"]) > 500 and len(full["orders"]) > 30
    _clear()
    assert seed_demo(subscribers=90, seed=3, now=NOW) == 90
    assert _snapshot() == full
    _clear()
    # Interrupted after 40 people, then resumed: the same rows as one run.
    assert seed_demo(subscribers=40, seed=3, now=NOW) == 40
    assert seed_demo(subscribers=90, seed=3, now=NOW) == 50
    assert _snapshot() == full
    _clear()
    assert seed_demo(subscribers=90, seed=4, now=NOW) == 90
    assert _snapshot()["events"] != full["events"]


def test_seed_demo_behaviour_has_every_kind_of_shopper(db):
    call_command("seed_demo", "--subscribers", "300")
    assert Subscriber.objects.filter(order_count__gte=3).exists()
    assert Subscriber.objects.filter(order_count=1).exists()
    assert Subscriber.objects.filter(order_count=0, last_seen_at__isnull=False).exists()  # browsers
    assert Subscriber.objects.filter(last_seen_at__isnull=True).exists()  # dormant
    assert Event.objects.filter(name="Product Added").exists()  # cart abandoners
    assert Event.objects.filter(name="Order Completed").count() == Order.objects.count()


def test_seed_demo_profile_metrics_agree_with_orders_and_events(db):
    seed_demo(subscribers=400, now=NOW)
    people = Subscriber.objects.annotate(
        orders_n=Count("orders"), orders_sum=Sum("orders__total"), first=Min("orders__occurred_at"),
        last=Max("orders__occurred_at"))
    for person in people:
        assert person.order_count == person.orders_n
        assert person.total_spent == (person.orders_sum or Decimal("0"))
        assert person.first_order_at == person.first and person.last_order_at == person.last
        if person.order_count:
            expected = (person.total_spent / person.order_count).quantize(Decimal("0.01"))
            assert person.average_order_value == expected
        if person.last_click_at:
            assert person.last_open_at <= person.last_click_at <= NOW
        if person.last_open_at:
            assert person.created_at <= person.last_open_at <= NOW and person.emails_received > 0
    last_seen = dict(Event.objects.values("subscriber").annotate(last=Max("occurred_at"))
                     .values_list("subscriber", "last"))
    assert last_seen
    for pk, seen in Subscriber.objects.values_list("pk", "last_seen_at"):
        assert last_seen.get(pk) == seen
    assert not Event.objects.filter(occurred_at__gt=NOW).exists()
    # Every order has its Order Completed event, with the same total, and items.
    completed = {e.properties["order_id"]: (e.subscriber_id, Decimal(str(e.properties["total"])), e.occurred_at)
                 for e in Event.objects.filter(name="Order Completed")}
    orders = {o.order_id: (o.subscriber_id, o.total, o.occurred_at) for o in Order.objects.all()}
    assert completed == orders
    assert not Order.objects.filter(items__isnull=True).exists()
    assert OrderItem.objects.aggregate(n=Count("id", filter=Q(product__isnull=True) | Q(sku="") | Q(name="")
                                           | Q(category="")))["n"] == 0
    for order in Order.objects.prefetch_related("items")[:50]:
        assert order.total == sum(i.price * i.quantity for i in order.items.all())


def test_seed_demo_events_carry_the_properties_segment_rules_use(db):
    seed_demo(subscribers=200, now=NOW)
    names = set(Event.objects.values_list("name", flat=True))
    assert names == {"Page Viewed", "Product Viewed", "Product Added", "Checkout Started", "Order Completed"}
    for event in Event.objects.filter(name__in=["Product Viewed", "Product Added"])[:200]:
        assert {"product_id", "name", "category", "price"} <= set(event.properties)
        assert isinstance(event.properties["price"], float)
        assert event.context["page"]["url"].startswith("https://shop.example/")
    assert Event.objects.filter(name="Product Added", properties__quantity=2).exists()
    assert Event.objects.filter(name="Product Viewed", properties__price__gt=100).exists()
    for event in Event.objects.filter(name="Page Viewed")[:100]:
        assert {"name", "path", "url"} <= set(event.properties)
    assert Event.objects.filter(name="Page Viewed", context__campaign__medium="email").exists()


def test_seed_demo_cart_abandoners_left_a_recent_cart_and_did_not_order_since(db):
    seed_demo(subscribers=600, now=NOW)
    recent = NOW - dt.timedelta(hours=72)
    last_cart = dict(Event.objects.filter(name__in=["Product Added", "Checkout Started"], occurred_at__gte=recent)
                     .values("subscriber").annotate(last=Max("occurred_at")).values_list("subscriber", "last"))
    last_order = dict(Subscriber.objects.filter(pk__in=last_cart).values_list("pk", "last_order_at"))
    abandoners = {pk for pk, at in last_cart.items() if not last_order[pk] or last_order[pk] < at}
    assert len(abandoners) >= 20  # 8 % of people
    assert all(last_cart[pk] <= NOW - dt.timedelta(hours=2) for pk in abandoners)
    assert any(last_order[pk] for pk in abandoners)  # some of them bought before
    # Everyone else with a recent cart checked it out in the same visit.
    for pk in set(last_cart) - abandoners:
        assert last_order[pk] - last_cart[pk] < dt.timedelta(hours=1)


def test_seed_demo_repeat_buyers_order_at_a_regular_interval_and_browse_between(db):
    seed_demo(subscribers=400, now=NOW)
    repeat = Subscriber.objects.filter(order_count__gte=5).first()
    times = list(Order.objects.filter(subscriber=repeat).order_by("occurred_at").values_list("occurred_at",
                                                                                               flat=True))
    gaps = [(b - a).days for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) - min(gaps) <= 15  # one interval, give or take a week
    views = Event.objects.filter(subscriber=repeat, name="Page Viewed").count()
    assert views > len(times)  # a visit for every order, and visits in between


def test_seed_demo_volume_per_person(db):
    """A benchmark-sized seed relies on these averages: ≥ 10 events and ≥ 0.5 orders per person."""
    seed_demo(subscribers=1000, now=NOW)
    assert Event.objects.count() >= 10 * 1000
    assert Order.objects.count() >= 500
    assert Order.objects.count() <= 2 * 1000


def test_seed_demo_people_only(db):
    seed_demo(subscribers=50, behaviour=False, now=NOW)
    assert Subscriber.objects.count() == 50
    assert not Event.objects.exists() and not Order.objects.exists()
    assert not Subscriber.objects.exclude(order_count=0).exists()


def test_seed_demo_grows_an_existing_dataset(db):
    call_command("seed_demo", "--subscribers", "50")
    call_command("seed_demo", "--subscribers", "80")
    assert Subscriber.objects.filter(external_id__startswith="demo-").count() == 80


def _schema(tables: list[str]) -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT conrelid::regclass::text, conname FROM pg_constraint "
                       "WHERE conrelid = ANY(%s::regclass[]) "
                       "UNION SELECT tablename, indexname FROM pg_indexes WHERE tablename = ANY(%s)", [tables, tables])
        return set(cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="bulk load is for PostgreSQL")
def test_seed_demo_bulk_load_rebuilds_indexes_and_finishes_an_interrupted_load(db, capsys):
    tables = [m._meta.db_table for m in demo.BULK_MODELS]
    before = _schema(tables)
    call_command("seed_demo", "--subscribers", "30", "--bulk-load")
    assert "Rebuilding indexes" in capsys.readouterr().out
    assert _schema(tables) == before
    assert Event.objects.exists()
    # A load that stopped after dropping them: the next run (even without the flag) rebuilds.
    demo._drop(tables)
    assert _schema(tables) < before
    assert demo._pending(tables)
    call_command("seed_demo", "--subscribers", "40")
    assert _schema(tables) == before
    assert not demo._pending(tables)
    assert Subscriber.objects.count() == 40


def test_create_demo_login_prints_credentials(db, capsys, client):
    call_command("create_demo_login")
    assert "username demo" in capsys.readouterr().out
    from django.contrib.auth.models import User

    user = User.objects.get(username="demo")
    assert user.check_password("demo-marketing")
    assert user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == ["Marketing manager"]
    assert client.login(username="demo", password="demo-marketing")
    assert client.get("/admin/subscribers/subscriber/").status_code == 200
    # Starting the app again (run.py runs the command each time) keeps whoever is signed in signed in.
    call_command("create_demo_login")
    assert User.objects.get(username="demo").password == user.password
    assert client.get("/admin/subscribers/subscriber/").status_code == 200


def test_seed_demo_puts_nothing_after_now(db):
    from subscribers.models import ConsentRecord, Subscriber

    seed_demo(subscribers=400, seed=5, now=NOW)
    assert not Subscriber.objects.filter(confirmed_at__gt=NOW).exists()
    assert not Subscriber.objects.filter(created_at__gt=NOW).exists()
    assert not ConsentRecord.objects.filter(occurred_at__gt=NOW).exists()
