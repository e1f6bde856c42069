#!/usr/bin/env python3
"""Benchmark the preference-center page under load: gunicorn, PostgreSQL, 1,000,000 subscribers, 100 clients.

Target (issue 4): p95 <= 50 ms with no errors for random subscribers' links,
100 concurrent clients on loopback.

    # once: a bench database with 1,000,000 people (about 10 minutes)
    createdb -h 127.0.0.1 -U postgres marketing_prefbench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/marketing_prefbench DEBUG=1 \\
        python manage.py migrate && python manage.py seed_demo --subscribers 1000000 --no-behaviour
    # then
    .venv/bin/python bench/prefcenter_bench.py [--duration 30] [--rate 200]

What it does: migrates the bench database, gives every subscriber a
preferences row (the link token; set-based, once), picks --sample random
subscribers and signs their links, starts gunicorn (DEBUG off, persistent DB
connections, Redis cache for the rate limiter, which stays on with a high
limit so its cost is measured), then drives GET /preferences/<token>/ from
--concurrency concurrent clients on 127.0.0.1 in two phases, each bounded by
--duration seconds:

  paced      an open-loop schedule of --rate requests/s spread over the
             clients (latency counted from the scheduled start, so queueing
             behind a slow response is not hidden): the page's latency under
             a steady load. This phase decides PASS/MISS.
  saturation every client sends its next request as soon as the previous one
             returns: the throughput ceiling of this machine. Latency here is
             mostly waiting in line (Little's law: clients / throughput).

Only a bounded, local load: nothing leaves 127.0.0.1. Results also go to
bench/out/prefcenter_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TARGET_P95_MS = 50.0


def django_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "marketing.settings",
        "DATABASE_URL": args.database_url,
        "DB_CONN_MAX_AGE": "600",
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-0f5b2c9e7a1d4e8f9a3b6c2d1e0f7a8b9c4d5e6f",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "REDIS_URL": args.redis_url,
        "PREFERENCE_CENTER_RATE_LIMIT": "100000000/m",
        "VAR_DIR": str(OUT / "var"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def prepare(args: argparse.Namespace) -> tuple[list[str], dict[str, object]]:
    """Migrate, backfill link tokens, sample people; return their page paths and facts about the data."""
    os.environ.update(django_env(args))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from preferences.actions import ensure_preferences_for
    from preferences.links import PREFERENCE_SALT, sign
    from preferences.models import SubscriberPreferences
    from subscribers.models import Subscriber

    call_command("migrate", verbosity=0)
    people = Subscriber.objects.count()
    if people < args.subscribers:
        sys.exit(f"The bench database has {people:,} subscribers; seed it first (see this file's docstring).")
    have = SubscriberPreferences.objects.count()
    if have < people:
        started = time.monotonic()
        ids = Subscriber.objects.filter(preferences__isnull=True).order_by("pk").values_list("pk", flat=True)
        batch: list[int] = []
        for pk in ids.iterator(chunk_size=20000):
            batch.append(pk)
            if len(batch) == 5000:
                ensure_preferences_for(subscriber_ids=batch)
                batch = []
        if batch:
            ensure_preferences_for(subscriber_ids=batch)
        print(f"Link tokens for {people - have:,} people in {time.monotonic() - started:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE preferences_subscriberpreferences")
        cursor.execute("SELECT token FROM preferences_subscriberpreferences TABLESAMPLE SYSTEM (5) LIMIT %s",
                       [args.sample])
        tokens = [row[0] for row in cursor.fetchall()]
    random.Random(7).shuffle(tokens)
    paths = [f"/preferences/{sign(token, salt=PREFERENCE_SALT)}/" for token in tokens]

    client = Client(HTTP_HOST="127.0.0.1")
    with CaptureQueriesContext(connection) as queries:
        status = client.get(paths[0]).status_code
    plan = ""
    if connection.vendor == "postgresql":
        sql = [q["sql"] for q in queries.captured_queries if "preferences_subscriberpreferences" in q["sql"]][0]
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql)
            plan = " / ".join(row[0].strip() for row in cursor.fetchall()[:3])
    facts = {"subscribers": people, "sampled_links": len(paths), "queries_per_page": len(queries.captured_queries),
             "first_status": status, "token_lookup_plan": plan}
    connection.close()
    return paths, facts


async def fetch(path: str, port: int) -> tuple[int, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Language: en\r\n"
                 "User-Agent: prefcenter-bench\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    while await reader.read(65536):
        pass
    writer.close()
    parts = status_line.split()
    return (int(parts[1]) if len(parts) > 1 else 0), time.perf_counter() - started


async def saturation(paths: list[str], port: int, clients: int, duration: float) -> dict[str, object]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def client() -> None:
        while time.perf_counter() < deadline:
            path = paths[next(counter) % len(paths)]
            try:
                status, took = await fetch(path, port)
            except OSError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(took)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return summarize(latencies, errors, time.perf_counter() - started)


async def paced(paths: list[str], port: int, clients: int, duration: float, rate: float) -> dict[str, object]:
    """Open loop: request i is due at start + i/rate; its latency counts from then, queueing included."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    total = int(duration * rate)
    start = time.perf_counter() + 0.1
    counter = iter(range(total))

    async def client() -> None:
        for i in counter:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                status, _took = await fetch(paths[i % len(paths)], port)
            except OSError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - due)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return summarize(latencies, errors, time.perf_counter() - start)


