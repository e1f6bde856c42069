"""Fixtures for the preferences tests: a clean cache (rate limits), topics, links and evidence."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from preferences.models import Topic
from subscribers.actions import ConsentEvidence
from subscribers.models import ConsentMethod


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def topics(db) -> list[Topic]:
    return [
        Topic.objects.create(name="Newsletter", slug="newsletter", description="The monthly digest", position=1,
                             default_opt_in=True),
        Topic.objects.create(name="Offers", slug="offers", description="Sales and discount codes", position=2),
        Topic.objects.create(name="Product news", slug="product-news", description="New arrivals", position=3),
    ]


@pytest.fixture
def pc_evidence() -> ConsentEvidence:
    return ConsentEvidence(method=ConsentMethod.PREFERENCE_CENTER, ip_address="198.51.100.7", user_agent="pytest")


@pytest.fixture
def link_token():
    """Return ``token(subscriber)``: the signed token of a person's links, as in their emails."""
    from preferences.actions import ensure_preferences
    from preferences.links import PREFERENCE_SALT, sign

    def token(subscriber) -> str:
        return sign(ensure_preferences(subscriber).token, salt=PREFERENCE_SALT)

    return token
