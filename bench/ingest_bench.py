#!/usr/bin/env python
"""Benchmark sustained tracking-API ingestion over HTTP (gunicorn + PostgreSQL).

    .venv/bin/python bench/ingest_bench.py [--seconds 60] [--clients 4] [--batch 100]
        [--database-url postgres://postgres@127.0.0.1:5432/marketing_bench]

Starts gunicorn on loopback against a benchmark database, then N client
processes post Segment-style /v1/batch requests of 100 calls each (a shop's
realistic mix: page views, product views, cart adds, identifies and orders)
for the given time. Prints events/s stored durably (counted in the database
afterwards, not from responses), p50/p99 batch latency, and errors.
Goal: >= 5,000 events/s, p99 <= 250 ms per 100-event batch.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ensure_database, migrate

ROOT = Path(__file__).resolve().parent.parent
GOAL_EVENTS_PER_S = 5000
GOAL_P99_MS = 250


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def django_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DEBUG": "0", "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "marketing.settings",
            "SECRET_KEY": "bench-" + "k" * 60, "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING", "DB_CONN_MAX_AGE": "600", "VAR_DIR": str(ROOT / "bench" / "out" / "var")}


def prepare(database_url: str, people: int) -> str:
    """Create the database, migrate, empty the behaviour tables, add people and a write key."""
    ensure_database(database_url)
    env = django_env(database_url)
    migrate(env)
    python = sys.executable
    script = f"""
from django.db import connection
with connection.cursor() as c:
    c.execute("TRUNCATE subscribers_event, subscribers_orderitem, subscribers_order, subscribers_product, "
              "subscribers_anonymousvisitor, subscribers_writekey CASCADE")
from subscribers.demo import seed_demo
seed_demo(subscribers={people}, behaviour=False)
from subscribers.actions import create_write_key
print(create_write_key(name="bench")[1])
"""
    out = subprocess.run([python, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()
    return out[-1]


def make_batch(rng: random.Random, client: int, n: int, size: int, people: int) -> bytes:
    calls = []
    for i in range(size):
        mid = f"b{client}-{n}-{i}"
        known = rng.random() < 0.7
        who = {"userId": f"demo-{rng.randrange(people)}"} if known else {"anonymousId": f"anon-{client}-{n % 500}"}
        roll = rng.random()
        product = {"product_id": f"p-{rng.randrange(300)}", "name": "Trail runner", "category": "Shoes",
                   "price": 89.9}
        if roll < 0.40:
            call = {"type": "page", "name": "Home", "properties": {"url": "https://shop.example/",
                                                                   "title": "Shop"}}
        elif roll < 0.75:
            call = {"type": "track", "event": "Product Viewed", "properties": product}
        elif roll < 0.85:
            call = {"type": "track", "event": "Product Added", "properties": {**product, "quantity": 1}}
        elif roll < 0.95:
            call = {"type": "identify", "traits": {"firstName": "Ann", "lastName": "Lee"},
                    "context": {"locale": "lv-LV", "timezone": "Europe/Riga"}}
        else:
            call = {"type": "track", "event": "Order Completed",
                    "properties": {"order_id": mid, "total": 89.9, "currency": "EUR", "products": [product]}}
        calls.append({**call, **who, "messageId": mid, "timestamp": "2026-11-20T10:00:00Z",
                      "context": call.get("context", {"library": {"name": "bench"}})})
    return json.dumps({"batch": calls, "sentAt": "2026-11-20T10:00:01Z"}).encode()


def client(index: int, port: int, key: str, size: int, people: int, seconds: float, queue: mp.Queue) -> None:
    rng = random.Random(index)
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": auth}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors, n = [], 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = make_batch(rng, index, n, size, people)
        started = time.perf_counter()
        try:
            conn.request("POST", "/v1/batch", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - started)
        errors += not ok
        n += 1
    queue.put((latencies, errors, n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes (the Procfile default)")
    parser.add_argument("--worker-class", default="sync",
                        help="gunicorn worker class; sync (the Procfile's) spreads requests over processes, while "
                             "keep-alive threads can pin all clients to one process")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/marketing_bench")
    args = parser.parse_args()

    key = prepare(args.database_url, args.people)
    port = free_port()
    env = django_env(args.database_url)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "marketing.wsgi", "--bind", f"127.0.0.1:{port}", "--workers",
         str(args.workers), "--worker-class", args.worker_class, "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        queue: mp.Queue = mp.Queue()
        procs = [mp.Process(target=client, args=(i, port, key, args.batch, args.people, args.seconds, queue))
                 for i in range(args.clients)]
        started = time.monotonic()
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    latencies = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    batches = sum(r[2] for r in results)
    stored = int(subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from subscribers.models import Event; print(Event.objects.count())"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    identifies = round(batches * args.batch * 0.10)  # identify calls update people; they are not events
    calls_per_s = batches * args.batch / elapsed
    events_per_s = stored / elapsed
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"machine: {os.cpu_count()} cores; clients {args.clients}, batch {args.batch}, gunicorn "
          f"{args.workers} {args.worker_class} workers, {elapsed:.1f} s, load average {os.getloadavg()[0]:.1f}")
    print(f"batches sent        {batches:>10,}   errors {errors}")
    print(f"calls accepted/s    {calls_per_s:>10,.0f}")
    print(f"events stored/s     {events_per_s:>10,.0f}   (rows in subscribers_event; ~{identifies:,} identify "
          f"calls are profile updates, not rows)   goal >= {GOAL_EVENTS_PER_S:,}: "
          f"{'PASS' if events_per_s >= GOAL_EVENTS_PER_S else 'MISS'}")
    print(f"batch latency p50   {p50:>10.1f} ms")
    print(f"batch latency p99   {p99:>10.1f} ms   goal <= {GOAL_P99_MS} ms: {'PASS' if p99 <= GOAL_P99_MS else 'MISS'}")
    print(json.dumps({"bench": "ingest", "calls_per_s": round(calls_per_s), "events_per_s": round(events_per_s),
                      "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "errors": errors, "batches": batches}))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
