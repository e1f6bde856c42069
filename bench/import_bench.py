#!/usr/bin/env python3
"""Benchmark the CSV import against its goals on PostgreSQL.

    cd /work/main && .venv/bin/python bench/import_bench.py --rows 1000000 \
        --database-url postgres://postgres@127.0.0.1:5432/marketing_import_bench
    .venv/bin/python bench/import_bench.py --rows 20000          # quick check

What it does (see bench/README.md):

1. creates the database if missing, migrates it, and empties the subscriber,
   consent, topic-subscription and import-job tables, so every run starts
   from the same state;
2. writes a deterministic Mailchimp-style export to bench/out/ (5% of its rows
   are people already in the database, 1% are bad rows: invalid address,
   impossible birthday, unknown country, unknown time zone) and stores those
   existing people with COPY;
3. times the real import, ``subscribers.actions.import_subscribers`` with
   ``skip_bad_rows=True``, a topic and a consent notice, writing the row-by-row
   report to a file, in a fresh child process so that its peak RSS is the
   import's own (Django's baseline included); checks the counts it reports and
   the rows it left in the database;
4. optionally (--admin-flow) runs the admin's own job path as well:
   ``process_import_job`` dry run (the check) and then the import, which keep
   the report in memory;
5. baseline (a): a stock django-import-export ``ModelResource`` importing a
   50,000-row slice of the same file, same database state;
6. baseline (b): PostgreSQL ``COPY`` of the same file into a bare table of
   text columns;
7. the database floor: the rows the import left, copied into empty twins of
   their tables (same indexes) with INSERT … SELECT: PostgreSQL's own share
   of any import of this file on this machine;
8. prints the figures with PASS/MISS against the goals and one JSON line
   (also written to bench/out/import_bench-ROWS.json).

The script is its own child: ``--child import|admin|stock`` run one measured
step in a fresh interpreter and print one ``BENCH_CHILD {json}`` line.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ensure_database, migrate, pg_dsn

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/marketing_import_bench"
GOAL_ROWS_PER_S = 25_000
GOAL_RSS_MB = 500
GOAL_VS_STOCK = 10.0
GOAL_VS_COPY = 5.0
TOPIC_SLUG = "bench-newsletter"
CONSENT_NOTICE = "bench-notice-v1"

MAILCHIMP_HEADER = [
    "Email Address", "First Name", "Last Name", "Address", "Phone Number", "Birthday", "MEMBER_RATING",
    "OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP", "LATITUDE", "LONGITUDE", "GMTOFF", "DSTOFF",
    "TIMEZONE", "CC", "REGION", "LAST_CHANGED", "LEID", "EUID", "NOTES", "TAGS",
]
BAD_KINDS = ("email", "birthday", "country", "timezone")


# --- the shape of the file -------------------------------------------------
# Row i (0-based) is an existing subscriber when i % 20 == 7 (5%) and a bad
# row when i % 100 == 13 (1%); the two never coincide.


def is_existing(i: int) -> bool:
    return i % 20 == 7


def is_bad(i: int) -> bool:
    return i % 100 == 13


def expected_counts(rows: int) -> dict[str, int]:
    existing = sum(1 for i in range(rows) if is_existing(i))
    bad = sum(1 for i in range(rows) if is_bad(i))
    pending = sum(1 for j in range(existing) if j % 10 == 0)
    on_topic = sum(1 for j in range(existing) if j % 5 == 1)
    new = rows - existing - bad
    return {
        "rows": rows, "new": new, "updated": existing, "skipped": 0, "error": bad,
        "existing_pending": pending, "existing_on_topic": on_topic,
        # what the database holds after the import
        "db_subscribers": existing + new,
        "db_consent_email_marketing": new + pending,
        "db_consent_topic": new + existing - on_topic,
        "db_topic_subscriptions": new + existing,
    }


# --- environment -------------------------------------------------------------


def configure_env(database_url: str) -> None:
    os.environ["DEBUG"] = "1"
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "marketing.settings"
    # Uploaded files, cache and broker queue of the bench stay in bench/out/.
    os.environ.setdefault("VAR_DIR", str(OUT / "var"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the file ------------------------------------------------------------------


def csv_path(rows: int, seed: int) -> Path:
    return OUT / f"mailchimp-{rows}-seed{seed}.csv"


def existing_path(rows: int, seed: int) -> Path:
    return OUT / f"mailchimp-{rows}-seed{seed}-existing.tsv"


def generate(rows: int, seed: int) -> None:
    """Write the Mailchimp-style export and the people of it who already exist."""
    from subscribers.demo import MARKETS, TAGS, ascii_slug

    path, existing = csv_path(rows, seed), existing_path(rows, seed)
    if path.exists() and existing.exists():
        return
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = random.Random(seed)
    markets = [m for m in MARKETS for _ in range(m.weight)]
    domains = ("gmail.com", "yahoo.com", "outlook.com", "example.com", "example.net", "web.de", "inbox.lv",
               "wp.pl", "mail.ru", "hotmail.co.uk")
    gmt = {"America/New_York": (-5, -4), "America/Chicago": (-6, -5), "America/Denver": (-7, -6),
           "America/Los_Angeles": (-8, -7), "Europe/London": (0, 1), "Europe/Warsaw": (1, 2),
           "Europe/Istanbul": (3, 3), "Europe/Riga": (2, 3), "Europe/Sofia": (2, 3), "Asia/Tashkent": (5, 5),
           "Asia/Samarkand": (5, 5), "Europe/Berlin": (1, 2)}
    streets = ("Main St", "Oak Ave", "Brīvības iela", "ul. Marszałkowska", "High Street", "Hauptstraße",
               "Atatürk Cd.", "Elm Rd")
    notes = ('Met at the spring fair, wants "trail" shoes', "Prefers SMS, then email", "VIP, call before sending",
             "Asked for catalogue; follow up")
    now = dt.datetime(2025, 6, 1, 12, 0, 0)
    tmp = path.with_suffix(".tmp")
    ex_tmp = existing.with_suffix(".tmp")
    existing_no = 0
    with tmp.open("w", newline="", encoding="utf-8") as f, ex_tmp.open("w", encoding="utf-8") as ex:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(MAILCHIMP_HEADER)
        bad_no = 0
        for i in range(rows):
            m = rng.choice(markets)
            female = rng.random() < 0.52
            first = rng.choice(m.female if female else m.male)
            last = rng.choice(m.surnames)
            if female:
                last = m.female_surname(last)
            local = f"{ascii_slug(first)}.{ascii_slug(last)}.{i}"
            domain = rng.choice(domains)
            email = f"{local}@{domain}"
            if rng.random() < 0.1:  # people type their address as they like
                email = f"{local.title()}@{domain.upper() if rng.random() < 0.3 else domain}"
            city, region = rng.choice(m.cities)
            tz = rng.choice(m.timezones)
            cc = m.country
            optin = now - dt.timedelta(days=int(1500 * rng.random() ** 1.3), seconds=rng.randrange(86400))
            confirm = optin + dt.timedelta(minutes=rng.randrange(1, 300))
            changed = confirm + dt.timedelta(days=rng.randrange(0, 200))
            birthday = f"{rng.randrange(1, 13):02d}/{rng.randrange(1, 29):02d}" if rng.random() < 0.6 else ""
            address = (f"{rng.randrange(1, 999)} {rng.choice(streets)}  {city}  {region}  "
                       f"{rng.randrange(10000, 99999)}  {cc}") if rng.random() < 0.4 else ""
            phone = f"+{rng.randrange(1, 99)} {rng.randrange(100, 999)} {rng.randrange(1000, 99999)}" \
                if rng.random() < 0.5 else ""
            ip = f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            optin_ip = ip if rng.random() < 0.7 else ""
            confirm_ip = ip if optin_ip and rng.random() < 0.8 else ""
            lat, lon = (f"{rng.uniform(-60, 70):.7f}", f"{rng.uniform(-170, 170):.7f}") if rng.random() < 0.5 \
                else ("", "")
            gmtoff, dstoff = gmt.get(tz, (0, 0))
            tags_k = rng.choice((0, 0, 1, 1, 2, 3))
            tags = ",".join(f'"{t}"' for t in rng.sample(TAGS, tags_k))
            note = rng.choice(notes) if rng.random() < 0.03 else ""
            if is_bad(i):
                kind = BAD_KINDS[bad_no % len(BAD_KINDS)]
                bad_no += 1
                if kind == "email":
                    email = rng.choice((f"{local}@@{domain}", f"{local} at {domain}", f"{local}@{domain}.",
                                        f"{local}@"))
                elif kind == "birthday":
                    birthday = rng.choice(("02/30", "02/31", "04/31", "13/01"))
                elif kind == "country":
                    cc = "XX"
                else:
                    tz = "Mars/Olympus_Mons"
            w.writerow([
                email, first, last, address, phone, birthday, rng.randrange(1, 6),
                optin.strftime("%Y-%m-%d %H:%M:%S"), optin_ip, confirm.strftime("%Y-%m-%d %H:%M:%S"), confirm_ip,
                lat, lon, gmtoff, dstoff, tz, cc, region, changed.strftime("%Y-%m-%d %H:%M:%S"),
                rng.randrange(10**8, 10**9), f"{rng.getrandbits(40):010x}", note, tags,
            ])
            if is_existing(i):
                # The database knows them by a lower-case address; some have no
                # first name yet (the import fills it), one in ten is pending.
                key = email.lower()
                status = "pending" if existing_no % 10 == 0 else "subscribed"
                on_topic = "1" if existing_no % 5 == 1 else "0"
                known_first = "" if existing_no % 3 == 0 else first
                ex.write("\t".join([key, key, known_first, last, status, on_topic]) + "\n")
                existing_no += 1
    tmp.replace(path)
    ex_tmp.replace(existing)
    print(f"generated {path.relative_to(ROOT)} ({rows:,} rows, {path.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - started:.1f} s")


def slice_file(rows: int, seed: int, slice_rows: int) -> Path:
    source = csv_path(rows, seed)
    target = OUT / f"{source.stem}-first{slice_rows}.csv"
    if not target.exists():
        with source.open(encoding="utf-8", newline="") as f, target.open("w", encoding="utf-8", newline="") as out:
            for n, line in enumerate(f):
                if n > slice_rows:
                    break
                out.write(line)
    return target


# --- database state ------------------------------------------------------------


def reset_database(database_url: str, rows: int, seed: int) -> int:
    """Empty the tables the import writes and store the file's existing people; return the topic id."""
    import psycopg

    with psycopg.connect(pg_dsn(database_url)) as conn:
        conn.execute("TRUNCATE subscribers_subscriber, subscribers_consentrecord, preferences_topicsubscription, "
                     "subscribers_importjob RESTART IDENTITY CASCADE")
        conn.execute("DELETE FROM subscribers_suppressedaddress")
        topic = conn.execute(
            "INSERT INTO preferences_topic (name, slug, description, default_opt_in, is_active, position, "
            "created_at) VALUES ('Bench newsletter', %s, '', false, true, 0, now()) "
            "ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id", [TOPIC_SLUG]).fetchone()[0]
        conn.execute("CREATE TEMPORARY TABLE bench_existing (email text, email_key text, first_name text, "
                     "last_name text, status text, on_topic boolean) ON COMMIT DROP")
        with conn.cursor().copy("COPY bench_existing FROM STDIN") as copy, \
                existing_path(rows, seed).open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        conn.execute(
            """INSERT INTO subscribers_subscriber (email, email_key, first_name, last_name, phone, language,
                country, region, city, timezone, gender, company, job_title, industry, source, tags, attributes,
                status, created_at, updated_at, confirmed_at, status_changed_at)
            SELECT email, email_key, first_name, last_name, '', 'en', '', '', '', '', '', '', '', '',
                'website signup', '["customer"]', '{}', status, now() - interval '400 days', now(),
                CASE WHEN status = 'subscribed' THEN now() - interval '400 days' END, now() - interval '400 days'
            FROM bench_existing"""
        )
        conn.execute(
            """INSERT INTO preferences_topicsubscription (subscriber_id, topic_id, subscribed, changed_at)
            SELECT s.id, %s, true, now() - interval '300 days'
            FROM bench_existing e JOIN subscribers_subscriber s ON s.email_key = e.email_key WHERE e.on_topic""",
            [topic],
        )
    with psycopg.connect(pg_dsn(database_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE subscribers_subscriber, subscribers_consentrecord, "
                     "preferences_topicsubscription")
        conn.execute("CHECKPOINT")
    return topic


def db_counts(database_url: str, topic_id: int) -> dict[str, int]:
    import psycopg

    with psycopg.connect(pg_dsn(database_url)) as conn:
        one = lambda sql, *a: conn.execute(sql, a).fetchone()[0]  # noqa: E731
        return {
            "db_subscribers": one("SELECT count(*) FROM subscribers_subscriber"),
            "db_consent_email_marketing": one(
                "SELECT count(*) FROM subscribers_consentrecord WHERE purpose = 'email_marketing'"),
            "db_consent_topic": one(
                "SELECT count(*) FROM subscribers_consentrecord WHERE purpose = 'topic' AND topic_id = %s",
                topic_id),
            "db_topic_subscriptions": one(
                "SELECT count(*) FROM preferences_topicsubscription WHERE topic_id = %s", topic_id),
        }


def server_version(database_url: str) -> str:
    import psycopg

    with psycopg.connect(pg_dsn(database_url)) as conn:
        return conn.execute("SHOW server_version").fetchone()[0].split()[0]


# --- children: one measured step each, in a fresh interpreter ----------------


def child_main(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()
    out: dict[str, Any] = {"rss_before_mb": round(current_rss_mb(), 1)}
    if args.child == "import":
        out.update(child_import(args))
    elif args.child == "admin":
        out.update(child_admin(args))
    elif args.child == "stock":
        out.update(child_stock(args))
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print("BENCH_CHILD " + json.dumps(out), flush=True)


def child_import(args: argparse.Namespace) -> dict[str, Any]:
    from subscribers.actions import import_subscribers

    phases: list[tuple[str, float]] = []

    def progress(phase: str, fraction: float) -> None:
        if not phases or phases[-1][0] != phase:
            phases.append((phase, time.perf_counter()))

    report_path = OUT / f"{Path(args.file).stem}-report.csv"
    started = time.perf_counter()
    with report_path.open("w", newline="", encoding="utf-8") as report:
        result = import_subscribers(args.file, topic_id=args.topic_id, consent_notice=CONSENT_NOTICE,
                                    skip_bad_rows=True, progress=progress, report=report)
    elapsed = time.perf_counter() - started
    marks = [*phases, ("end", time.perf_counter())]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": elapsed,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),  # this process (Django), not the server
        "applied": result.applied,
        "total_rows": result.total_rows,
        "counts": result.counts,
        "message": result.message,
        "issues_sample": [i for i in result.issues if i["outcome"] == "error"][:4],
        "phases": {a[0]: round(b[1] - a[1], 2) for a, b in zip(marks, marks[1:], strict=False)},
        "report_lines": sum(1 for _ in report_path.open(encoding="utf-8")) - 1,
        "report_mb": round(report_path.stat().st_size / 1e6, 1),
    }


def child_admin(args: argparse.Namespace) -> dict[str, Any]:
    """The admin's own path: an ImportJob checked (dry run) and then imported, as the Celery tasks do."""
    from subscribers.actions import process_import_job
    from subscribers.models import ImportJob, ImportStatus

    job = ImportJob(original_name=Path(args.file).name, topic_id=args.topic_id, consent_notice=CONSENT_NOTICE,
                    skip_bad_rows=True)
    # The file is used where it lies (MEDIA_ROOT is bench/out/var/media); no copy.
    media = OUT / "var" / "media" / "imports" / "bench"
    media.mkdir(parents=True, exist_ok=True)
    link = media / Path(args.file).name
    if not link.exists():
        link.symlink_to(Path(args.file).resolve())
    job.file.name = f"imports/bench/{link.name}"
    job.save()
    started = time.perf_counter()
    process_import_job(job.pk, dry_run=True)
    check_seconds = time.perf_counter() - started
    check_rss = peak_rss_mb()
    job.refresh_from_db()
    check_status = job.status
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.IMPORTING)
    started = time.perf_counter()
    process_import_job(job.pk, dry_run=False)
    import_seconds = time.perf_counter() - started
    job.refresh_from_db()
    return {
        "check_seconds": check_seconds, "check_status": check_status, "check_peak_rss_mb": round(check_rss, 1),
        "seconds": import_seconds, "status": job.status, "message": job.message,
        "counts": {"new": job.new_count, "updated": job.updated_count, "skipped": job.skipped_count,
                   "error": job.error_count},
        "report_mb": round(job.report.size / 1e6, 1) if job.report else 0,
    }


