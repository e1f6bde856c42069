"""A background import through a real Celery worker on PostgreSQL and Redis."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from preferences.models import Topic, TopicSubscription
from subscribers import actions
from subscribers.models import ImportJob, ImportStatus, Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(job_id: int, status: str, timeout: float = 60) -> ImportJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ImportJob.objects.get(pk=job_id)
        if job.status in {status, ImportStatus.FAILED}:
            return job
        time.sleep(0.2)
    raise AssertionError(f"import {job_id} did not reach {status}; it is {job.status}")


def test_background_import_through_a_real_worker(worker, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    topic = Topic.objects.create(name="News", slug="news")
    rows = "".join(f"person{i}@example.com;Person {i};LV\n" for i in range(500))
    upload = SimpleUploadedFile("big.csv", ("Email Address;First Name;CC\n" + rows + "broken;X;LV\n").encode())

    job = actions.start_import(uploaded=upload, created_by_id=None, topic_id=topic.pk, skip_bad_rows=True)
    job = wait_for(job.pk, ImportStatus.CHECKED)
    assert job.status == ImportStatus.CHECKED, job.message
    assert (job.total_rows, job.new_count, job.error_count) == (501, 500, 1)
    assert not Subscriber.objects.exists()

    actions.confirm_import(job)
    job = wait_for(job.pk, ImportStatus.DONE)
    assert job.status == ImportStatus.DONE, job.message
    assert Subscriber.objects.count() == 500
    assert TopicSubscription.objects.filter(topic=topic).count() == 500
    assert job.report and b"502,,error" in job.report.read()
