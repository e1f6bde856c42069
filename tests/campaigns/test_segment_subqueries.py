"""Segments used inside other queries: every rule type picks the same people as a subquery as on its own.

A segment's queryset is often nested (``subscriber__in=members(...)``,
``pk__in=...``), and Django then gives the subscriber table another alias
(U0…). A condition that names ``subscribers_subscriber`` literally breaks
there, so each rule is checked directly, under ``pk__in`` and from another
table; then through campaign results and the campaign's admin page.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from campaigns.content.models import Campaign, CampaignSegment, CampaignStatus, Variant
from campaigns.models import Delivery
from campaigns.segments import actions
from campaigns.segments.compiler import random_bucket
from campaigns.segments.models import Segment, SegmentMembership
from campaigns.sending.actions import message_key
from campaigns.sending.results import segment_results
from subscribers.models import Subscriber
from tests.campaigns.conftest import NOON
from tests.campaigns.test_segment_compiler import (
    CASES,
    EVERYONE,
    NOW,
    r,
    world,  # noqa: F401 - a fixture, requested by name
)

# Rules the compiler table covers only partly, or only at the top level.
EXTRA_CASES = [
    ({"match": "all", "rules": [r("tags", "has", "vip"), r("country", "equals", "LV")]}, {"ana"}),
    ({"match": "any", "negate": True, "rules": [r("tags", "has_any", ["vip", "runner"])]},
     EVERYONE - {"ana", "ben", "fay"}),
    ({"match": "all", "rules": [r("lapsed", "is_true", multiplier=2, days=180), r("tags", "has_none", ["x"])]},
     {"cara", "dan"}),
    (r("lifecycle_stage", "in", ["loyal", "lapsed"]), {"ana", "fay", "cara", "dan"}),
    (r("lifecycle_stage", "not_equals", "lead"), EVERYONE - {"ben"}),
]
ALL_CASES = CASES + EXTRA_CASES


def tree_of(rule: dict) -> dict:
    return rule if "rules" in rule else {"match": "all", "rules": [rule]}


def names(queryset) -> set[str]:
    return {name.lower() for name in queryset}


def three_ways(tree: dict) -> tuple[set[str], set[str], set[str]]:
    """Return the people of a rule tree on its own, under ``pk__in``, and from another table's query."""
    members = actions.segment_queryset(tree, now=NOW)
    direct = names(members.values_list("first_name", flat=True))
    nested = names(Subscriber.objects.filter(pk__in=members.values("pk")).values_list("first_name", flat=True))
    # Only ids: joining the subscriber table into the outer query would hide a literal table name.
    roster = SegmentMembership.objects.filter(segment__name="Roster", subscriber__in=members.values("pk"))
    ids = set(roster.values_list("subscriber_id", flat=True))
    joined = names(Subscriber.objects.filter(pk__in=list(ids)).values_list("first_name", flat=True))
    return direct, nested, joined


@pytest.fixture
def roster(world):  # noqa: F811 - the imported fixture, requested by name
    """Give everyone (erased people too) a row in another table, to select the segment's people from there."""
    roster = Segment.objects.create(name="Roster", rules={"match": "all", "rules": []})
    SegmentMembership.objects.bulk_create(SegmentMembership(segment=roster, subscriber=person, since=NOW)
                                          for person in world["people"].values())
    return world


@pytest.mark.parametrize(("rule", "expected"), ALL_CASES,
                         ids=[f"{rule.get('field', 'group')}-{rule.get('op', '')}-{i}"
                              for i, (rule, _) in enumerate(ALL_CASES)])
def test_a_rule_picks_the_same_people_inside_another_query(roster, rule, expected):
    assert three_ways(tree_of(rule)) == (expected, expected, expected)


def test_random_buckets_and_segment_rules_inside_another_query(roster):
    people = {name: person.pk for name, person in roster["people"].items() if name != "eve"}
    low = {name for name, pk in people.items() if random_bucket(pk, 3) < 50}
    assert three_ways(tree_of(r("random_bucket", "lt", 50, salt=3))) == (low, low, low)
    vips = Segment.objects.create(name="VIPs", rules=tree_of(r("tags", "has", "vip")))
    inside = {"match": "all", "rules": [r("segment", "in_segment", vips.pk), r("random_bucket", "between", [0, 99])]}
    assert three_ways(inside) == ({"ana", "fay"},) * 3
    outside = tree_of(r("segment", "not_in_segment", vips.pk))
    assert three_ways(outside) == (EVERYONE - {"ana", "fay"},) * 3
    topic = tree_of(r("topic", "subscribed", roster["topic"].pk))
    assert three_ways(topic) == ({"ana"},) * 3


