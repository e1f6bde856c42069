"""Each preferences task once through Celery (eager in tests), and the Beat schedule."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from preferences import actions
from preferences.models import Signup
from preferences.tasks import expire_signups_task, send_signup_confirmation_task
from subscribers.actions import ConsentEvidence

pytestmark = pytest.mark.django_db


def test_send_signup_confirmation_task_sends_once():
    signup = actions.request_signup(email="task@example.com", evidence=ConsentEvidence(method="form"))
    assert send_signup_confirmation_task.delay(signup.pk).get() is True
    assert send_signup_confirmation_task.delay(signup.pk).get() is False
    assert len(mail.outbox) == 1


def test_expire_signups_task():
    actions.request_signup(email="old@example.com", evidence=ConsentEvidence(method="form"))
    Signup.objects.update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert expire_signups_task.delay().get() == 1
    assert not Signup.objects.exists()


def test_the_expiry_job_is_scheduled_with_an_expiry(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["expire-signups"]
    assert entry["task"] == "preferences.tasks.expire_signups_task" and entry["options"]["expires"] > 0
