#!/usr/bin/env python3
"""Benchmark sending a campaign end to end: real Celery workers on Redis, Anymail, a mock ESP with latency.

    cd /work/main
    .venv/bin/python bench/send_bench.py --database-url postgres://postgres@127.0.0.1:5432/marketing_segbench
    .venv/bin/python bench/send_bench.py ... --kill --segment-percent 20     # crash one worker mid-send
    .venv/bin/python bench/send_bench.py ... --batch     # Postmark's batch API: 500 messages per call
    .venv/bin/python bench/send_bench.py ... --processes 1   # one process per worker (default 2: its --concurrency)

The database must hold demo data (``seed_demo --subscribers 1000000``). The
script:

1. prepares an audience: a segment of ``--segment-percent`` % of everyone
   (a stable random bucket), a topic every subscribed person in it is
   subscribed to, and marketing consent for those who lack it (set-based SQL);
2. writes a personalized 1.6 KB template (8 merge tags with fallbacks, a
   recommendations loop, a dynamic block for “Loyal customers”) and times
   rendering it per core for real recipients, and a same-size template
   without personalization, printing the ratio;
3. starts a mock Postmark API (``tests/mock_esp.py``) answering each call after
   ``--latency`` seconds and counting what it accepts per delivery id, and
   ``--workers`` Celery workers (``--processes`` each, ``SEND_CONCURRENCY`` ESP
   calls in flight) on Redis with Anymail's real Postmark backend, or with
   ``--batch`` our subclass of it, ``campaigns.sending.postmark`` (the same
   payloads, up to 500 per ``email/batch`` call);
4. schedules the campaign and, acting as Beat, runs the dispatch and the
   crash recovery every few seconds until every recipient is done;
   the load average (other jobs on the machine) is printed at the start
   and the end;
5. with ``--kill``: when about 40% is sent, kills one worker with SIGKILL
   (parent and pool), starts it again, and checks afterwards that the ESP got
   exactly one message per eligible recipient;
6. prints recipients/s from schedule to last accepted message, peak RSS per
   worker, delivered vs eligible and duplicates, and writes a JSON result to
   bench/out/.

Goals (issue): ≥ 1,500 recipients/s end to end, ≥ 15,000 renders/s per core,
after the kill delivered = eligible exactly and 0 duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import children, ensure_database, esp_stats, free_port, migrate, rss_mb

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/marketing_segbench"
BROKER = "redis://127.0.0.1:6379/5"
GOAL_RATE = 1500
GOAL_RENDERS = 15000
TOPIC_SLUG = "bench-news"

# The personalized template: 8 merge tags with fallbacks, a recommendations loop, a dynamic block.
TEMPLATE = (Path(__file__).resolve().parent / "send_bench_template.html").read_text()


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """Return the CPU time all of this machine's PostgreSQL processes have used, ended backends included.

    The postmaster's children's time (cutime, cstime) holds the backends that
    have exited; the live ones count their own. Take the difference of two
    readings.
    """
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if not head.endswith("(postgres"):
            continue
        fields = tail.split()
        total += int(fields[11]) + int(fields[12])
        parent = Path(f"/proc/{fields[1]}/comm")
        if not (parent.exists() and parent.read_text().strip() == "postgres"):  # the postmaster
            total += int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def prepare(percent: int) -> tuple[int, int]:
    """Create the bench segment, topic, memberships and consents; return (campaign id, audience size)."""
    from django.db import connection

    from campaigns.content.models import Campaign, CampaignSegment, Variant
    from campaigns.segments.models import Segment
    from preferences.models import Topic

    # Earlier bench campaigns must not send alongside this one, nor bloat the sending tables.
    old = list(Campaign.objects.filter(name__startswith="Bench ").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        for pk in old:
            cursor.execute("DELETE FROM campaigns_recipient WHERE campaign_id = %s", [pk])
            cursor.execute("DELETE FROM campaigns_deliveryevent WHERE delivery_id IN (SELECT id FROM "
                           "campaigns_delivery WHERE message_key LIKE %s)", [f"campaign:{pk}:%"])
            cursor.execute("DELETE FROM campaigns_delivery WHERE message_key LIKE %s", [f"campaign:{pk}:%"])
            cursor.execute("DELETE FROM campaigns_messagestats WHERE message_key LIKE %s", [f"campaign:{pk}:%"])
    Campaign.objects.filter(pk__in=old).delete()
    topic, _ = Topic.objects.get_or_create(slug=TOPIC_SLUG, defaults={"name": "Bench news"})
    segment, _ = Segment.objects.update_or_create(name=f"bench: {percent}% bucket", defaults={
        "rules": {"match": "all", "rules": [{"field": "random_bucket", "op": "lt", "value": percent, "salt": 5}]}})
    from campaigns.segments import actions as segment_actions

    members_sql, params = segment_actions.members(segment).values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO preferences_topicsubscription (subscriber_id, topic_id, subscribed, changed_at) "
            f"SELECT m.id, %s, true, now() FROM ({members_sql}) m ON CONFLICT DO NOTHING", [topic.pk, *params])
        cursor.execute(
            f"INSERT INTO subscribers_consentrecord (subscriber_id, purpose, granted, method, notice_version, "
            f"user_agent, occurred_at, recorded_at) SELECT m.id, 'email_marketing', true, 'import', 'bench', '', "
            f"now() - interval '30 days', now() FROM ({members_sql}) m JOIN subscribers_subscriber s ON s.id = m.id "
            f"WHERE s.status = 'subscribed' AND NOT EXISTS (SELECT 1 FROM subscribers_consentrecord c "
            f"WHERE c.subscriber_id = m.id AND c.purpose = 'email_marketing')", params)
        cursor.execute("ANALYZE preferences_topicsubscription; ANALYZE subscribers_consentrecord")
    campaign = Campaign.objects.create(name=f"Bench {time.strftime('%H:%M:%S')}", topic=topic,
                                       from_name="Bench shop", from_email="shop@example.com")
    CampaignSegment.objects.create(campaign=campaign, segment=segment)
    Variant.objects.create(campaign=campaign, label="A", subject='{{ first_name|default:"Hi" }}, the sale is on',
                           preheader="Up to 40% off until Sunday", html=TEMPLATE)
    return campaign.pk, segment_actions.members(segment).count()


def render_speed(campaign_id: int) -> dict[str, float]:
    """Time rendering for real recipients, and a same-size template without personalization."""
    import re

    from campaigns.content import actions as content_actions
    from campaigns.content.models import Campaign
    from campaigns.content.personalize import recipient_contexts
    from campaigns.content.rendering import compile_message
    from subscribers.models import Subscriber

    campaign = Campaign.objects.get(pk=campaign_id)
    variant = campaign.variants.get()
    compiled = content_actions.compile_variant(variant)
    ids = list(Subscriber.objects.filter(status="subscribed").order_by("pk").values_list("pk", flat=True)[:2000])
    contexts = list(recipient_contexts(ids, segments=compiled.segments, recommendations=True).values())
    plain_html = re.sub(r"{%.*?%}", "", re.sub(r"{{.*?}}", "Alex", TEMPLATE))
    plain = compile_message(subject="Hi, the sale is on", html=plain_html, layout=content_actions.layout_for(campaign),
                            blocks=content_actions.content_blocks())

    def rate(message: Any, personal: bool) -> float:
        done, started = 0, time.process_time()
        while time.process_time() - started < 3:
            for r in contexts:
                message.render(r.context if personal else {}, locale=r.locale, currency=r.currency)
            done += len(contexts)
        return done / (time.process_time() - started)

    personalized, static = rate(compiled, True), rate(plain, False)
    size = len(compiled.render(contexts[0].context).html.encode())
    return {"personalized": personalized, "static": static, "ratio": static / personalized,
            "template_bytes": len(TEMPLATE.encode()), "rendered_bytes": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--segment-percent", type=int, default=80)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=64, help="ESP calls in flight per worker process")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes per Celery worker (its --concurrency): chunks one worker runs at once; "
                             "the Procfile's worker runs 4 (WORKER_CONCURRENCY)")
    parser.add_argument("--chunk", type=int, default=1000, help="SEND_CHUNK_SIZE")
    parser.add_argument("--kill", action="store_true", help="kill -9 one worker at ~40%% and restart it")
    parser.add_argument("--beat-seconds", type=float, default=5, help="how often the bench runs dispatch/recovery")
    parser.add_argument("--reconcile-seconds", type=int, default=20)
    parser.add_argument("--batch", action="store_true",
                        help="send with campaigns.sending.postmark (Postmark's email/batch, 500 messages per call)")
    args = parser.parse_args()
    backend = "campaigns.sending.postmark.EmailBackend" if args.batch else "anymail.backends.postmark.EmailBackend"

    ensure_database(args.database_url)
    port = free_port()
    esp_url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench-" * 8, "ALLOWED_HOSTS": "localhost",
           "DATABASE_URL": args.database_url, "CELERY_BROKER_URL": BROKER, "REDIS_URL": "redis://127.0.0.1:6379/6",
           "DJANGO_SETTINGS_MODULE": "marketing.settings", "EMAIL_BACKEND": backend,
           "ANYMAIL": json.dumps({"POSTMARK_SERVER_TOKEN": "bench", "POSTMARK_API_URL": esp_url}),
           "QUIET_HOURS": "", "MARKETING_WEEKLY_CAP": "0", "SEND_CONCURRENCY": str(args.concurrency),
           "SEND_CHUNK_SIZE": str(args.chunk), "SEND_RECONCILE_SECONDS": str(args.reconcile_seconds),
           "CELERY_VISIBILITY_TIMEOUT": "30", "PYTHONUNBUFFERED": "1", "SECURE_SSL_REDIRECT": "0"}
    os.environ.update(env)
    migrate(env)
    import django

    django.setup()
    import redis
    from django.db import connection

    from campaigns.content.models import Campaign
    from campaigns.sending import actions
    from campaigns.sending.models import Recipient

    redis.Redis.from_url(BROKER).flushdb()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM subscribers_subscriber")
        people = cursor.fetchone()[0]
    started = time.perf_counter()
    campaign_id, audience = prepare(args.segment_percent)
    print(f"database: {people:,} subscribers; segment {audience:,} people (prepared in "
          f"{time.perf_counter() - started:.1f} s); backend {backend}, chunk {args.chunk}")
    renders = render_speed(campaign_id)
    print(f"rendering: {renders['personalized']:,.0f} renders/s per core personalized, {renders['static']:,.0f} "
          f"without personalization (ratio {renders['ratio']:.2f}×); template {renders['template_bytes']:,} B, "
          f"rendered HTML {renders['rendered_bytes']:,} B")

    esp = subprocess.Popen([sys.executable, "tests/mock_esp.py", str(port), str(args.latency)], cwd=ROOT,
                           stdout=subprocess.DEVNULL)
    worker_cmd = [sys.executable, "-m", "celery", "-A", "marketing", "worker", "--concurrency", str(args.processes),
                  "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    workers = {n: subprocess.Popen([*worker_cmd, "-n", f"bench{n}@%h"], cwd=ROOT, env=env) for n in
               range(1, args.workers + 1)}
    peak: dict[int, float] = dict.fromkeys(workers, 0.0)
    cpu: dict[int, float] = {}  # worker process id -> CPU seconds used, as last seen
    killed = False
    try:
        time.sleep(4)
        esp_stats(esp_url)
        campaign = Campaign.objects.get(pk=campaign_id)
        # Each recipient row is updated three times (queued, handed to the ESP, sent). This machine's
        # PostgreSQL runs with autovacuum off, so the bench vacuums the sending tables every minute, as
        # autovacuum would on a production server.
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            autovacuum_off = cursor.fetchone()[0] == "off"

        def vacuum() -> None:
            with connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE) campaigns_recipient, campaigns_delivery, campaigns_messagestats, "
                               "preferences_subscriberpreferences")

        vacuum()
        last_vacuum = time.perf_counter()
        load_start = os.getloadavg()
        print("load average at the start: " + " ".join(f"{n:.2f}" for n in load_start), flush=True)
        pg_cpu_start = postgres_cpu_seconds()
        t0 = time.monotonic()  # the same clock as the mock ESP's (CLOCK_MONOTONIC, machine-wide)
        actions.schedule_campaign(campaign)  # queues the dispatch task for a worker
        last_beat = last_count = time.perf_counter()
        while True:
            time.sleep(3)
            for n, proc in workers.items():
                for pid in (proc.pid, *children(proc.pid)):
                    peak[n] = max(peak[n], rss_mb(pid))
                    cpu[pid] = max(cpu.get(pid, 0.0), cpu_seconds(pid))
            campaign.refresh_from_db()
            esp_now = esp_stats(esp_url)
            finished = campaign.status in ("sent", "cancelled", "paused")
            # Counting 800,000 rows by status is PostgreSQL work the sending competes with: every 15 s only.
            if not finished and time.perf_counter() - last_count < 15 and not (
                    args.kill and not killed and esp_now["accepted"] >= 0.4 * audience):
                open_ = 1
            else:
                last_count = time.perf_counter()
                counts = dict(Recipient.objects.filter(campaign_id=campaign_id).values_list("status")
                              .annotate(n=django.db.models.Count("pk")).values_list("status", "n"))
                open_ = sum(counts.get(s, 0) for s in ("pending", "queued", "sending"))
                done = sum(counts.values()) - open_
                print(f"  {time.monotonic() - t0:6.1f} s  {campaign.status:<9} recipients "
                      f"{sum(counts.values()):>8,}  done {done:>8,}  ESP accepted {esp_now['accepted']:>8,}  "
                      f"{counts}", flush=True)
            if args.kill and not killed and esp_now["accepted"] >= 0.4 * audience:
                victim = workers[1]
                for pid in (*children(victim.pid), victim.pid):
                    os.kill(pid, signal.SIGKILL)
                victim.wait()
                print(f"  killed worker 1 (SIGKILL) at {esp_now['accepted']:,} accepted; restarting it", flush=True)
                workers[1] = subprocess.Popen([*worker_cmd, "-n", "bench1b@%h"], cwd=ROOT, env=env)
                killed = True
            if finished and not open_:
                break
            if time.perf_counter() - last_beat >= args.beat_seconds:
                actions.reconcile_sends()
                actions.dispatch_campaigns()
                last_beat = time.perf_counter()
            if autovacuum_off and time.perf_counter() - last_vacuum >= 60:
                vacuum()
                last_vacuum = time.perf_counter()
        final = esp_stats(esp_url)
        pg_cpu = postgres_cpu_seconds() - pg_cpu_start
        load_end = os.getloadavg()
        for proc in workers.values():
            for pid in (proc.pid, *children(proc.pid)):
                cpu[pid] = max(cpu.get(pid, 0.0), cpu_seconds(pid))
    finally:
        for proc in workers.values():
            proc.send_signal(signal.SIGTERM)
        for proc in workers.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        esp.terminate()
    counts = dict(Recipient.objects.filter(campaign_id=campaign_id).values_list("status")
                  .annotate(n=django.db.models.Count("pk")).values_list("status", "n"))
    eligible = counts.get("sent", 0)
    span = (final["last_at"] - final["first_at"]) if final["first_at"] else 0
    end_to_end = final["last_at"] - t0 if final["last_at"] else 0
    total = sum(counts.values())
    rate = eligible / end_to_end if end_to_end else 0
    processed = total / end_to_end if end_to_end else 0
    print()
    print(f"recipients: {total:,} ({counts})")
    print(f"end to end (schedule → last message accepted): {end_to_end:.1f} s (ESP busy {span:.1f} s)")
    print(f"  every recipient decided (sent, or skipped by the policy gate with its reason): {processed:,.0f} "
          f"recipients/s  {'PASS' if processed >= GOAL_RATE else 'MISS'} (goal ≥ {GOAL_RATE:,})")
    print(f"  messages sent: {rate:,.0f}/s  {'PASS' if rate >= GOAL_RATE else 'MISS'} (the same goal counted in "
          f"messages)")
    print(f"renders/s per core: {renders['personalized']:,.0f}  "
          f"{'PASS' if renders['personalized'] >= GOAL_RENDERS else 'MISS'} (goal ≥ {GOAL_RENDERS:,})")
    print("peak RSS per worker (MB): " + ", ".join(f"worker {n}: {mb:.0f}" for n, mb in peak.items()))
    worker_cpu = sum(cpu.values())
    print(f"worker CPU: {worker_cpu:.1f} s in all, {worker_cpu / max(1, sum(counts.values())) * 1000:.2f} ms per "
          f"recipient processed (includes the policy gate, rendering and recording)")
    print(f"PostgreSQL CPU: {pg_cpu:.1f} s in all, {pg_cpu / max(1, total) * 1000:.2f} ms per recipient processed "
          f"(every postgres process on the machine, the bench's own queries and vacuums included)")
    print(f"ESP calls: {final['calls']:,} ({final['batch_calls']:,} batch calls), {final['received']:,} messages "
          f"received; load average start {' '.join(f'{n:.2f}' for n in load_start)}, end "
          f"{' '.join(f'{n:.2f}' for n in load_end)}")
    exact = final["unique"] == eligible and final["duplicates"] == 0
    print(f"delivered (unique at the ESP) {final['unique']:,} vs eligible {eligible:,}; duplicates "
          f"{final['duplicates']}  {'PASS' if exact else 'MISS'}" + (" (after kill -9)" if killed else ""))
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"backend": backend, "chunk": args.chunk, "load_start": load_start, "load_end": load_end,
              "people": people, "audience": audience, "counts": counts, "end_to_end_s": round(end_to_end, 2),
              "recipients_per_s": round(processed), "sent_per_s": round(rate), "renders": renders, "peak_rss_mb": peak,
              "worker_cpu_s": round(sum(cpu.values()), 1), "postgres_cpu_s": round(pg_cpu, 1),
              "esp": final, "killed": killed, "exact": exact}
    name = f"send_bench{'-batch' if args.batch else ''}{'-kill' if killed else ''}.json"
    (OUT / name).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
