"""Choose the database and cache: SQLite and files by default, URLs when scaled."""

import dj_database_url

from .env import VAR_DIR, env_int, env_str

VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'marketing.sqlite3'}")
_SQLITE = DATABASE_URL.startswith("sqlite:")
# A server database's connections are kept for a minute (checked before reuse): a Celery worker runs one task
# after another, and a new PostgreSQL connection per task costs a backend process and cold catalog caches for
# every task. SQLite's are opened per request as before (cheap, and an open one can hold table locks).
_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 0 if _SQLITE else 60)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=_CONN_MAX_AGE, conn_health_checks=True)}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and Beat share one file: WAL lets readers run beside the
    # writer, IMMEDIATE transactions make writers queue instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # A file cache is shared by the web and worker processes of the embedded
    # setup, which import progress needs.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
