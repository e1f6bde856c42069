"""The prebuilt segments every installation starts with (created by a data migration, then editable).

Thresholds are rule values, so staff change them in the rule builder like
any other rule. Four of them define lifecycle stages (``system_key``).
"""

from __future__ import annotations

from typing import Any

SUBSCRIBED = {"field": "status", "op": "equals", "value": "subscribed"}

PREBUILT: list[dict[str, Any]] = [
    {"name": "Leads", "description": "Subscribed and never ordered.",
     "rules": {"match": "all", "rules": [SUBSCRIBED, {"field": "order_count", "op": "equals", "value": 0}]}},
    {"name": "New subscribers", "description": "Subscribed in the last 14 days.",
     "rules": {"match": "all", "rules": [SUBSCRIBED, {"field": "created_at", "op": "in_last_days", "value": 14}]}},
    {"name": "First-time customers", "system_key": "first_time_customers",
     "description": "Exactly one order. Defines the “new customer” lifecycle stage.",
     "rules": {"match": "all", "rules": [{"field": "order_count", "op": "equals", "value": 1}]}},
    {"name": "Recent customers", "description": "Ordered in the last 30 days.",
     "rules": {"match": "all", "rules": [{"field": "last_order_at", "op": "in_last_days", "value": 30}]}},
    {"name": "Loyal customers", "system_key": "loyal_customers",
     "description": "Three or more orders, or among the top 10% by total spent. Defines the “loyal” stage.",
     "rules": {"match": "any", "rules": [{"field": "order_count", "op": "gte", "value": 3},
                                         {"field": "spend_rank", "op": "top_percent", "value": 10}]}},
    {"name": "At-risk customers", "system_key": "at_risk_customers",
     "description": "Customers past their usual interval between orders, or 90 days without one. "
                    "Defines the “at risk” stage.",
     "rules": {"match": "all", "rules": [{"field": "lapsed", "op": "is_true", "multiplier": 1, "days": 90}]}},
    {"name": "Lapsed customers", "system_key": "lapsed_customers",
     "description": "No order for more than twice their usual interval, or for 180 days. Defines the “lapsed” stage.",
     "rules": {"match": "all", "rules": [{"field": "lapsed", "op": "is_true", "multiplier": 2, "days": 180}]}},
    {"name": "Cart abandoners",
     "description": "Added to cart or started checkout in the last 24 hours, no order since.",
     "rules": {"match": "all", "rules": [{"field": "cart_abandoned", "op": "is_true", "within_hours": 24}]}},
    {"name": "Unengaged 90 days", "description": "Subscribed for over 90 days with no open or click in 90 days.",
     "rules": {"match": "all", "rules": [
         SUBSCRIBED, {"field": "created_at", "op": "more_than_days_ago", "value": 90},
         {"field": "email_opened", "op": "not_in_last_days", "value": 90},
         {"field": "email_clicked", "op": "not_in_last_days", "value": 90}]}},
    {"name": "Sunset candidates", "description": "No open or click in 180 days and no order in 180 days.",
     "rules": {"match": "all", "rules": [
         SUBSCRIBED, {"field": "created_at", "op": "more_than_days_ago", "value": 180},
         {"field": "email_opened", "op": "not_in_last_days", "value": 180},
         {"field": "email_clicked", "op": "not_in_last_days", "value": 180},
         {"match": "any", "rules": [{"field": "order_count", "op": "equals", "value": 0},
                                    {"field": "last_order_at", "op": "more_than_days_ago", "value": 180}]}]}},
    {"name": "Birthdays this week", "description": "Birthday today or in the next 6 days.",
     "rules": {"match": "all", "rules": [{"field": "birthday", "op": "in_next_days", "value": 6}]}},
]


def create_prebuilt_segments(segment_model: Any) -> int:
    """Create the prebuilt segments that are missing (by name or system key); safe to run again."""
    created = 0
    for spec in PREBUILT:
        key = spec.get("system_key")
        if key and segment_model.objects.filter(system_key=key).exists():
            continue
        if segment_model.objects.filter(name=spec["name"]).exists():
            continue
        segment_model.objects.create(name=spec["name"], description=spec["description"], rules=spec["rules"],
                                     system_key=key)
        created += 1
    return created
