"""Settings: safe defaults, refusal of unsafe production setups, a clean deploy check."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "marketing.settings", **env})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120)


def test_refuses_to_start_without_secret_key_in_production(tmp_path):
    result = run_manage("check", env={"DEBUG": "0", "VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "x7#kq2!vz9@m4$w8^p3&r6*t1(y5)u0-a_s+d=f[g]h{j}l;n:b<c>e?i",
        "ALLOWED_HOSTS": "marketing.example.com",
        "VAR_DIR": str(tmp_path),
    }
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_bad_boolean_is_a_clear_configuration_error(tmp_path):
    result = run_manage("check", env={"DEBUG": "maybe", "VAR_DIR": str(tmp_path)})
    assert result.returncode != 0 and "DEBUG must be true or false" in result.stderr


@pytest.mark.parametrize("code", ["en", "lv", "uz", "pl", "tr", "bg"])
def test_the_six_languages_are_configured(settings, code):
    assert code in dict(settings.LANGUAGES)


def test_defaults_are_the_embedded_setup(settings):
    assert settings.TIME_ZONE == "UTC" and settings.USE_TZ
    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["options"]["expires"] > 0


def test_every_scheduled_and_journey_task_is_registered_with_the_worker(settings):
    """A worker only runs tasks its app imports: each Beat job and each journey task must be among them."""
    from marketing.celery import app

    app.loader.import_default_modules()
    wanted = {job["task"] for job in settings.CELERY_BEAT_SCHEDULE.values()}
    wanted |= {"campaigns.journeys.tasks.advance_journeys_task", "campaigns.journeys.tasks.handle_journey_events_task",
               "campaigns.journeys.tasks.enroll_subscribed_task"}
    assert wanted - set(app.tasks) == set()