# --- Campaign results and the campaign's admin page ----------------------------------------------------------


def ago(days: float) -> dt.datetime:
    return NOON - dt.timedelta(days=days)


SEGMENT_RULES = {
    "VIPs in Latvia": {"match": "all", "rules": [r("tags", "has", "vip"), r("country", "equals", "LV")]},
    "Not runners": tree_of(r("tags", "has_none", ["runner"])),
    "Lapsed": tree_of(r("lapsed", "is_true", multiplier=2, days=180)),
    "Half": tree_of(r("random_bucket", "lt", 50)),
}


@pytest.fixture
def sent_campaign(db, topic, clock, make_subscriber):
    """Make a sent campaign to the segments above, with one delivery to each of seven people."""
    people = {
        "Anna": make_subscriber(first_name="Anna", country="LV", tags=["vip"]),
        "Berta": make_subscriber(first_name="Berta", country="LV", tags=["runner"]),
        "Carl": make_subscriber(first_name="Carl", country="LT", tags=["vip"]),
        "Dace": make_subscriber(first_name="Dace", country="LV", tags=["Runner", "VIP"]),
        # No order for more than 180 days.
        "Egon": make_subscriber(first_name="Egon", order_count=2, total_spent=Decimal("20"),
                                first_order_at=ago(400), last_order_at=ago(300)),
        # Orders every 20 days, none for 60: more than twice the usual interval.
        "Fred": make_subscriber(first_name="Fred", order_count=3, total_spent=Decimal("30"),
                                first_order_at=ago(100), last_order_at=ago(60)),
        "Gus": make_subscriber(first_name="Gus", order_count=3, total_spent=Decimal("30"),
                               first_order_at=ago(30), last_order_at=ago(10)),
    }
    campaign = Campaign.objects.create(name="Winter sale", topic=topic, from_name="Shop", from_email="shop@example.com",
                                       status=CampaignStatus.SENT, started_at=ago(1), finished_at=ago(1))
    variant = Variant.objects.create(campaign=campaign, label="A", subject="Hi", html="<p>Sale</p>")
    for name, rules in SEGMENT_RULES.items():
        CampaignSegment.objects.create(campaign=campaign, segment=Segment.objects.create(name=name, rules=rules))
    for person in people.values():
        Delivery.objects.create(subscriber=person, message_key=message_key(campaign.pk, variant.pk), status="sent",
                                sent_at=ago(1))
    return campaign, people


def expected_sent(people) -> dict[str, int]:
    half = sum(1 for person in people.values() if random_bucket(person.pk) < 50)
    return {"VIPs in Latvia": 2, "Not runners": 5, "Lapsed": 2, "Half": half}


def test_segment_results_count_the_deliveries_of_each_segments_people(sent_campaign):
    campaign, people = sent_campaign
    by_segment = {row["segment"]: row["sent"] for row in segment_results(campaign)}
    assert by_segment == expected_sent(people)
    members = {name: {p.first_name for p in actions.members(Segment.objects.get(name=name))}
               for name in ("VIPs in Latvia", "Not runners", "Lapsed")}
    assert members == {"VIPs in Latvia": {"Anna", "Dace"}, "Not runners": {"Anna", "Carl", "Egon", "Fred", "Gus"},
                       "Lapsed": {"Egon", "Fred"}}


def test_the_sent_campaigns_admin_page_shows_its_segment_results(admin_client, sent_campaign):
    campaign, people = sent_campaign
    response = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    for name, sent in expected_sent(people).items():
        assert f"<tr><td>{name}</td><td>{sent}</td>" in page


def test_a_draft_campaigns_admin_pages_load(admin_client, sent_campaign):
    campaign, _ = sent_campaign
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.DRAFT)
    assert admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").status_code == 200
    assert admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/").status_code == 200
