"""Segment snapshots on the real stack: through a Celery worker, and two refreshes at once."""

import threading
import time

import pytest
from django.db import connection

from campaigns.segments import actions
from campaigns.segments.models import Segment, SegmentMembership, SegmentMembershipChange, SegmentRefresh
from campaigns.segments.tasks import refresh_segment_task
from subscribers.models import Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LATVIA = {"match": "all", "rules": [{"field": "country", "op": "equals", "value": "LV"}]}


def people(n: int, country: str) -> None:
    for i in range(n):
        Subscriber(email=f"{country.lower()}{i}@example.com", country=country, status="subscribed").save()


def test_snapshot_refresh_through_a_real_worker(worker):
    people(30, "LV")
    people(5, "EE")
    segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA, track_membership=True))
    refresh_segment_task.delay(segment.pk)
    deadline = time.monotonic() + 60
    while not SegmentRefresh.objects.filter(segment=segment).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    refresh = SegmentRefresh.objects.get(segment=segment)
    assert (refresh.members, refresh.entered, refresh.left) == (30, 30, 0)
    assert SegmentMembership.objects.filter(segment=segment).count() == 30
    segment.refresh_from_db()
    assert segment.member_count == 30


def test_two_refreshes_at_once_never_record_a_change_twice(real_stack):
    people(200, "LV")
    segment = actions.save_segment(Segment(name="Latvia", rules=LATVIA, track_membership=True))
    errors = []

    def refresh():
        try:
            actions.refresh_membership(Segment.objects.get(pk=segment.pk))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert SegmentMembership.objects.filter(segment=segment).count() == 200
    assert SegmentMembershipChange.objects.filter(segment=segment, entered=True).count() == 200
    refreshes = list(SegmentRefresh.objects.filter(segment=segment).order_by("started_at", "id"))
    assert [(r.entered, r.initial) for r in refreshes] == [(200, True), (0, False)]
