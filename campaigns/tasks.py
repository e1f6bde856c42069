"""Celery tasks of the campaigns app (discovered by Celery through this module)."""

from campaigns.segments.tasks import (  # noqa: F401 - registers the tasks
    count_segment_task,
    recount_segments_task,
    refresh_segment_task,
    refresh_tracked_segments_task,
)
from campaigns.sending.tasks import (  # noqa: F401 - registers the tasks
    dispatch_campaigns_task,
    reconcile_sends_task,
    send_chunk_task,
)
