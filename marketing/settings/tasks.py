"""Configure Celery and Beat; system schedules live here, in code."""

from celery.schedules import crontab

from .env import VAR_DIR, env_bool, env_int, env_str

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "broker"
    for sub in ("queue", "processed"):
        (_queue_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
    }

if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A task taken by a worker that dies (acks late) goes back to the queue after this many seconds.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}

CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

CELERY_BEAT_SCHEDULE = {
    "purge-old-import-files": {
        "task": "subscribers.tasks.purge_import_files_task",
        "schedule": crontab(minute=17, hour=3),
        "options": {"expires": 60 * 60},
    },
}
# Unconfirmed signups (double opt-in) are deleted when their link expires.
CELERY_BEAT_SCHEDULE["expire-signups"] = {
    "task": "preferences.tasks.expire_signups_task",
    "schedule": crontab(minute=41),
    "options": {"expires": 30 * 60},
}
# Segments: tracked segments are materialized (entries and exits recorded), counts kept current.
CELERY_BEAT_SCHEDULE["refresh-tracked-segments"] = {
    "task": "campaigns.segments.tasks.refresh_tracked_segments_task",
    "schedule": crontab(minute="*/15"),
    "options": {"expires": 10 * 60},
}
CELERY_BEAT_SCHEDULE["recount-segments"] = {
    "task": "campaigns.segments.tasks.recount_segments_task",
    "schedule": crontab(minute=7),
    "options": {"expires": 30 * 60},
}
# Campaigns: start due campaigns and queue due recipients; resolve sends a crashed worker left open.
CELERY_BEAT_SCHEDULE["dispatch-campaigns"] = {
    "task": "campaigns.sending.tasks.dispatch_campaigns_task",
    "schedule": 60.0,
    "options": {"expires": 55},
}
CELERY_BEAT_SCHEDULE["reconcile-sends"] = {
    "task": "campaigns.sending.tasks.reconcile_sends_task",
    "schedule": crontab(minute="*/5"),
    "options": {"expires": 4 * 60},
}
# Journeys: look for people segment, date and inactivity triggers choose, and advance everyone who is due.
# Every 10 seconds: a person whose wait ends is advanced within seconds; a tick with nothing to do is a few queries.
CELERY_BEAT_SCHEDULE["run-journeys"] = {
    "task": "campaigns.journeys.tasks.run_journeys_task",
    "schedule": 10.0,
    "options": {"expires": 9},
}