def child_stock(args: argparse.Namespace) -> dict[str, Any]:
    """Stock django-import-export: a ModelResource mapping the Mailchimp columns, default options."""
    import tablib
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email
    from django_countries import countries
    from import_export import fields, resources, widgets

    from subscribers.models import Subscriber, normalize_email, timezone_names

    known_countries = {code for code, _ in countries}

    class MailchimpSubscriberResource(resources.ModelResource):
        email = fields.Field(attribute="email", column_name="Email Address")
        email_key = fields.Field(attribute="email_key", column_name="email_key")
        first_name = fields.Field(attribute="first_name", column_name="First Name")
        last_name = fields.Field(attribute="last_name", column_name="Last Name")
        phone = fields.Field(attribute="phone", column_name="Phone Number")
        country = fields.Field(attribute="country", column_name="CC")
        region = fields.Field(attribute="region", column_name="REGION")
        timezone = fields.Field(attribute="timezone", column_name="TIMEZONE")
        birthday_month = fields.Field(attribute="birthday_month", column_name="birthday_month",
                                      widget=widgets.IntegerWidget())
        birthday_day = fields.Field(attribute="birthday_day", column_name="birthday_day",
                                    widget=widgets.IntegerWidget())
        tags = fields.Field(attribute="tags", column_name="tags", widget=widgets.JSONWidget())
        confirmed_at = fields.Field(attribute="confirmed_at", column_name="CONFIRM_TIME",
                                    widget=widgets.DateTimeWidget(format="%Y-%m-%d %H:%M:%S"))

        class Meta:
            model = Subscriber
            import_id_fields = ["email_key"]
            fields = ("email", "email_key", "first_name", "last_name", "phone", "country", "region", "timezone",
                      "birthday_month", "birthday_day", "tags", "confirmed_at")

        def before_import(self, dataset: tablib.Dataset, **kwargs: Any) -> None:
            # Columns filled from the Mailchimp ones in before_import_row; the
            # lookup column (email_key) must be in the headers.
            for name in ("email_key", "birthday_month", "birthday_day", "tags"):
                dataset.append_col([""] * len(dataset), header=name)

        def before_import_row(self, row: dict[str, Any], **kwargs: Any) -> None:
            # The same checks as the engine's, raised as validation errors so a
            # bad row is reported and skipped (not a rollback of the file).
            email = normalize_email(row["Email Address"])
            try:
                validate_email(email)
            except ValidationError:
                raise ValidationError(f"“{row['Email Address']}” is not a valid email address") from None
            row["Email Address"] = email
            row["email_key"] = email.lower()
            month = day = None
            if row["Birthday"]:
                try:
                    month, day = (int(p) for p in row["Birthday"].split("/"))
                    dt.date(2000, month, day)
                except ValueError:
                    raise ValidationError(f"“{row['Birthday']}” is not a real date") from None
            row["birthday_month"], row["birthday_day"] = month, day
            if row["CC"] and row["CC"] not in known_countries:
                raise ValidationError(f"“{row['CC']}” is not a country we know")
            if row["TIMEZONE"] and row["TIMEZONE"] not in timezone_names():
                raise ValidationError(f"“{row['TIMEZONE']}” is not a known time zone")
            row["tags"] = "[" + row["TAGS"] + "]"

    started = time.perf_counter()
    with open(args.file, encoding="utf-8", newline="") as f:
        dataset = tablib.Dataset().load(f.read(), format="csv")
    loaded = time.perf_counter()
    result = MailchimpSubscriberResource().import_data(dataset, dry_run=False, use_transactions=True)
    elapsed = time.perf_counter() - started
    totals = dict(result.totals)
    return {
        "seconds": elapsed,
        "load_seconds": loaded - started,
        "total_rows": len(dataset),
        "counts": {"new": totals.get("new", 0), "updated": totals.get("update", 0),
                   "invalid": totals.get("invalid", 0), "error": totals.get("error", 0),
                   "skipped": totals.get("skip", 0)},
        "has_errors": result.has_errors(),
        "subscribers_in_db": Subscriber.objects.count(),
    }


