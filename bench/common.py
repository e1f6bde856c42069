"""Helpers the benchmarks share: the benchmark database and its schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def pg_dsn(database_url: str, dbname: str | None = None) -> str:
    """Return ``database_url`` as a psycopg DSN, optionally for another database on the same server."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        sys.exit(f"--database-url must be a PostgreSQL URL, not {database_url!r}")
    path = f"/{dbname}" if dbname is not None else parts.path
    return urlunsplit(("postgresql", parts.netloc, path, parts.query, parts.fragment))


def ensure_database(database_url: str) -> None:
    """Create the benchmark database if it does not exist yet."""
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(pg_dsn(database_url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def migrate(env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
