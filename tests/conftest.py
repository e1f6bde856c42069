"""Shared fixtures: factories for people and topics, and a CSV writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from preferences.models import Topic
from subscribers.models import AttributeDefinition, Subscriber, SubscriberStatus


@pytest.fixture
def make_subscriber(db):
    counter = iter(range(1, 100000))

    def make(**overrides) -> Subscriber:
        n = next(counter)
        fields = {"email": f"person{n}@example.com", "status": SubscriberStatus.SUBSCRIBED, "first_name": f"P{n}"}
        fields.update(overrides)
        subscriber = Subscriber(**fields)
        subscriber.save()
        return subscriber

    return make


@pytest.fixture
def topic(db) -> Topic:
    return Topic.objects.create(name="Offers", slug="offers", description="Sales and discount codes")


@pytest.fixture
def attribute(db):
    def make(key: str, kind: str = "text", **overrides) -> AttributeDefinition:
        return AttributeDefinition.objects.create(key=key, label=overrides.pop("label", key.title()), type=kind,
                                                  **overrides)

    return make


@pytest.fixture
def write_csv(tmp_path: Path):
    def write(text: str, name: str = "list.csv", encoding: str = "utf-8", bom: bool = False) -> Path:
        path = tmp_path / name
        data = text.encode(encoding)
        if bom:
            data = b"\xef\xbb\xbf" + data
        path.write_bytes(data)
        return path

    return write
