"""Settings for the test suite: the same modules, plus fast hashing and eager tasks."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("VAR_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "var", "test"))

from marketing.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
