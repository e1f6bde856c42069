"""Configure the Celery application shared by web, workers and Beat."""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

# The embedded default broker (filesystem://) writes each message atomically; see marketing.broker.
TRANSPORT_ALIASES["filesystem"] = "marketing.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing.settings")

app = Celery("marketing")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
