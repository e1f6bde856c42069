"""The official Segment Python library, pointed at a live test server, lands data here unchanged."""

import datetime as dt
from decimal import Decimal

import pytest
import segment.analytics as analytics
from segment.analytics import request as segment_request
from segment.analytics.client import Client

from subscribers import actions
from subscribers.models import Event, Order, Subscriber

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("gzip", [False, True])
def test_segment_library_sends_identify_track_and_order(live_server, gzip):
    _, key = actions.create_write_key(name="Segment SDK")
    client = Client(write_key=key, host=live_server.url, sync_mode=True, gzip=gzip, max_retries=0,
                    on_error=lambda error, items: pytest.fail(f"Segment library got an error: {error}"))
    client.track(anonymous_id="anon-42", event="Product Viewed",
                 properties={"product_id": "p-1", "name": "Rain jacket", "category": "Outerwear", "price": 120})
    client.identify(user_id="shop-7", anonymous_id="anon-42",
                    traits={"email": "zofia@example.pl", "firstName": "Zofia", "address": {"country": "PL"}},
                    context={"locale": "pl-PL", "timezone": "Europe/Warsaw"})
    client.track(user_id="shop-7", event="Order Completed", timestamp=dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC),
                 properties={"order_id": "A-1001", "total": 120.0, "currency": "PLN",
                             "products": [{"product_id": "p-1", "price": 120.0, "quantity": 1}]})
    client.flush()
    segment_request._session.close()  # the library keeps a pooled keep-alive connection to the live server

    zofia = Subscriber.objects.get(external_id="shop-7")
    assert (zofia.email, zofia.first_name, zofia.country.code, zofia.language, zofia.timezone) == (
        "zofia@example.pl", "Zofia", "PL", "pl", "Europe/Warsaw")
    assert zofia.status == "contact"
    assert set(Event.objects.filter(subscriber=zofia).values_list("name", flat=True)) == {
        "Product Viewed", "Order Completed"}
    order = Order.objects.get(order_id="A-1001")
    assert (order.subscriber, order.total, order.currency) == (zofia, Decimal("120.00"), "PLN")
    # Segment's clock-skew correction moves the time by the request's transit time at most.
    assert abs(order.occurred_at - dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)) < dt.timedelta(seconds=2)
    zofia.refresh_from_db()
    assert (zofia.order_count, zofia.total_spent) == (1, Decimal("120.00"))
    assert analytics  # the module-level API wraps this same Client