def summarize(latencies: list[float], errors: dict[str, int], elapsed: float) -> dict[str, object]:
    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100 * len(ms)))], 1) if ms else float("nan")

    return {"requests": len(ms), "errors": errors, "error_count": sum(errors.values()),
            "throughput_rps": round(len(ms) / elapsed, 1), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "max_ms": round(ms[-1], 1) if ms else None, "mean_ms": round(statistics.fmean(ms), 1) if ms else None}


def start_gunicorn(args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "marketing.wsgi:application", "--bind", f"127.0.0.1:{args.port}",
               "--workers", str(args.workers), "--threads", str(args.threads), "--worker-class", "gthread",
               "--backlog", "2048", "--log-level", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=django_env(args), start_new_session=True)


def wait_ready(path: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _ = asyncio.run(fetch(path, port))
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("gunicorn did not answer in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/marketing_prefbench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--subscribers", type=int, default=1_000_000, help="expected people in the database")
    parser.add_argument("--sample", type=int, default=20_000, help="random people whose links are requested")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30, help="seconds per phase")
    parser.add_argument("--rate", type=float, default=100,
                        help="requests/s of the paced phase (100 clients each loading a page a second)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn processes (one per core)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (gthread)")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    when = dt.datetime.now().astimezone()
    paths, facts = prepare(args)
    print(f"{when:%Y-%m-%d %H:%M %Z}: {facts['subscribers']:,} subscribers, {len(paths):,} random links, "
          f"{facts['queries_per_page']} queries per page, load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores")
    if facts["token_lookup_plan"]:
        print(f"Token lookup: {facts['token_lookup_plan']}")
    server = start_gunicorn(args)
    try:
        wait_ready(paths[0], args.port)
        asyncio.run(saturation(paths, args.port, args.concurrency, 5))  # warm-up
        results = {
            "paced": asyncio.run(paced(paths, args.port, args.concurrency, args.duration, args.rate)),
            "saturation": asyncio.run(saturation(paths, args.port, args.concurrency, args.duration)),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    ok = results["paced"]["p95_ms"] <= TARGET_P95_MS and results["paced"]["error_count"] == 0
    for name, r in results.items():
        label = f"{name} ({args.rate:g} req/s)" if name == "paced" else name
        print(f"{label:<20} {r['requests']:>7,} requests  {r['throughput_rps']:>7} req/s  p50 {r['p50_ms']} ms  "
              f"p95 {r['p95_ms']} ms  p99 {r['p99_ms']} ms  max {r['max_ms']} ms  errors {r['error_count']} "
              f"{r['errors'] or ''}")
    print(f"{'PASS' if ok else 'MISS'}: paced p95 {results['paced']['p95_ms']} ms (target <= {TARGET_P95_MS:g} ms, "
          f"no errors) with {args.concurrency} concurrent clients; gunicorn {args.workers}x{args.threads} gthread; "
          f"load average after {os.getloadavg()[0]:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "prefcenter_bench.json").write_text(json.dumps(
        {"when": when.isoformat(), "args": vars(args), "facts": facts, "results": results, "pass": ok}, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