def run_child(kind: str, args: argparse.Namespace, file: Path, topic_id: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--file", str(file),
           "--topic-id", str(topic_id), "--database-url", args.database_url]
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_CHILD "):
            return json.loads(line.removeprefix("BENCH_CHILD "))
    sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
    sys.exit(f"the {kind} step failed (exit {proc.returncode})")


# --- baseline (b): COPY into a bare table ------------------------------------


def copy_baseline(database_url: str, file: Path) -> dict[str, Any]:
    import psycopg

    columns = ", ".join(f'"c{i}" text' for i in range(len(MAILCHIMP_HEADER)))
    with psycopg.connect(pg_dsn(database_url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy_bare")
        conn.execute(f"CREATE TABLE bench_copy_bare ({columns})")
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(
                "COPY bench_copy_bare FROM STDIN WITH (FORMAT csv, HEADER true)") as copy, file.open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        elapsed = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM bench_copy_bare").fetchone()[0]
        conn.execute("DROP TABLE bench_copy_bare")
    return {"seconds": elapsed, "rows": rows}


# --- the database floor ----------------------------------------------------------

FLOOR_TABLES = ("subscribers_subscriber", "subscribers_consentrecord", "preferences_topicsubscription")


def database_floor(database_url: str) -> dict[str, Any]:
    """Time PostgreSQL writing the rows an import left, and nothing else.

    The subscribers, consent rows and topic memberships in the database after
    the import are copied with INSERT … SELECT into empty tables made LIKE the
    real ones (the same columns, indexes and checks; no foreign keys), in one
    transaction. No file, no Python, no checks, no staging: whatever an
    import engine does, PostgreSQL has at least this to do on this machine.
    """
    import psycopg

    with psycopg.connect(pg_dsn(database_url), autocommit=True) as conn:
        for table in FLOOR_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS bench_floor_{table}")
            conn.execute(f"CREATE TABLE bench_floor_{table} (LIKE {table} INCLUDING ALL)")
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with conn.transaction():
            for table in FLOOR_TABLES:
                conn.execute(f"INSERT INTO bench_floor_{table} SELECT * FROM {table}")
        elapsed = time.perf_counter() - started
        rows = sum(conn.execute(f"SELECT count(*) FROM bench_floor_{t}").fetchone()[0] for t in FLOOR_TABLES)
        for table in FLOOR_TABLES:
            conn.execute(f"DROP TABLE bench_floor_{table}")
    return {"seconds": elapsed, "rows": rows}


# --- the run -------------------------------------------------------------------


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows in the generated file")
    parser.add_argument("--database-url", default=DEFAULT_URL, help="PostgreSQL URL of a database the bench may empty")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated file")
    parser.add_argument("--stock-rows", type=int, default=50_000,
                        help="rows of the file's start that stock django-import-export imports")
    parser.add_argument("--skip-stock", action="store_true", help="leave out baseline (a)")
    parser.add_argument("--skip-copy", action="store_true", help="leave out baseline (b)")
    parser.add_argument("--skip-floor", action="store_true", help="leave out the database floor")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the import this many times (each from the same state) and keep the fastest")
    parser.add_argument("--admin-flow", action="store_true",
                        help="also run the admin's job path (dry-run check, then import, report kept in memory)")
    parser.add_argument("--child", choices=["import", "admin", "stock"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--topic-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    configure_env(args.database_url)
    if args.child:
        child_main(args)
        return 0

    ensure_database(args.database_url)
    migrate()
    import django

    django.setup()
    generate(args.rows, args.seed)
    file = csv_path(args.rows, args.seed)
    size_mb = file.stat().st_size / 1_048_576
    from django.conf import settings

    if size_mb > settings.IMPORT_MAX_FILE_MB:
        # The import refuses files above IMPORT_MAX_FILE_MB (200 by default).
        os.environ["IMPORT_MAX_FILE_MB"] = str(int(size_mb) + 1)
        print(f"note: the file is {size_mb:.0f} MiB, above IMPORT_MAX_FILE_MB={settings.IMPORT_MAX_FILE_MB}; "
              f"the bench raises it to {os.environ['IMPORT_MAX_FILE_MB']} for its children")
    expected = expected_counts(args.rows)
    figures: dict[str, Any] = {
        "rows": args.rows, "file": str(file.relative_to(ROOT)), "file_mb": round(size_mb, 1),
        "python": platform.python_version(), "postgresql": server_version(args.database_url),
        "cpus": os.cpu_count(), "expected": expected, "load_average_at_start": loadavg(),
    }
    problems: list[str] = []

    # 3. the real import (--repeat: each run from the same state; the fastest counts)
    runs = []
    for attempt in range(max(args.repeat, 1)):
        topic_id = reset_database(args.database_url, args.rows, args.seed)
        print(f"importing {args.rows:,} rows through subscribers.actions.import_subscribers "
              f"(run {attempt + 1} of {max(args.repeat, 1)}, load average {loadavg()}) …", flush=True)
        run = run_child("import", args, file, topic_id)
        run["load_after"] = loadavg()
        run.update(db_counts(args.database_url, topic_id))
        print(f"  {run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB, phases {run['phases']}", flush=True)
        runs.append(run)
    ours = min(runs, key=lambda r: r["seconds"])
    ours["rows_per_s"] = args.rows / ours["seconds"]
    ours["all_seconds"] = [round(r["seconds"], 1) for r in runs]
    ours["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    figures["import"] = ours
    for key in ("new", "updated", "skipped", "error"):
        if ours["counts"].get(key, 0) != expected[key]:
            problems.append(f"import counted {ours['counts'].get(key, 0)} {key}, expected {expected[key]}")
    for key in ("db_subscribers", "db_consent_email_marketing", "db_consent_topic", "db_topic_subscriptions"):
        if ours[key] != expected[key]:
            problems.append(f"{key} is {ours[key]}, expected {expected[key]}")
    if not ours["applied"]:
        problems.append(f"the import was not applied: {ours['message']}")
    if ours["report_lines"] != args.rows:
        problems.append(f"the report has {ours['report_lines']} rows, expected {args.rows}")
    if not args.skip_floor:
        print("the database floor: the same rows written into empty copies of their tables …", flush=True)
        figures["floor"] = database_floor(args.database_url)

    if args.admin_flow:
        topic_id = reset_database(args.database_url, args.rows, args.seed)
        print("running the admin's job path (check, then import) …", flush=True)
        admin = run_child("admin", args, file, topic_id)
        admin["rows_per_s"] = args.rows / admin["seconds"]
        figures["admin"] = admin
        if admin["counts"] != {k: expected[k] for k in ("new", "updated", "skipped", "error")}:
            problems.append(f"the admin path counted {admin['counts']}")

    # 4. baseline (a): stock django-import-export
    if not args.skip_stock:
        stock_rows = min(args.stock_rows, args.rows)
        topic_id = reset_database(args.database_url, args.rows, args.seed)
        print(f"importing {stock_rows:,} rows with a stock django-import-export ModelResource …", flush=True)
        stock = run_child("stock", args, slice_file(args.rows, args.seed, stock_rows), topic_id)
        stock["rows"] = stock_rows
        stock["rows_per_s"] = stock_rows / stock["seconds"]
        figures["stock"] = stock
        want = expected_counts(stock_rows)
        got = stock["counts"]
        if (got["new"], got["updated"], got["invalid"]) != (want["new"], want["updated"], want["error"]):
            problems.append(f"stock import counted {got}, expected new {want['new']}, updated {want['updated']}, "
                            f"invalid {want['error']}")

    # 5. baseline (b): COPY
    if not args.skip_copy:
        print("COPY of the same file into a bare table …", flush=True)
        copy = copy_baseline(args.database_url, file)
        copy["rows_per_s"] = copy["rows"] / copy["seconds"]
        figures["copy"] = copy
        if copy["rows"] != args.rows:
            problems.append(f"COPY loaded {copy['rows']} rows, expected {args.rows}")

    # 6. the table
    goals: dict[str, dict[str, Any]] = {}
    goals["rows_per_s"] = {"value": ours["rows_per_s"], "goal": f">= {GOAL_ROWS_PER_S:,}",
                           "met": ours["rows_per_s"] >= GOAL_ROWS_PER_S}
    goals["peak_rss_mb"] = {"value": ours["peak_rss_mb"], "goal": f"<= {GOAL_RSS_MB}",
                            "met": ours["peak_rss_mb"] <= GOAL_RSS_MB}
    if "stock" in figures:
        ratio = ours["rows_per_s"] / figures["stock"]["rows_per_s"]
        goals["vs_stock"] = {"value": ratio, "goal": f">= {GOAL_VS_STOCK:g}x", "met": ratio >= GOAL_VS_STOCK}
    if "copy" in figures:
        ratio = ours["seconds"] / figures["copy"]["seconds"]
        goals["vs_copy"] = {"value": ratio, "goal": f"<= {GOAL_VS_COPY:g}x", "met": ratio <= GOAL_VS_COPY}
    figures["goals"] = goals
    figures["problems"] = problems

    c = ours["counts"]
    print()
    print(f"CSV import benchmark: {args.rows:,} rows, {size_mb:.0f} MiB Mailchimp export; PostgreSQL "
          f"{figures['postgresql']}, Python {figures['python']}, {figures['cpus']} CPUs")
    print(f"  result: new {c['new']:,}  updated {c['updated']:,}  skipped {c['skipped']:,}  errors {c['error']:,}  "
          f"(expected {expected['new']:,} / {expected['updated']:,} / 0 / {expected['error']:,})")
    print(f"  database: subscribers {ours['db_subscribers']:,}, marketing consents "
          f"{ours['db_consent_email_marketing']:,}, topic consents {ours['db_consent_topic']:,}, "
          f"topic memberships {ours['db_topic_subscriptions']:,}; report {ours['report_lines']:,} rows "
          f"({ours['report_mb']} MB)")
    print("  phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in ours["phases"].items())
          + f"; CPU time of the import process {ours['cpu_seconds']} s")
    if len(runs) > 1:
        print(f"  runs: {', '.join(f'{x} s' for x in ours['all_seconds'])} (the fastest is reported)")
    print()
    line = "  {:<44} {:>22}  {:>12}  {}"
    print(line.format("figure", "value", "goal", ""))
    print(line.format("import time (import_subscribers)", f"{ours['seconds']:.1f} s", "<= 40 s" if args.rows ==
                      1_000_000 else "", ""))
    print(line.format("import rows/s", f"{ours['rows_per_s']:,.0f}", goals["rows_per_s"]["goal"],
                      verdict(goals["rows_per_s"]["met"])))
    print(line.format("peak RSS of the import process", f"{ours['peak_rss_mb']:.0f} MB", goals["peak_rss_mb"]["goal"]
                      + " MB", verdict(goals["peak_rss_mb"]["met"])))
    print(line.format("  (of which Django before the import)", f"{ours['rss_before_mb']:.0f} MB", "", ""))
    if "stock" in figures:
        s = figures["stock"]
        print(line.format(f"stock django-import-export, {s['rows']:,} rows", f"{s['seconds']:.1f} s, "
                          f"{s['rows_per_s']:,.0f} rows/s", "", ""))
        print(line.format("ours / stock (rows/s)", f"{goals['vs_stock']['value']:.1f}x", goals["vs_stock"]["goal"],
                          verdict(goals["vs_stock"]["met"])))
    if "copy" in figures:
        cp = figures["copy"]
        print(line.format("COPY into a bare text table", f"{cp['seconds']:.1f} s, {cp['rows_per_s']:,.0f} rows/s",
                          "", ""))
        print(line.format("ours / COPY (time)", f"{goals['vs_copy']['value']:.1f}x", goals["vs_copy"]["goal"],
                          verdict(goals["vs_copy"]["met"])))
    if "floor" in figures:
        fl = figures["floor"]
        print(line.format("database floor: the rows alone, no checks", f"{fl['seconds']:.1f} s, {fl['rows']:,} rows",
                          "", ""))
        if "copy" in figures:
            print(line.format("  floor / COPY (time)", f"{fl['seconds'] / figures['copy']['seconds']:.1f}x", "", ""))
    if "admin" in figures:
        a = figures["admin"]
        print(line.format("admin path: check (dry run)", f"{a['check_seconds']:.1f} s", "", ""))
        print(line.format("admin path: import", f"{a['seconds']:.1f} s, {a['rows_per_s']:,.0f} rows/s", "", ""))
        print(line.format("admin path: peak RSS (check + import)", f"{a['peak_rss_mb']:.0f} MB", "", ""))
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print()
    summary = json.dumps(figures, default=str)
    print("BENCH_JSON " + summary)
    (OUT / f"import_bench-{args.rows}.json").write_text(summary + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
