"""Celery tasks for segments: thin wrappers that take ids and call one action each."""

from celery import shared_task

from campaigns.segments import actions
from campaigns.segments.models import Segment


@shared_task(ignore_result=True)
def count_segment_task(segment_id: int) -> None:
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is not None:
        actions.count_segment(segment)


@shared_task(ignore_result=True)
def recount_segments_task() -> None:
    actions.recount_segments()


@shared_task(ignore_result=True)
def refresh_segment_task(segment_id: int) -> None:
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is not None:
        actions.refresh_membership(segment)


@shared_task(ignore_result=True)
def refresh_tracked_segments_task() -> None:
    actions.refresh_tracked_segments()
