"""Segment actions: saving with validation, deletion refused when used, counting, preview, snapshots."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from campaigns.segments import actions
from campaigns.segments.compiler import SegmentRuleError
from campaigns.segments.models import (
    Segment,
    SegmentDependency,
    SegmentMembership,
    SegmentMembershipChange,
    SegmentRefresh,
)
from campaigns.segments.prebuilt import PREBUILT
from campaigns.segments.tasks import refresh_tracked_segments_task
from subscribers.models import Subscriber

LATVIA = {"match": "all", "rules": [{"field": "country", "op": "equals", "value": "LV"}]}


def test_prebuilt_segments_exist_and_compile(db):
    names = set(Segment.objects.values_list("name", flat=True))
    assert {spec["name"] for spec in PREBUILT} <= names
    assert {"Leads", "New subscribers", "First-time customers", "Recent customers", "Loyal customers",
            "Lapsed customers", "Cart abandoners", "Unengaged 90 days", "Sunset candidates",
            "Birthdays this week"} <= names
    for segment in Segment.objects.all():
        assert actions.validate_rules(segment.rules, segment_id=segment.pk) == []


def test_prebuilt_segments_match_the_people_they_describe(make_subscriber):
    now = dt.datetime.now(dt.UTC)
    lead = make_subscriber(first_name="Lead", created_at=now - dt.timedelta(days=200))
    new = make_subscriber(first_name="New", created_at=now - dt.timedelta(days=3))
    quiet = make_subscriber(first_name="Quiet", created_at=now - dt.timedelta(days=400),
                            last_open_at=now - dt.timedelta(days=300))
    buyer = make_subscriber(first_name="Buyer", order_count=1, total_spent=50, first_order_at=now,
                            last_order_at=now, created_at=now - dt.timedelta(days=400))

    def names(segment_name):
        return {p.first_name for p in actions.members(Segment.objects.get(name=segment_name))}

    assert names("Leads") == {"Lead", "New", "Quiet"}
    assert names("New subscribers") == {"New"}
    assert names("First-time customers") == names("Recent customers") == {"Buyer"}
    assert names("Unengaged 90 days") == {"Lead", "Quiet", "Buyer"}
    assert names("Sunset candidates") == {"Lead", "Quiet"}
    assert lead.pk and new.pk and quiet.pk and buyer.pk


def test_save_segment_rejects_bad_rules_and_saves_nothing(db):
    segment = Segment(name="Broken", rules={"match": "all", "rules": [
        {"field": "first_name", "op": "matches", "value": "("}]})
    with pytest.raises(SegmentRuleError) as caught:
        actions.save_segment(segment)
    assert caught.value.errors[0].startswith("Rule 1 (First name)")
    assert not Segment.objects.filter(name="Broken").exists()


def test_deleting_a_used_segment_is_refused_naming_the_user(db):
    baltic = actions.save_segment(Segment(name="Baltic", rules=LATVIA))
    user = actions.save_segment(Segment(name="Baltic VIPs", rules={"match": "all", "rules": [
        {"field": "segment", "op": "in_segment", "value": baltic.pk}]}))
    with pytest.raises(actions.SegmentInUse) as caught:
        actions.delete_segment(baltic)
    assert "segment “Baltic VIPs”" in str(caught.value)
    user.rules = LATVIA
    actions.save_segment(user)
    assert not SegmentDependency.objects.filter(segment=user).exists()
    actions.delete_segment(baltic)
    assert not Segment.objects.filter(name="Baltic").exists()


def test_lifecycle_source_segments_cannot_be_deleted(db):
    loyal = Segment.objects.get(system_key="loyal_customers")
    with pytest.raises(actions.SegmentInUse, match="lifecycle stages"):
        actions.delete_segment(loyal)
    staged = actions.save_segment(Segment(name="Staged", rules={"match": "all", "rules": [
        {"field": "lifecycle_stage", "op": "equals", "value": "loyal"}]}))
    assert loyal.dependents.filter(segment=staged).exists()


def test_saving_counts_members(make_subscriber, django_capture_on_commit_callbacks):
    make_subscriber(country="LV")
    make_subscriber(country="LT")
    with django_capture_on_commit_callbacks(execute=True):
        segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA))
    segment.refresh_from_db()
    assert segment.member_count == 1 and segment.counted_at is not None and segment.count_seconds is not None


def test_preview_gives_count_sample_with_matched_values_and_plan(make_subscriber):
    for n in range(25):
        make_subscriber(country="LV", city=f"Town {n}")
    make_subscriber(country="EE")
    tree = {"match": "all", "rules": [{"field": "country", "op": "equals", "value": "LV"},
                                      {"field": "city", "op": "starts_with", "value": "town"}]}
    preview = actions.preview_segment(tree, explain=True)
    assert preview.errors == [] and preview.count == 25 and len(preview.sample) == 20
    assert preview.columns == ["Email", "Country", "City"]
    assert preview.sample[0]["values"][1] == "LV" and preview.sample[0]["values"][2].startswith("Town")
    assert "subscribers_subscriber" in preview.sql and "LV" in preview.sql
    assert preview.plan
    bad = actions.preview_segment({"match": "all", "rules": [{"field": "country", "op": "equals", "value": "ZZ"}]})
    assert bad.errors == ["Rule 1 (Country): ZZ is not one of the choices."] and bad.count == 0


def test_preview_warns_when_the_whole_event_table_is_read(db):
    tree = {"match": "all", "rules": [{"field": "event", "op": "at_least", "value": 1, "event": "Product Viewed",
                                       "where": [{"property": "category", "op": "contains", "value": "sho"}]}]}
    preview = actions.preview_segment(tree, explain=True)
    assert preview.errors == []
    assert isinstance(preview.warnings, list)


def test_a_big_snapshot_change_refreshes_the_planners_statistics(make_subscriber, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("planner statistics are PostgreSQL's")

    def estimated_rows() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'campaigns_segmentmembership'")
            return cursor.fetchone()[0]

    for _ in range(3):
        make_subscriber(country="LV")
    segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA, track_membership=True))
    monkeypatch.setattr(actions, "ANALYZE_AFTER_CHANGES", 4)

    def refresh():
        with django_capture_on_commit_callbacks(execute=True):  # the ANALYZE runs after the commit
            actions.refresh_membership(segment)

    refresh()  # 3 changes: below the threshold, no ANALYZE
    before = estimated_rows()
    assert before != 3
    make_subscriber(country="LV")
    Subscriber.objects.filter(country="LV").update(country="EE")
    refresh()  # the 3 members leave (the 4th never entered): 3 changes
    assert estimated_rows() == before
    Subscriber.objects.filter(country="EE").update(country="LV")
    refresh()  # 4 entered: the threshold
    assert estimated_rows() == 4


def test_snapshot_records_entries_and_exits(make_subscriber):
    ana, ben = make_subscriber(country="LV"), make_subscriber(country="LV")
    make_subscriber(country="EE")
    segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA, track_membership=True))

    first = actions.refresh_membership(segment)
    assert (first.members, first.entered, first.left, first.initial) == (2, 2, 0, True)
    assert set(SegmentMembership.objects.filter(segment=segment).values_list("subscriber_id", flat=True)) == {
        ana.pk, ben.pk}

    Subscriber.objects.filter(pk=ben.pk).update(country="EE")
    cara = make_subscriber(country="LV")
    second = actions.refresh_membership(segment)
    assert (second.members, second.entered, second.left, second.initial) == (2, 1, 1, False)
    changes = {(c.subscriber_id, c.entered) for c in SegmentMembershipChange.objects.filter(refresh=second)}
    assert changes == {(cara.pk, True), (ben.pk, False)}
    assert set(SegmentMembership.objects.filter(segment=segment).values_list("subscriber_id", flat=True)) == {
        ana.pk, cara.pk}

    third = actions.refresh_membership(segment)
    assert (third.entered, third.left) == (0, 0)
    history = actions.segment_history(subscriber_id=ben.pk)
    assert history == [{"segment": "Latvia", "entered": False, "at": second.started_at}]
    assert actions.segment_history(subscriber_id=cara.pk)[0]["segment"] == "Latvia"
    segment.refresh_from_db()
    assert segment.refreshed_at == third.started_at and segment.member_count == 2


def test_beat_task_refreshes_only_tracked_segments(make_subscriber):
    make_subscriber(country="LV")
    tracked = actions.save_segment(Segment(name="Tracked", rules=LATVIA, track_membership=True))
    untracked = actions.save_segment(Segment(name="Untracked", rules=LATVIA))
    refresh_tracked_segments_task.delay()
    assert SegmentRefresh.objects.filter(segment=tracked).count() == 1
    assert not SegmentRefresh.objects.filter(segment=untracked).exists()


def test_segment_count_command_prints_count_time_and_sql(make_subscriber):
    make_subscriber(country="LV")
    actions.save_segment(Segment(name="Latvia", rules=LATVIA))
    out = io.StringIO()
    call_command("segment_count", "Latvia", stdout=out)
    text = out.getvalue()
    assert text.startswith("Latvia: 1 members in ") and "SELECT" in text and "subscribers_subscriber" in text
    with pytest.raises(CommandError, match="No segment"):
        call_command("segment_count", "Nope")


def test_summary_reads_as_words(db):
    assert actions.summarize(LATVIA) == "Country is LV"
    assert actions.summarize({"match": "all", "rules": []}) == "Everyone"


def test_summaries_put_numbers_where_the_words_say_n(db):
    lapsed = Segment.objects.get(name="Lapsed customers")
    assert actions.summarize(lapsed.rules) == ("Lapsed customer is yes (× their usual interval 2, "
                                               "or no order for 180 days)")
    assert actions.summarize(Segment.objects.get(name="Recent customers").rules) == "Last order in the last 30 days"
    out = io.StringIO()
    call_command("recount_segments", stdout=out)
    assert out.getvalue().startswith("Counted 11 segments") and not Segment.objects.filter(
        member_count__isnull=True).exists()


def test_the_rule_builder_names_custom_attributes_by_their_label(db, django_assert_max_num_queries):
    from campaigns.segments.compiler import catalogue
    from subscribers.models import AttributeDefinition

    AttributeDefinition.objects.create(key="shoe_size", label="Shoe size", type="number")
    AttributeDefinition.objects.create(key="plan", label="", type="text")
    with django_assert_max_num_queries(1):  # labels come with the catalogue, in the same read
        entries = {e["key"]: e for e in catalogue(actions.build_context())}
    assert entries["attribute.shoe_size"]["label"] == "Shoe size"
    assert entries["attribute.plan"]["label"] == "plan"  # no label: the key
