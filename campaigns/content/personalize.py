"""Build each recipient's render context: plain data only, for a whole send chunk in a few queries.

A context holds the merge fields in ``MERGE_FIELDS``, the catalogue
attributes (sensitive ones only when the campaign recorded why), the names of
the segments the content's dynamic blocks ask about that the person is in,
product recommendations, and the person's preference-center and unsubscribe
links. People who opted out of personalization get no segment blocks (the
content's default shows) and the shop's overall bestsellers instead of
recommendations from their history.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.translation import get_language
from django_countries import countries

MERGE_FIELDS = (
    "first_name", "last_name", "email", "city", "region", "country", "language", "company", "job_title",
    "industry", "order_count", "total_spent", "average_order_value", "first_order_at", "last_order_at",
)
# Merge fields every recipient has, so they never need a fallback.
ALWAYS_PRESENT = frozenset({"email", "order_count", "total_spent", "average_order_value"})
# Names the content may use that come from the app, not from the profile.
APP_NAMES = frozenset({"unsubscribe_url", "preferences_url", "segments", "recommendations", "product", "brand",
                       "attributes", "full_name", "country_name", "lifecycle_stage", "forloop",
                       "trigger"})  # trigger: what started a journey (its event's properties), journeys only
BESTSELLER_DAYS = 90
RECOMMENDATION_POOL = 12


@dataclass(frozen=True)
class RecipientContext:
    subscriber_id: int
    context: dict[str, Any]
    locale: str
    currency: str
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe headers for this person


def brand() -> dict[str, str]:
    return {"name": settings.BRAND_NAME, "website_url": settings.BRAND_WEBSITE_URL,
            "logo_url": settings.BRAND_LOGO_URL}


def preview_links() -> dict[str, str]:
    """Unsubscribe and preference links that change nothing, for previews and test sends.

    A preview rendered as a real subscriber must not carry that person's
    links: a colleague clicking "Unsubscribe" in a test email would
    unsubscribe a customer. These open the preference center's "link not
    valid" page.
    """
    return {"unsubscribe_url": f"{settings.PREFERENCE_CENTER_BASE_URL}/unsubscribe/preview/",
            "preferences_url": f"{settings.PREFERENCE_CENTER_BASE_URL}/preferences/preview/"}


def empty_context() -> dict[str, Any]:
    """Return the context of a person with every field empty (the "no data" preview)."""
    context: dict[str, Any] = dict.fromkeys(MERGE_FIELDS, "")
    context.update({"order_count": 0, "total_spent": 0, "average_order_value": 0, "first_order_at": None,
                    "last_order_at": None, "full_name": "", "country_name": "", "attributes": {}, "segments": [],
                    "recommendations": [], "lifecycle_stage": "", "brand": brand(), "trigger": {},
                    **preview_links()})
    return context


def recipient_contexts(subscriber_ids: Iterable[int], *, segments: Iterable[str] = (),
                       allow_sensitive: bool = False, recommendations: bool = False,
                       now: dt.datetime | None = None, snapshot_since: dt.datetime | None = None,
                       preferences: dict[int, Any] | None = None) -> dict[int, RecipientContext]:
    """Return the render context of each person; a fixed number of queries whatever the chunk size.

    ``preferences``: their ``sending_preferences_for`` when the caller has already read them.
    """
    from preferences.api import preference_links, sending_preferences_for
    from subscribers.models import AttributeDefinition, Subscriber

    ids = list(subscriber_ids)
    now = now or timezone.now()
    sensitive = set(AttributeDefinition.objects.filter(sensitive=True).values_list("key", flat=True))
    rows = Subscriber.objects.filter(pk__in=ids).values("pk", "attributes", *MERGE_FIELDS)
    if preferences is None:
        preferences = sending_preferences_for(subscriber_ids=ids)
    links = preference_links(subscriber_ids=ids, preferences=preferences)
    memberships = segment_memberships(ids, names=segments, now=now, snapshot_since=snapshot_since)
    picks = recommend(ids, preferences=preferences) if recommendations else {}
    result = {}
    for row in rows:
        pk = row.pop("pk")
        attributes = row.pop("attributes") or {}
        if not allow_sensitive:
            attributes = {k: v for k, v in attributes.items() if k not in sensitive}
        prefs = preferences.get(pk)
        personalized = prefs.personalization_allowed if prefs else True
        context = dict(row)
        context["country"] = str(row["country"] or "")
        context["country_name"] = _country_name(row["country"], get_language()) if row["country"] else ""
        context["full_name"] = " ".join(p for p in (row["first_name"], row["last_name"]) if p)
        context["attributes"] = attributes
        context["segments"] = sorted(memberships.get(pk, ())) if personalized else []
        context["recommendations"] = picks.get(pk, [])
        context["brand"] = brand()
        link = links.get(pk)
        context["unsubscribe_url"] = link.unsubscribe_url if link else ""
        context["preferences_url"] = link.preference_url if link else ""
        language = (prefs.language if prefs else "") or row["language"] or settings.LANGUAGE_CODE
        result[pk] = RecipientContext(subscriber_id=pk, context=context, locale=language,
                                      currency=settings.DEFAULT_CURRENCY, headers=link.headers if link else {})
    return result


@functools.lru_cache(maxsize=4096)
def _country_name(code: str, language: str | None) -> str:
    """Return a country's name in the active language (kept: a send chunk asks for the same few names)."""
    return str(countries.name(code))


