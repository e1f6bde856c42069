"""Configure the Celery application shared by web, workers and Beat."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing.settings")

app = Celery("marketing")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
