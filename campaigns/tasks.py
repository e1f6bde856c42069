"""Celery tasks of the campaigns app (discovered by Celery through this module)."""

from campaigns.journeys.tasks import (  # noqa: F401 - registers the tasks
    advance_journeys_task,
    enroll_subscribed_task,
    handle_journey_events_task,
    run_journeys_task,
)
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