def segment_memberships(ids: list[int], *, names: Iterable[str], now: dt.datetime,
                        snapshot_since: dt.datetime | None = None) -> dict[int, set[str]]:
    """Return, per person, which of the named segments they are in (one query per segment).

    With ``snapshot_since``, a segment whose membership snapshot was refreshed
    since then is read from the snapshot (a campaign takes one when it starts,
    so every chunk sees the same membership and no chunk re-runs costly rules
    such as "top 10% by spend"); otherwise the rules run for these people.
    """
    from campaigns.segments import actions as segment_actions
    from campaigns.segments.models import Segment, SegmentMembership

    found: dict[int, set[str]] = defaultdict(set)
    for segment in Segment.objects.filter(name__in=list(names)):
        if snapshot_since is not None and segment.refreshed_at and segment.refreshed_at >= snapshot_since:
            people = SegmentMembership.objects.filter(segment=segment, subscriber_id__in=ids) \
                .values_list("subscriber_id", flat=True)
        else:
            people = segment_actions.members(segment, now=now).filter(pk__in=ids).values_list("pk", flat=True)
        for pk in people:
            found[pk].add(segment.name)
    return found


# --- Recommendations ---------------------------------------------------------
# A strategy takes the chunk's ids and preferences and returns product dicts
# per person; RECOMMENDATION_STRATEGY chooses one, so personalized models can
# replace the bestsellers later without touching templates.


def bestsellers_by_category() -> dict[str, list[dict[str, Any]]]:
    """Return the shop's bestsellers of the last 90 days per category ("" for all), cached for 10 minutes."""
    from subscribers.models import OrderItem

    cached = cache.get("content:bestsellers")
    if cached is not None:
        return cached
    since = timezone.now() - dt.timedelta(days=BESTSELLER_DAYS)
    rows = (OrderItem.objects.filter(order__occurred_at__gte=since, product__isnull=False)
            .values("product_id", "product__name", "product__url", "product__image_url", "product__price",
                    "product__category")
            .annotate(sold=Sum("quantity")).order_by("-sold", "product_id"))
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows[:2000]:
        item = {"name": row["product__name"], "url": row["product__url"], "image_url": row["product__image_url"],
                "price": row["product__price"], "category": row["product__category"]}
        if len(by_category[""]) < RECOMMENDATION_POOL:
            by_category[""].append(item)
        if len(by_category[row["product__category"]]) < RECOMMENDATION_POOL:
            by_category[row["product__category"]].append(item)
    result = dict(by_category)
    cache.set("content:bestsellers", result, 600)
    return result


def favourite_categories(ids: list[int]) -> dict[int, str]:
    """Return each person's favourite category: the attribute when set, else what they bought most."""
    from subscribers.models import OrderItem, Subscriber

    favourites = {pk: str(value) for pk, value in Subscriber.objects.filter(
        pk__in=ids, attributes__has_key="favourite_category").values_list("pk", "attributes__favourite_category")
        if value}
    missing = [pk for pk in ids if pk not in favourites]
    if missing:
        counts: dict[int, Counter[str]] = defaultdict(Counter)
        for pk, category, n in (OrderItem.objects.filter(order__subscriber_id__in=missing).exclude(category="")
                                .values_list("order__subscriber_id", "category").annotate(n=Count("id"))):
            counts[pk][category] += n
        favourites.update({pk: c.most_common(1)[0][0] for pk, c in counts.items()})
    return favourites


def bestsellers_in_favourite_category(ids: list[int], *, preferences: dict[int, Any]) -> dict[int, list[dict]]:
    pools = bestsellers_by_category()
    overall = pools.get("", [])
    favourites = favourite_categories([pk for pk in ids if getattr(preferences.get(pk), "personalization_allowed",
                                                                    True)])
    return {pk: pools.get(favourites.get(pk, ""), overall) or overall for pk in ids}


STRATEGIES: dict[str, Callable[..., dict[int, list[dict]]]] = {
    "bestsellers_in_favourite_category": bestsellers_in_favourite_category,
}


def recommend(ids: list[int], *, preferences: dict[int, Any]) -> dict[int, list[dict]]:
    strategy = STRATEGIES[getattr(settings, "RECOMMENDATION_STRATEGY", "bestsellers_in_favourite_category")]
    return strategy(ids, preferences=preferences)


def missing_values(queryset: Any, fields: Iterable[str]) -> dict[str, int]:
    """Return how many people of an audience lack each merge field (so a tag without fallback is safe or not)."""
    from django.db.models import IntegerField
    from django.db.models.functions import Coalesce

    checks = {}
    for name in fields:
        if name in ALWAYS_PRESENT or name not in MERGE_FIELDS:
            continue
        empty = Q(**{f"{name}__isnull": True})
        if name not in {"first_order_at", "last_order_at"}:
            empty |= Q(**{name: ""})
        checks[name] = Coalesce(Count("pk", filter=empty), 0, output_field=IntegerField())
    return queryset.aggregate(**checks) if checks else {}
