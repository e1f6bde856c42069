#!/usr/bin/env python3
"""Benchmark the ESP tracking webhooks against their goal (>= 2,000 events/s) on gunicorn + PostgreSQL.

    cd /work/main && .venv/bin/python bench/webhook_bench.py \
        --database-url postgres://postgres@127.0.0.1:5432/marketing_webhook_bench
    .venv/bin/python bench/webhook_bench.py --deliveries 5000          # quick check

What it does:

1. creates the database if missing, migrates it, empties the delivery, event,
   totals and subscriber tables, and stores --deliveries subscribed people, each
   with one sent delivery of one of two campaign variants (so every batch
   updates the same two hot MessageStats rows, as a real send does);
2. generates a deterministic SendGrid event stream for them, in time order:
   processed and delivered for everyone (1% hard bounces instead), opens for
   45% (a quarter of them Apple Mail Privacy Protection prefetches flagged
   ``sg_machine_open``), clicks for 12%, a few spam reports and unsubscribes,
   and 1% events for messages this app never sent. Every event carries the
   ``delivery_id`` custom arg that AnymailMessage metadata would put there;
3. starts gunicorn (sync workers, persistent DB connections, DEBUG off) on the
   real URLconf, WEBHOOK_SECRET basic auth on;
4. posts the stream as SendGrid does - JSON arrays of --batch events - from
   --clients concurrent connections; prints events/s over the wall time and
   p50/p99 latency per post;
5. re-posts 10% of the batches (ESP retries after a timeout) and checks that
   nothing changed; then posts --single-events events one per request (the
   shape of Postmark or Mailgun, one event per post) and reports those figures;
6. checks the database against the stream (events, statuses, totals, people
   suppressed), prints PASS/MISS and one JSON line (also written to bench/out/).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import ensure_database, migrate, pg_dsn

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/marketing_webhook_bench"
GOAL_EVENTS_PER_S = 2_000
WEBHOOK_SECRET = "bench-esp:bench-secret"
MESSAGE_KEYS = ("campaign:1:variant:1", "campaign:1:variant:2")
HUMAN_UAS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)


# --- environment -------------------------------------------------------------


def configure_env(database_url: str) -> None:
    os.environ["DEBUG"] = "1"
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "marketing.settings"
    os.environ.setdefault("VAR_DIR", str(OUT / "var"))
    os.environ["ANYMAIL"] = json.dumps({"WEBHOOK_SECRET": WEBHOOK_SECRET})


def server_version(database_url: str) -> str:
    import psycopg

    with psycopg.connect(pg_dsn(database_url)) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


# --- data ----------------------------------------------------------------------


def reset_and_seed(database_url: str, deliveries: int) -> tuple[list[tuple[int, str, str, str]], dt.datetime]:
    """Empty the tables and store people with one sent delivery each; return (id, anymail id, email, key) rows."""
    import psycopg
    from django.utils import timezone

    from campaigns.models import Delivery, DeliveryStatus
    from subscribers.models import Subscriber, SubscriberStatus

    with psycopg.connect(pg_dsn(database_url)) as conn:
        conn.execute("TRUNCATE campaigns_deliveryevent, campaigns_delivery, campaigns_messagestats, "
                     "subscribers_subscriber RESTART IDENTITY CASCADE")
    sent_at = timezone.now() - dt.timedelta(hours=3)
    people = [
        Subscriber(email=f"bench{i}@example.com", email_key=f"bench{i}@example.com", first_name=f"B{i}",
                   status=SubscriberStatus.SUBSCRIBED, confirmed_at=sent_at, status_changed_at=sent_at)
        for i in range(deliveries)
    ]
    Subscriber.objects.bulk_create(people, batch_size=5000)
    rows = [
        Delivery(subscriber_id=p.pk, message_key=MESSAGE_KEYS[i % 2], status=DeliveryStatus.SENT,
                 esp_name="SendGrid", esp_message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{i}")),
                 sent_at=sent_at, why={"reason": "bench"})
        for i, p in enumerate(people)
    ]
    Delivery.objects.bulk_create(rows, batch_size=5000)
    with psycopg.connect(pg_dsn(database_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE subscribers_subscriber, campaigns_delivery")
    return [(d.pk, d.esp_message_id, p.email, d.message_key) for d, p in zip(rows, people, strict=True)], sent_at


def event_stream(rows: list[tuple[int, str, str, str]], sent_at: dt.datetime, seed: int
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return SendGrid events in time order and what the database should hold after them."""
    rng = random.Random(seed)
    t0 = int(sent_at.timestamp())
    events: list[dict[str, Any]] = []
    expect = {key: dict.fromkeys(("delivered", "opens", "human_opens", "clicks", "bounces", "complaints",
                                   "unsubscribes"), 0) for key in MESSAGE_KEYS}
    expect_rows = 0
    counter = 0

    def add(kind: str, at: int, delivery: tuple[int, str, str, str], **extra: Any) -> None:
        nonlocal counter, expect_rows
        counter += 1
        delivery_id, anymail_id, email, _key = delivery
        events.append({"email": email, "timestamp": at, "event": kind, "anymail_id": anymail_id,
                       "delivery_id": str(delivery_id), "sg_event_id": f"sg{counter:09d}",
                       "sg_message_id": f"{anymail_id[:22]}.filter0425p1mdw1.{counter}.0",
                       "smtp-id": f"<{anymail_id}@ismtpd0006p1sjc2.sendgrid.net>", "category": ["spring"], **extra})
        expect_rows += 1

    for delivery in rows:
        key = delivery[3]
        start = t0 + rng.randint(0, 900)
        add("processed", start, delivery)
        if rng.random() < 0.01:
            add("bounce", start + 4, delivery, type="bounce", status="5.1.1",
                reason="550 5.1.1 The email account that you tried to reach does not exist.")
            expect[key]["bounces"] += 1
            continue
        delivered = start + rng.randint(2, 30)
        add("delivered", delivered, delivery, response="250 2.0.0 OK gsmtp", ip="167.89.17.173", tls=1)
        expect[key]["delivered"] += 1
        roll = rng.random()
        if roll < 0.45:
            if rng.random() < 0.25:
                add("open", delivered + 1, delivery, useragent="Mozilla/5.0", ip="17.58.63.10",
                    sg_machine_open=True)
                expect[key]["opens"] += 1
            opened = delivered + rng.randint(300, 7200)
            add("open", opened, delivery, useragent=rng.choice(HUMAN_UAS), ip=f"203.0.113.{rng.randint(1, 254)}",
                sg_machine_open=False)
            expect[key]["opens"] += 1
            expect[key]["human_opens"] += 1
            if rng.random() < 0.27:
                add("click", opened + rng.randint(5, 300), delivery, useragent=rng.choice(HUMAN_UAS),
                    url=f"https://shop.example.com/spring?item={rng.randint(1, 40)}",
                    url_offset={"index": 0, "type": "html"})
                expect[key]["clicks"] += 1
        elif roll < 0.452:
            add("spamreport", delivered + rng.randint(60, 3600), delivery)
            expect[key]["complaints"] += 1
        elif roll < 0.455:
            add("unsubscribe", delivered + rng.randint(60, 3600), delivery)
            expect[key]["unsubscribes"] += 1
    unknown = max(1, len(events) // 100)
    for n in range(unknown):
        events.append({"email": f"stranger{n}@example.com", "timestamp": t0 + rng.randint(0, 9000),
                       "event": "delivered", "anymail_id": str(uuid.uuid4()), "sg_event_id": f"unknown{n:08d}"})
    events.sort(key=lambda e: e["timestamp"])
    return events, {"per_message": expect, "event_rows": expect_rows, "unmatched": unknown}


def chunks(events: list[dict[str, Any]], size: int) -> list[tuple[int, bytes]]:
    return [(len(events[i:i + size]), json.dumps(events[i:i + size]).encode())
            for i in range(0, len(events), size)]


# --- server and load -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + "k" * 60,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DB_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    cmd = [str(gunicorn), "marketing.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
           "--worker-class", "sync", "--log-level", "warning", "--timeout", "120"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("HEAD", "/anymail/sendgrid/tracking/")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    stop(proc)
    sys.exit("gunicorn did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def post_all(port: int, bodies: list[tuple[int, bytes]], clients: int) -> dict[str, Any]:
    """Post every body from ``clients`` threads; return events/s over the wall time and latency percentiles."""
    headers = {"Content-Type": "application/json",
               "Authorization": "Basic " + base64.b64encode(WEBHOOK_SECRET.encode()).decode()}
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            _count, body = bodies[index]
            started = time.perf_counter()
            try:
                conn.request("POST", "/anymail/sendgrid/tracking/", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status = 0
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    events = sum(count for count, _ in bodies)
    ordered = sorted(latencies)
    return {
        "posts": len(bodies),
        "events": events,
        "wall_s": round(wall, 3),
        "events_per_s": round(events / wall, 1),
        "posts_per_s": round(len(bodies) / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "failures": len(failures),
        "failure_statuses": sorted(set(failures)),
    }


# --- checks --------------------------------------------------------------------


def db_state() -> dict[str, Any]:
    from django.db.models import Count

    from campaigns.models import DeliveryEvent, MessageStats
    from subscribers.models import Subscriber

    stats = {s.message_key: s for s in MessageStats.objects.all()}
    return {
        "event_rows": DeliveryEvent.objects.count(),
        "per_message": {
            key: {name: getattr(stats[key], name) if key in stats else 0
                  for name in ("delivered", "opens", "human_opens", "clicks", "bounces", "complaints",
                               "unsubscribes")}
            for key in MESSAGE_KEYS
        },
        "unmatched": stats["unmatched:sendgrid"].delivered if "unmatched:sendgrid" in stats else 0,
        "people": dict(Subscriber.objects.values_list("status").annotate(n=Count("id"))),
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="events per post (SendGrid batches many)")
    parser.add_argument("--workers", type=int, default=max(2, 2 * (os.cpu_count() or 1)), help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=None, help="concurrent posting connections (default: workers)")
    parser.add_argument("--single-events", type=int, default=2_000, help="events posted one per request afterwards")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    clients = args.clients or args.workers

    configure_env(args.database_url)
    ensure_database(args.database_url)
    migrate()
    import django

    django.setup()
    print(f"seeding {args.deliveries:,} people with one sent delivery each …", flush=True)
    rows, sent_at = reset_and_seed(args.database_url, args.deliveries)
    events, expected = event_stream(rows, sent_at, args.seed)
    bodies = chunks(events, args.batch)
    print(f"{len(events):,} SendGrid events in {len(bodies):,} posts of up to {args.batch}", flush=True)

    port = free_port()
    proc = start_gunicorn(port, args.workers)
    try:
        # Warm every worker (imports, DB connection) with posts about unknown messages.
        warm = [(1, json.dumps([{"email": "w@example.com", "timestamp": 1, "event": "delivered",
                                 "anymail_id": "warm", "sg_event_id": f"warm{i}"}]).encode())
                for i in range(args.workers * 4)]
        post_all(port, warm, clients)
        from campaigns.models import MessageStats

        MessageStats.objects.filter(message_key="unmatched:sendgrid").delete()

        print(f"posting with {clients} connections to {args.workers} gunicorn workers …", flush=True)
        main_run = post_all(port, bodies, clients)
        after_main = db_state()

        rng = random.Random(args.seed + 1)
        retried = rng.sample(bodies, max(1, len(bodies) // 10))
        retry_run = post_all(port, retried, clients)
        after_retry = db_state()

        single_events = [e for e in events if e["event"] == "open"][: args.single_events]
        for n, e in enumerate(single_events):  # new opens of the same people, later
            single_events[n] = {**e, "sg_event_id": f"single{n:08d}", "timestamp": e["timestamp"] + 86_400}
        single_run = post_all(port, chunks(single_events, 1), clients) if single_events else None
    finally:
        stop(proc)

    checks = {
        "no failed posts": main_run["failures"] == 0 and retry_run["failures"] == 0,
        "every event stored once": after_main["event_rows"] == expected["event_rows"],
        "totals match the stream": after_main["per_message"] == expected["per_message"],
        "unknown messages counted": after_main["unmatched"] == expected["unmatched"],
        "retried posts changed nothing": after_retry["event_rows"] == after_main["event_rows"]
        and after_retry["per_message"] == after_main["per_message"],
        "bounces and complaints suppressed": after_main["people"].get("bounced", 0)
        == sum(m["bounces"] for m in expected["per_message"].values())
        and after_main["people"].get("complained", 0) == sum(m["complaints"] for m in expected["per_message"].values()),
    }
    goal_ok = main_run["events_per_s"] >= GOAL_EVENTS_PER_S
    print()
    print(f"PostgreSQL {server_version(args.database_url)}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, gunicorn {args.workers} sync workers, {clients} client connections")
    print(f"batched posts ({args.batch} events/post): {main_run['events']:,} events in {main_run['wall_s']} s = "
          f"{main_run['events_per_s']:,.0f} events/s ({main_run['posts_per_s']} posts/s), "
          f"p50 {main_run['p50_ms']} ms, p99 {main_run['p99_ms']} ms per post  "
          f"[{verdict(goal_ok)} goal >= {GOAL_EVENTS_PER_S:,} events/s]")
    print(f"retried posts (all duplicates): {retry_run['events']:,} events, {retry_run['events_per_s']:,.0f} "
          f"events/s, p50 {retry_run['p50_ms']} ms, p99 {retry_run['p99_ms']} ms")
    if single_run:
        print(f"one event per post: {single_run['events']:,} events, {single_run['events_per_s']:,.0f} events/s, "
              f"p50 {single_run['p50_ms']} ms, p99 {single_run['p99_ms']} ms")
    for name, ok in checks.items():
        print(f"  {verdict(ok)}  {name}")
    if not checks["totals match the stream"]:
        print("  expected", expected["per_message"], "\n  got     ", after_main["per_message"])
    result = {"deliveries": args.deliveries, "batch": args.batch, "workers": args.workers, "clients": clients,
              "batched": main_run, "retried": retry_run, "single": single_run, "checks": checks,
              "goal_events_per_s": GOAL_EVENTS_PER_S, "cpus": os.cpu_count()}
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"webhook_bench-{args.deliveries}-b{args.batch}-w{args.workers}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0 if goal_ok and all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
