#!/usr/bin/env python3
"""Benchmark segment counts and membership snapshots on PostgreSQL against hand-written SQL.

    cd /work/main
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/marketing_segbench DEBUG=1 \
        .venv/bin/python manage.py seed_demo --subscribers 1000000          # once
    .venv/bin/python bench/segment_bench.py \
        --database-url postgres://postgres@127.0.0.1:5432/marketing_segbench

For six reference segments it times the app's count (compiling the rules
and running ``campaigns.segments.actions.members(segment).count()``) and a
hand-written SQL query for the same set (kept below, in ``HAND_SQL``),
checks that both give the same number, and prints the ratio. Each query
runs once to warm the cache, then ``--repeat`` times; the median counts.
Then it refreshes the membership snapshot of a 40% random-bucket segment
(400,000 people at 1,000,000) three times: the first snapshot, a refresh
with nothing changed, and one after the rules change (a new salt: about
240,000 leave and 240,000 enter).

Goals (issue): every segment ≤ 1 s and ≤ 1.5× its hand-written SQL;
snapshot refresh of a 400,000-member segment ≤ 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import ensure_database, migrate

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/marketing_segbench"
GOAL_SECONDS = 1.0
GOAL_RATIO = 1.5
GOAL_SNAPSHOT_SECONDS = 10.0
CATEGORY = "Shoes"


def r(field: str, op: str, value: Any = None, **params: Any) -> dict[str, Any]:
    rule = {"field": field, "op": op, **params}
    if value is not None:
        rule["value"] = value
    return rule


REFERENCE = {
    "demographic + geographic": {"match": "all", "rules": [
        r("country", "in", ["LV", "LT", "EE", "PL"]), r("gender", "equals", "female"), r("age", "between", [25, 45]),
        r("status", "equals", "subscribed")]},
    "three-level nested AND/OR": {"match": "any", "rules": [
        {"match": "all", "rules": [r("language", "in", ["lv", "pl"]),
                                   {"match": "any", "rules": [r("order_count", "gte", 2),
                                                              r("tags", "has", "running")]}]},
        {"match": "all", "rules": [r("country", "equals", "US"), r("total_spent", "gt", 200),
                                   {"match": "any", "rules": [r("email_opened", "in_last_days", 30),
                                                              r("last_seen_at", "in_last_days", 7)]}]}]},
    "cart abandoners (24 h)": {"match": "all", "rules": [r("cart_abandoned", "is_true", within_hours=24)]},
    "lapsed customers": {"match": "all", "rules": [r("lapsed", "is_true", multiplier=2, days=180)]},
    f"viewed “{CATEGORY}” ≥ 2× in 30 days, did not buy": {"match": "all", "rules": [
        r("event", "at_least", 2, event="Product Viewed", within_days=30,
          where=[{"property": "category", "op": "equals", "value": CATEGORY}]),
        r("bought", "not_bought", [CATEGORY], by="category", within_days=30)]},
    "unengaged 90 days": "Unengaged 90 days",  # the prebuilt segment, as shipped
}

# The same sets, as a person fluent in SQL would write them for this schema.
HAND_SQL = {
    "demographic + geographic": """
        SELECT count(*) FROM subscribers_subscriber
        WHERE status = 'subscribed' AND country IN ('LV', 'LT', 'EE', 'PL') AND gender = 'female'
          AND birth_date <= (%(now)s AT TIME ZONE 'UTC')::date - interval '25 years'
          AND birth_date > (%(now)s AT TIME ZONE 'UTC')::date - interval '46 years'""",
    "three-level nested AND/OR": """
        SELECT count(*) FROM subscribers_subscriber
        WHERE status <> 'erased' AND (
          (language IN ('lv', 'pl') AND (order_count >= 2 OR lower(tags::text)::jsonb ? 'running'))
          OR (country = 'US' AND total_spent > 200
              AND (last_open_at >= %(now)s - interval '30 days' OR last_seen_at >= %(now)s - interval '7 days')))""",
    "cart abandoners (24 h)": """
        SELECT count(*) FROM subscribers_subscriber s
        WHERE s.status <> 'erased' AND EXISTS (
          SELECT 1 FROM subscribers_event e
          WHERE e.subscriber_id = s.id AND e.name IN ('Product Added', 'Checkout Started')
            AND e.occurred_at >= %(now)s - interval '24 hours'
            AND NOT EXISTS (SELECT 1 FROM subscribers_order o
                            WHERE o.subscriber_id = s.id AND o.occurred_at >= e.occurred_at))""",
    "lapsed customers": """
        SELECT count(*) FROM subscribers_subscriber
        WHERE status <> 'erased' AND order_count >= 1 AND (
          last_order_at < %(now)s - interval '180 days'
          OR (order_count >= 2 AND last_order_at - first_order_at >= (order_count - 1) * interval '1 day'
              AND (%(now)s - last_order_at) * (order_count - 1) > 2 * (last_order_at - first_order_at)))""",
    f"viewed “{CATEGORY}” ≥ 2× in 30 days, did not buy": f"""
        SELECT count(*) FROM subscribers_subscriber s
        WHERE s.status <> 'erased'
          AND s.id IN (SELECT subscriber_id FROM subscribers_event
                       WHERE name = 'Product Viewed' AND occurred_at >= %(now)s - interval '30 days'
                         AND upper(properties ->> 'category') = upper('{CATEGORY}')
                       GROUP BY subscriber_id HAVING count(*) >= 2)
          AND NOT EXISTS (SELECT 1 FROM subscribers_order o JOIN subscribers_orderitem i ON i.order_id = o.id
                          WHERE o.subscriber_id = s.id AND o.occurred_at >= %(now)s - interval '30 days'
                            AND o.status IN ('completed', 'partially_refunded')
                            AND upper(i.category) = upper('{CATEGORY}'))""",
    "unengaged 90 days": """
        SELECT count(*) FROM subscribers_subscriber
        WHERE status = 'subscribed' AND created_at < %(now)s - interval '90 days'
          AND (last_open_at IS NULL OR last_open_at < %(now)s - interval '90 days')
          AND (last_click_at IS NULL OR last_click_at < %(now)s - interval '90 days')""",
}


def timed(run: Any, repeat: int) -> tuple[Any, float]:
    result = run()  # warm the cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-snapshot", action="store_true")
    args = parser.parse_args()

    ensure_database(args.database_url)
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": args.database_url,
           "DJANGO_SETTINGS_MODULE": "marketing.settings"}
    os.environ.update(env)
    migrate(env)
    import django

    django.setup()
    from django.db import connection

    from campaigns.segments import actions
    from campaigns.segments.models import Segment, SegmentMembership, SegmentMembershipChange, SegmentRefresh

    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM subscribers_subscriber), (SELECT count(*) FROM subscribers_event),"
                       " (SELECT count(*) FROM subscribers_order)")
        people, events, orders = cursor.fetchone()
    print(f"database: {people:,} subscribers, {events:,} events, {orders:,} orders")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, PostgreSQL {connection.pg_version // 10000}")
    print()
    # One moment for both sides, so "in the last 24 hours" means the same rows for the app and the SQL.
    from django.utils import timezone

    now = timezone.now()
    print(f"{'segment':<52} {'members':>10} {'app s':>8} {'SQL s':>8} {'ratio':>6}  verdict")
    results = []
    for label, rules in REFERENCE.items():
        if isinstance(rules, str):
            segment = Segment.objects.get(name=rules)
        else:
            segment = Segment(name=f"bench: {label}", rules=rules)

        def app(segment: Segment = segment) -> int:
            return actions.members(segment, now=now).count()

        def hand(sql: str = HAND_SQL[label]) -> int:
            with connection.cursor() as cursor:
                cursor.execute(sql, {"now": now})
                return cursor.fetchone()[0]

        app_count, app_s = timed(app, args.repeat)
        hand_count, hand_s = timed(hand, args.repeat)
        ratio = app_s / hand_s if hand_s else float("inf")
        same = app_count == hand_count
        ok = same and app_s <= GOAL_SECONDS and ratio <= GOAL_RATIO
        verdict = "PASS" if ok else ("MISS" if same else f"MISS (SQL counted {hand_count:,})")
        print(f"{label:<52} {app_count:>10,} {app_s:>8.3f} {hand_s:>8.3f} {ratio:>5.2f}×  {verdict}")
        results.append({"segment": label, "members": app_count, "app_s": round(app_s, 4), "sql_s": round(hand_s, 4),
                        "ratio": round(ratio, 3), "same_count": same, "pass": ok})

    snapshot = []
    if not args.skip_snapshot:
        print()
        segment, _ = Segment.objects.get_or_create(name="bench: 40% bucket", defaults={"track_membership": True})
        SegmentMembershipChange.objects.filter(segment=segment).delete()
        SegmentMembership.objects.filter(segment=segment).delete()
        SegmentRefresh.objects.filter(segment=segment).delete()
        segment.rules = {"match": "all", "rules": [r("random_bucket", "lt", 40, salt=0)]}
        segment.save()
        for step in ("first snapshot", "refresh, nothing changed", "refresh after the rules change"):
            if step.startswith("refresh after"):
                segment.rules = {"match": "all", "rules": [r("random_bucket", "lt", 40, salt=1)]}
                segment.save()
            refresh = actions.refresh_membership(segment)
            ok = refresh.seconds <= GOAL_SNAPSHOT_SECONDS
            print(f"snapshot {step:<34} {refresh.members:>9,} members {refresh.entered:>9,} entered "
                  f"{refresh.left:>9,} left {refresh.seconds:>7.2f} s  {'PASS' if ok else 'MISS'}")
            snapshot.append({"step": step, "members": refresh.members, "entered": refresh.entered,
                             "left": refresh.left, "seconds": round(refresh.seconds, 3), "pass": ok})
        segment.delete()

    OUT.mkdir(parents=True, exist_ok=True)
    summary = {"people": people, "events": events, "orders": orders, "segments": results, "snapshot": snapshot}
    (OUT / "segment_bench.json").write_text(json.dumps(summary, indent=2))
    print()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
