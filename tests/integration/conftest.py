"""Integration tests run against the real stack: PostgreSQL and a Redis (or RabbitMQ) broker.

They are skipped on the embedded default (SQLite, filesystem broker). .ci/run
runs the suite a second time against PostgreSQL and Redis with
REQUIRE_INTEGRATION=1, which turns any skip here into a failure.
"""

import os

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from marketing.celery import app


@pytest.fixture
def real_stack(settings):
    problems = []
    if connection.vendor != "postgresql":
        problems.append("DATABASE_URL is not PostgreSQL")
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "amqp://")):
        problems.append("CELERY_BROKER_URL is not Redis or RabbitMQ")
    if problems:
        message = "needs the real stack: " + "; ".join(problems)
        if os.environ.get("REQUIRE_INTEGRATION") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def worker(real_stack):
    """Run a real Celery worker (solo pool) on the configured broker for the test."""
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING"):
            yield
    finally:
        app.conf.task_always_eager = True
