"""The indexes bulk writes touch (import, sending): no redundant ones, and every foreign key still leads an index."""

import pytest
from django.db import connection

from campaigns.models import Delivery
from campaigns.segments.models import SegmentMembership
from campaigns.sending.models import Recipient
from preferences.models import TopicSubscription
from subscribers.models import ConsentRecord, Subscriber


def _indexes(model):
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, model._meta.db_table)


@pytest.mark.parametrize(("model", "columns"), [
    (ConsentRecord, ["subscriber_id", "topic_id", "actor_id"]),
    (TopicSubscription, ["subscriber_id", "topic_id"]),
    (Delivery, ["subscriber_id"]),
    (Recipient, ["campaign_id", "subscriber_id", "variant_id", "delivery_id"]),
    (SegmentMembership, ["segment_id", "subscriber_id"]),
])
def test_every_foreign_key_leads_an_index(db, model, columns):
    # Deleting a subscriber or a topic looks these rows up by the key.
    leading = {c["columns"][0] for c in _indexes(model).values() if c["index"] or c["unique"]}
    assert set(columns) <= leading


@pytest.mark.parametrize("model", [Subscriber, ConsentRecord, TopicSubscription, Delivery, Recipient,
                                   SegmentMembership])
def test_no_index_is_a_prefix_of_another(db, model):
    indexes = [tuple(c["columns"]) for c in _indexes(model).values()
               if (c["index"] or c["unique"]) and not c["primary_key"]]
    if connection.vendor == "postgresql":
        # Pattern-ops (LIKE) indexes have the same columns as their plain twin.
        assert len(indexes) == len(set(indexes)), indexes
    for columns in indexes:
        longer = [other for other in indexes if len(other) > len(columns) and other[:len(columns)] == columns]
        unique = any(c["unique"] and tuple(c["columns"]) == columns for c in _indexes(model).values())
        assert unique or not longer, (columns, longer)


def test_lookups_on_the_columns_still_work(db, make_subscriber):
    make_subscriber(email="Ann@Example.com", external_id="demo-1")
    make_subscriber(email="bob@example.com", external_id="shop-2")
    assert list(Subscriber.objects.filter(email_key__startswith="ann@").values_list("email", flat=True)) == [
        "Ann@example.com"]
    assert Subscriber.objects.filter(external_id__startswith="demo-").count() == 1
    assert Subscriber.objects.filter(email__icontains="BOB").count() == 1
    assert Subscriber.objects.filter(status="subscribed").count() == 2
