"""Import subscribers from CSV through a staging table and set-based SQL.

Why this shape: a row-by-row ORM import (django-import-export's
ModelResource) manages a few hundred rows a second; marketers bring files of
a million rows. Python does only what needs Python (reading, validating and
normalizing each cell); the rows are streamed into a temporary staging table
(PostgreSQL COPY, SQLite executemany), and every decision after that (duplicate
rows, suppressed and unsubscribed people, existing subscribers, the merge,
consent and topic rows) is a handful of statements over the whole file.

All of it runs in one transaction: a dry run rolls back; a real import with
errors is refused unless the caller chose to skip bad rows. Nothing is ever
half-imported.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from marketing.spreadsheets import FORMULA_STARTS
from subscribers.importing.columns import KNOWN_IGNORED, PARSERS, CellError, field_for_header, header_key
from subscribers.importing.parallel import Helper, batches, cycle_collection_paused, file_identity, is_blank
from subscribers.importing.reader import ImportFileError, open_csv
from subscribers.models import AttributeDefinition, ImportMode, SuppressedAddress, coerce_attribute_value

Progress = Callable[[str, float], None]
logger = logging.getLogger(__name__)

STAGING = "import_staging"
SUPPRESSED = SuppressedAddress._meta.db_table
# (column, PostgreSQL type); SQLite ignores the types.
STAGING_COLUMNS: list[tuple[str, str]] = [
    ("line", "integer"),
    ("email", "text"),
    ("email_key", "text"),
    ("email_hash", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("phone", "text"),
    ("language", "text"),
    ("country", "text"),
    ("region", "text"),
    ("city", "text"),
    ("timezone", "text"),
    ("birth_date", "date"),
    ("birthday_month", "smallint"),
    ("birthday_day", "smallint"),
    ("gender", "text"),
    ("company", "text"),
    ("job_title", "text"),
    ("industry", "text"),
    ("source", "text"),
    ("external_id", "text"),
    ("tags", "jsonb"),
    ("attributes", "jsonb"),
    ("optin_at", "timestamptz"),
    ("optin_ip", "inet"),
    ("confirmed_at", "timestamptz"),
    ("outcome", "text"),
    ("error_column", "text"),
    ("reason", "text"),
]
LOADED_COLUMNS = [name for name, _ in STAGING_COLUMNS]
COLUMN_INDEX = {name: i for i, name in enumerate(LOADED_COLUMNS)}
# Profile fields that are plain text ('' when blank) on Subscriber.
TEXT_FIELDS = ("first_name", "last_name", "phone", "language", "country", "region", "city", "timezone",
               "gender", "company", "job_title", "industry", "source")
# Profile fields that are NULL when unknown.
NULLABLE_FIELDS = ("birth_date", "birthday_month", "birthday_day", "external_id")

SKIP_REASONS = {
    "unsubscribed": "unsubscribed earlier; only the person can subscribe again",
    "bounced": "the address bounced; mail to it cannot be delivered",
    "complained": "reported our mail as spam; only the person can subscribe again",
    "erased": "the person asked for their data to be erased",
}
SUPPRESSED_REASON = "the person asked for their data to be erased; the address may not be added again"
# Rows per batch of the reading phase (see parallel.py).
BATCH_ROWS = 5000
PREVIEW_ROWS = 50
ISSUE_ROWS = 200


@dataclass
class ImportOptions:
    mode: str = ImportMode.FILL_BLANKS
    topic_id: int | None = None
    consent_notice: str = ""
    skip_bad_rows: bool = False
    dry_run: bool = False
    source: str = "import"
    actor_id: int | None = None
    max_bytes: int = 200 * 1024 * 1024


@dataclass
class ImportResult:
    total_rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"new": 0, "updated": 0, "skipped": 0, "error": 0})
    mapped_columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False
    message: str = ""

    def as_summary(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "mapped_columns": self.mapped_columns,
            "ignored_columns": self.ignored_columns,
            "preview": self.preview,
            "issues": self.issues,
        }


# Where a parsed value goes in the staging row: a column index, or one of these.
_EMAIL, _BIRTHDAY, _TAGS = -1, -2, -3
_SLOTS = {"email": _EMAIL, "birthday": _BIRTHDAY, "tags": _TAGS, "optin_time": COLUMN_INDEX["optin_at"],
          "optin_ip": COLUMN_INDEX["optin_ip"], "confirm_time": COLUMN_INDEX["confirmed_at"]}
# Parsers that are pure functions of a cell with few distinct values in a
# real list (countries, languages, time zones, genders, tag sets): each
# distinct cell is parsed once per import. The cache is bounded.
_MEMOIZED = frozenset({"country", "language", "timezone", "gender", "tags"})
_MEMO_LIMIT = 20_000
# A dotted-quad IPv4 address in the canonical form that ipaddress prints back
# unchanged (no leading zeros, each part 0-255); anything else goes to parse_ip.
_CANONICAL_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                             r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def _tags_json(value: str) -> str | None:
    tags = PARSERS["tags"](value)
    return json.dumps(tags) if tags else None


def _parse_ip(value: str) -> str:
    return value if _CANONICAL_IPV4.fullmatch(value) else PARSERS["optin_ip"](value)


def _memoize(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    cache: dict[str, tuple[bool, Any]] = {}

    def parse_cached(value: str) -> Any:
        hit = cache.get(value)
        if hit is None:
            try:
                hit = (True, parse(value))
            except CellError as exc:
                hit = (False, str(exc))
            if len(cache) < _MEMO_LIMIT:
                cache[value] = hit
        if hit[0]:
            return hit[1]
        raise CellError(hit[1])

    return parse_cached


@dataclass
class _Plan:
    """Which cell feeds which field, decided once from the header."""

    fields: list[tuple[int, str, str]]  # (cell index, field, header)
    attributes: list[tuple[int, AttributeDefinition, str]]
    width: int
    # (cell index, header, parser, slot), compiled from ``fields``.
    steps: list[tuple[int, str, Callable[[str], Any], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for index, name, header in self.fields:
            if name == "tags":
                parse: Callable[[str], Any] = _tags_json
            elif name == "optin_ip":
                parse = _parse_ip
            else:
                parse = PARSERS[name]
            if name in _MEMOIZED:
                parse = _memoize(parse)
            self.steps.append((index, header, parse, _SLOTS.get(name, COLUMN_INDEX.get(name, 0))))


def _plan_columns(headers: list[str], result: ImportResult,
                  definitions: Iterable[AttributeDefinition] | None = None) -> _Plan:
    if definitions is None:
        definitions = AttributeDefinition.objects.all()
    catalogue = {header_key(d.key): d for d in definitions}
    catalogue.update({header_key(d.label): d for d in catalogue.copy().values()})
    fields: list[tuple[int, str, str]] = []
    attributes: list[tuple[int, AttributeDefinition, str]] = []
    claimed: dict[str, str] = {}
    for index, header in enumerate(headers):
        if not header:
            continue
        target = field_for_header(header)
        definition = None if target else catalogue.get(header_key(header))
        name = target or (f"attribute:{definition.key}" if definition else None)
        if name is None:
            result.ignored_columns.append(header)
            continue
        if name in claimed:
            raise ImportFileError(
                f"The columns “{claimed[name]}” and “{header}” both hold the same thing ({name}); keep one."
            )
        claimed[name] = header
        result.mapped_columns[header] = name
        if definition is not None:
            attributes.append((index, definition, header))
        else:
            fields.append((index, target, header))  # type: ignore[arg-type]
    if "email" not in claimed:
        raise ImportFileError(
            "No column holds email addresses. Name it “Email” or “Email Address”; "
            f"the columns found are: {', '.join(h for h in headers if h)}."
        )
    result.ignored_columns.sort(key=lambda h: (header_key(h) in KNOWN_IGNORED, h))
    return _Plan(fields=fields, attributes=attributes, width=len(headers))


def _parse_row(line: int, cells: list[str], plan: _Plan) -> list[Any]:
    row: list[Any] = [None] * len(LOADED_COLUMNS)
    row[0] = line
    errors: list[tuple[str, str]] = []
    ncells = len(cells)
    if ncells > plan.width:
        errors.append(("", f"has {ncells} values but the header has {plan.width} columns; "
                           "check for an unquoted delimiter"))
    for index, header, parse, slot in plan.steps:
        value = cells[index].strip() if index < ncells else ""
        if not value:
            if slot == _EMAIL:
                errors.append((header, "is empty; every row needs an email address"))
            continue
        try:
            parsed = parse(value)
        except CellError as exc:
            errors.append((header, str(exc)))
            continue
        if slot >= 0:
            row[slot] = parsed
        elif slot == _EMAIL:
            row[1] = parsed
            key = parsed.lower()
            row[2] = key
            row[3] = sha256(key.encode()).hexdigest()
        elif slot == _BIRTHDAY:
            row[12], row[13], row[14] = parsed
        else:  # _TAGS, already JSON
            row[21] = parsed
    if plan.attributes:
        values: dict[str, Any] = {}
        for index, definition, header in plan.attributes:
            raw = cells[index] if index < ncells else ""
            try:
                value = coerce_attribute_value(definition.type, definition.choices, raw, header)
            except ValidationError as exc:
                errors.append((header, " ".join(exc.messages).removeprefix(f"{header} ")))
                continue
            if value is not None:
                values[definition.key] = value
        if values:
            row[22] = json.dumps(values, ensure_ascii=False)
    if errors:
        row[26] = "error"
        row[27] = ", ".join(dict.fromkeys(h for h, _ in errors if h))
        row[28] = "; ".join(f"{h}: {msg}" if h else f"the row {msg}" for h, msg in errors)
    else:
        # Undecided rows are loaded as 'new'; _classify moves the others away.
        row[26] = "new"
    return row


class _Dialect:
    """The few places where PostgreSQL and SQLite need different SQL."""

    def __init__(self) -> None:
        self.vendor = connection.vendor
        if self.vendor not in {"postgresql", "sqlite"}:
            raise ImportFileError(f"Imports support PostgreSQL and SQLite, not {self.vendor}.")
        self.pg = self.vendor == "postgresql"

    def create_staging(self, cursor: Any) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
        cols = ", ".join(f"{name} {pgtype if self.pg else ''}".strip() for name, pgtype in STAGING_COLUMNS)
        extra = ", subscriber_id bigint, existing_status text" if self.pg else ", subscriber_id, existing_status"
        cursor.execute(f"CREATE TEMPORARY TABLE {STAGING} ({cols}{extra})")

    def load(self, cursor: Any, rows: Iterable[list[Any] | bytes]) -> None:
        """Stream ``rows`` into staging; on PostgreSQL an item may be a batch already in COPY text."""
        columns = ", ".join(LOADED_COLUMNS)
        if self.pg:
            with cursor.cursor.copy(f"COPY {STAGING} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    if isinstance(row, bytes):
                        copy.write(row)
                    else:
                        copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(LOADED_COLUMNS))
        sql = f"INSERT INTO {STAGING} ({columns}) VALUES ({placeholders})"
        batch: list[list[Any]] = []
        for row in rows:
            assert not isinstance(row, bytes), "the helper process is for PostgreSQL only"
            for i in (12, 23, 25):
                if row[i] is not None:
                    row[i] = self.value(row[i])
            batch.append(row)
            if len(batch) >= 5000:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)

    def value(self, v: Any) -> Any:
        """Return ``v`` as the backend stores it (SQLite keeps naive UTC text)."""
        if self.pg:
            return v
        if isinstance(v, dt.datetime):
            return v.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
        if isinstance(v, dt.date):
            return v.isoformat()
        return v

    def json(self, literal: str) -> str:
        return f"'{literal}'::jsonb" if self.pg else f"'{literal}'"

    def merge_tags(self, current: str, incoming: str) -> str:
        if self.pg:
            return (f"(SELECT COALESCE(jsonb_agg(DISTINCT t.v), '[]'::jsonb) "
                    f"FROM jsonb_array_elements({current} || {incoming}) AS t(v))")
        return (f"(SELECT json_group_array(v) FROM (SELECT value AS v FROM json_each({current}) "
                f"UNION SELECT value FROM json_each({incoming})))")

    def merge_objects(self, base: str, winner: str) -> str:
        return f"({base} || {winner})" if self.pg else f"json_patch({base}, {winner})"

    def analyze(self, cursor: Any) -> None:
        # Temporary tables are never auto-analyzed; without statistics the
        # planner would nest-loop over a million rows.
        cursor.execute(f"ANALYZE {STAGING}")


def run_import(
    path: str | Path,
    options: ImportOptions,
    *,
    progress: Progress | None = None,
    report: TextIO | None = None,
) -> ImportResult:
    """Check and (unless a dry run) apply one CSV file; see the module docstring."""
    progress = progress or (lambda phase, fraction: None)
    result = ImportResult()
    dialect = _Dialect()
    csv_file = open_csv(path, max_bytes=options.max_bytes)
    try:
        # Read once: the helper process (if any) must plan with the same catalogue.
        definitions = list(AttributeDefinition.objects.all())
        plan = _plan_columns(csv_file.headers, result, definitions)
        with transaction.atomic():
            with connection.cursor() as cursor:
                dialect.create_staging(cursor)
                progress("reading", 0.0)

                helper = _start_helper(path, csv_file, options, dialect, definitions)

                def parsed_rows() -> Iterable[list[Any] | bytes]:
                    # Rows as lists, or (from the helper) whole batches as COPY text.
                    for index, batch in enumerate(batches(csv_file.rows, BATCH_ROWS)):
                        if helper is not None and index % 2:
                            count, data = helper.next_batch(batch)
                            result.total_rows += count
                            yield data
                        else:
                            for line, cells in batch:
                                if not is_blank(cells):
                                    result.total_rows += 1
                                    yield _parse_row(line, cells, plan)
                        progress("reading", 0.8 * csv_file.bytes_read() / max(csv_file.size, 1))

                try:
                    with cycle_collection_paused():
                        dialect.load(cursor, parsed_rows())
                finally:
                    if helper is not None:
                        helper.close()
                if result.total_rows == 0:
                    raise ImportFileError("The file has a header row but no subscribers in it.")
                progress("checking", 0.82)
                _classify(cursor, dialect, options)
                _collect(cursor, result)
                if report is not None:
                    progress("writing report", 0.86)
                    _write_report(report)
                blocked = result.counts["error"] and not options.skip_bad_rows
                if options.dry_run:
                    result.message = _dry_run_message(result, options)
                elif blocked:
                    result.message = (
                        f"Nothing was imported: {result.counts['error']} rows have errors. Fix them in the file, "
                        "or choose “skip bad rows” to import the other rows."
                    )
                else:
                    progress("importing", 0.9)
                    _apply(cursor, dialect, options, result.counts["new"], result.counts["updated"])
                    result.applied = True
                    c = result.counts
                    result.message = (
                        f"Imported {c['new']} new and updated {c['updated']} existing subscribers; "
                        f"skipped {c['skipped']}"
                        + (f"; left out {c['error']} {'row' if c['error'] == 1 else 'rows'} with errors."
                           if c["error"] else ".")
                    )
                cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
            if not result.applied:
                transaction.set_rollback(True)
    finally:
        csv_file.close()
    progress("done", 1.0)
    return result


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (containers, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start_helper(path: str | Path, csv_file: Any, options: ImportOptions, dialect: _Dialect,
                  definitions: list[AttributeDefinition]) -> Helper | None:
    """A helper process for a big file on PostgreSQL with a second core; see ``parallel``."""
    if not (dialect.pg and csv_file.size >= settings.IMPORT_PARALLEL_MIN_MB * 1024 * 1024 and _cpus() > 1):
        return None
    catalogue = [{"key": d.key, "label": d.label, "type": d.type, "choices": d.choices} for d in definitions]
    try:
        return Helper(Path(path), file_identity(csv_file.raw.fileno()), options.max_bytes, catalogue, BATCH_ROWS)
    except OSError:
        logger.warning("import: could not start the helper process; checking the file in one process",
                       exc_info=True)
        return None


def _dry_run_message(result: ImportResult, options: ImportOptions) -> str:
    c = result.counts
    text = f"Dry run: {c['new']} new, {c['updated']} existing to update, {c['skipped']} skipped, {c['error']} errors."
    if c["error"] and not options.skip_bad_rows:
        text += " Fix the errors or choose “skip bad rows” before importing."
    return text


def _classify(cursor: Any, dialect: _Dialect, options: ImportOptions) -> None:
    s = STAGING
    if not dialect.pg:
        # SQLite joins by looking rows up; PostgreSQL hashes the whole file,
        # where building this index cost more (≈ 2 s a million rows) than it
        # saved, and made every later UPDATE of staging maintain it.
        cursor.execute(f"CREATE INDEX import_staging_key ON {s} (email_key, line)")
    dialect.analyze(cursor)
    # A later row with an address already seen in the file is skipped, not merged.
    cursor.execute(
        f"""UPDATE {s} SET outcome = 'skipped', reason = 'same address as row ' || d.first_line
        FROM (SELECT email_key, MIN(line) AS first_line FROM {s} WHERE outcome = 'new'
              GROUP BY email_key HAVING COUNT(*) > 1) d
        WHERE {s}.email_key = d.email_key AND {s}.line > d.first_line AND {s}.outcome = 'new'"""
    )
    cursor.execute(
        f"""UPDATE {s} SET outcome = 'skipped', reason = %s
        WHERE outcome = 'new' AND email_hash IN (SELECT email_hash FROM {SUPPRESSED})""",
        [SUPPRESSED_REASON],
    )
    cursor.execute(
        f"""UPDATE {s} SET subscriber_id = sub.id, existing_status = sub.status
        FROM subscribers_subscriber sub WHERE sub.email_key = {s}.email_key AND {s}.outcome = 'new'"""
    )
    cases = " ".join(f"WHEN '{status}' THEN %s" for status in SKIP_REASONS)
    cursor.execute(
        f"""UPDATE {s} SET outcome = 'skipped', reason = CASE existing_status {cases} END
        WHERE outcome = 'new' AND existing_status IN ({", ".join(f"'{k}'" for k in SKIP_REASONS)})""",
        list(SKIP_REASONS.values()),
    )
    # External ids are unique: one used twice in the file, or held by someone
    # else, is an error on that row rather than a failed import.
    cursor.execute(
        f"""UPDATE {s} SET outcome = 'error', error_column = 'external id',
            reason = 'external id: “' || {s}.external_id || '” is also used on row ' || d.first_line
        FROM (SELECT external_id, MIN(line) AS first_line FROM {s}
              WHERE outcome = 'new' AND external_id IS NOT NULL GROUP BY external_id HAVING COUNT(*) > 1) d
        WHERE {s}.external_id = d.external_id AND {s}.line > d.first_line AND {s}.outcome = 'new'"""
    )
    keeps_existing = options.mode == ImportMode.FILL_BLANKS
    # In fill-blanks mode a person's own external id is kept, so the file's cannot clash.
    keep_own_id = (f"AND NOT EXISTS (SELECT 1 FROM subscribers_subscriber own "
                   f"WHERE own.id = {s}.subscriber_id AND own.external_id IS NOT NULL)")
    cursor.execute(
        f"""UPDATE {s} SET outcome = 'error', error_column = 'external id',
            reason = 'external id: “' || {s}.external_id || '” already belongs to another subscriber'
        FROM subscribers_subscriber sub
        WHERE {s}.outcome = 'new' AND {s}.external_id IS NOT NULL AND sub.external_id = {s}.external_id
          AND ({s}.subscriber_id IS NULL OR sub.id <> {s}.subscriber_id)
          {keep_own_id if keeps_existing else ""}"""
    )
    # What is still undecided is new, or an update of the subscriber found
    # above; only the (few) updates are rewritten.
    cursor.execute(f"UPDATE {s} SET outcome = 'updated' WHERE outcome = 'new' AND subscriber_id IS NOT NULL")


def _collect(cursor: Any, result: ImportResult) -> None:
    s = STAGING
    cursor.execute(f"SELECT outcome, COUNT(*) FROM {s} GROUP BY outcome")
    for outcome, count in cursor.fetchall():
        result.counts[outcome] = count
    columns = ["row", "email", "outcome", "column", "reason"]
    cursor.execute(f"SELECT line, email, outcome, error_column, reason FROM {s} ORDER BY line LIMIT {PREVIEW_ROWS}")
    result.preview = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    cursor.execute(
        f"SELECT line, email, outcome, error_column, reason FROM {s} WHERE outcome IN ('error', 'skipped') "
        f"ORDER BY line LIMIT {ISSUE_ROWS}"
    )
    result.issues = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]


def _write_report(stream: TextIO) -> None:
    writer = csv.writer(stream)
    writer.writerow(["row", "email", "outcome", "column", "reason"])
    # The cells that hold text from the file are escaped as escape_formula()
    # would, in the query, so that a million rows go to the writer untouched.
    starts = ", ".join(["%s"] * len(FORMULA_STARTS))

    def safe(column: str) -> str:
        return f"CASE WHEN substr({column}, 1, 1) IN ({starts}) THEN '''' || {column} ELSE {column} END"

    # A server-side cursor on PostgreSQL: a client-side one would hold the
    # whole result (≈ 140 MB for a million rows) in memory.
    with connection.chunked_cursor() as rows:
        rows.execute(
            f"SELECT line, {safe('email')}, outcome, {safe('error_column')}, {safe('reason')} FROM {STAGING} "
            "ORDER BY line",
            list(FORMULA_STARTS) * 3,
        )
        while batch := rows.fetchmany(10000):
            writer.writerows(batch)


def _reserve_ids(cursor: Any, count: int) -> int | None:
    """Take ``count`` consecutive subscriber ids from the sequence; return the first, or None.

    The values are drawn one by one in one statement, as the INSERT's defaults
    would; they are consecutive unless another session drew some meanwhile
    (then None, and the values are left unused like those of a rolled-back
    INSERT).
    """
    cursor.execute("SELECT pg_get_serial_sequence('subscribers_subscriber', 'id')::regclass::oid")
    sequence = int(cursor.fetchone()[0])
    cursor.execute(
        f"SELECT MIN(v), MAX(v) FROM (SELECT nextval({sequence}::oid) AS v FROM generate_series(1, %s)) AS n",
        [count],
    )
    first, last = cursor.fetchone()
    return first if last - first + 1 == count else None


def _lock_references(cursor: Any, dialect: _Dialect, options: ImportOptions) -> None:
    """Check that the import's topic and staff user still exist, and keep them until COMMIT.

    ``FOR KEY SHARE`` is the lock PostgreSQL's own foreign-key check takes: no
    one can delete the topic while the import's rows point at it.
    """
    from django.contrib.auth import get_user_model

    lock = " FOR KEY SHARE" if dialect.pg else ""
    for table, pk, gone in (
        ("preferences_topic", options.topic_id, "The topic chosen for this import was deleted while it ran"),
        (get_user_model()._meta.db_table, options.actor_id,
         "The staff user who started this import was deleted while it ran"),
    ):
        if pk is None:
            continue
        cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s{lock}", [pk])
        if cursor.fetchone() is None:
            raise ImportFileError(f"{gone}; nothing was imported.")


def _may_skip_reference_checks(cursor: Any) -> bool:
    """Whether the role may set session_replication_role and the ledger tables have no triggers of their own.

    Asked first, rather than trying, so that a role without the right does
    not log a permission error on every import. A trigger someone adds (an
    audit log, say) would also be skipped in replica mode: then the checks run.
    """
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN "
        "('subscribers_consentrecord'::regclass, 'preferences_topicsubscription'::regclass)), "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
    )
    own_triggers, superuser = cursor.fetchone()
    if own_triggers:
        return False
    if superuser:
        return True
    if connection.pg_version < 150000:  # GRANT SET ON PARAMETER came with PostgreSQL 15
        return False
    cursor.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
    return bool(cursor.fetchone()[0])


@contextmanager
def _references_proved(cursor: Any, dialect: _Dialect) -> Iterator[None]:
    """Skip PostgreSQL's row-by-row foreign-key checks while the import writes rows it has proved.

    PostgreSQL checks each new consent and topic row's keys with one query and
    one row lock per key, deferred to COMMIT: about five million for a
    million-row file, a third of the import's time and a third of its WAL.
    They prove nothing here: every subscriber the rows point at was inserted
    or updated by this transaction (``_apply`` stops the import otherwise), so
    it exists and stays locked until COMMIT, and the topic and staff user are
    locked by ``_lock_references``. So the checks are skipped with
    ``session_replication_role = replica`` for these statements only, if the
    database role may set it (a superuser, or after ``GRANT SET ON PARAMETER
    session_replication_role``, PostgreSQL 15+). Otherwise the checks run as
    usual. The tables have no other triggers.
    """
    if not (dialect.pg and _may_skip_reference_checks(cursor)):
        yield
        return
    try:
        with transaction.atomic():  # a savepoint: a role without the right gets an error here
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        yield
        return
    yield
    # Not reached when the body raised: the transaction (or its savepoint)
    # rolls back, and the setting with it.
    cursor.execute("SET LOCAL session_replication_role = origin")


def _insert_new(cursor: Any, sql: str, params: list[Any]) -> int:
    """Insert the new subscribers; return how many rows went in.

    A plain INSERT is the fast path. If someone took one of the addresses (or
    external ids) since the check, it fails on the unique index; then it runs
    again skipping those rows (``ON CONFLICT DO NOTHING`` checks both unique
    indexes before every row, which is slower), so that the import can say
    how many clashed before it stops.
    """
    try:
        with transaction.atomic():
            cursor.execute(sql, params)
    except IntegrityError:
        cursor.execute(f"{sql} ON CONFLICT DO NOTHING", params)
    return cursor.rowcount


def _stop_if_changed_meanwhile(cursor: Any, new_rows: int, inserted: int) -> None:
    """Stop the import if what the check decided about its new rows no longer holds.

    Run after the INSERT, so it sees every erasure committed before the
    INSERT's unique checks: a person who signed up and was erased while the
    import ran no longer holds the address (the erasure blanks it), so the
    INSERT itself cannot notice. Once the import's rows are in, no one else
    can commit the same address or external id until the import ends.
    """
    cursor.execute(
        f"SELECT COUNT(*) FROM {STAGING} WHERE outcome = 'new' AND email_hash IN (SELECT email_hash FROM {SUPPRESSED})"
    )
    (erased,) = cursor.fetchone()
    if erased:
        raise ImportFileError(
            f"{erased} {'address' if erased == 1 else 'addresses'} in the file "
            f"{'was' if erased == 1 else 'were'} erased at the person's request while the import ran, so nothing "
            "was imported. Run the import again: erased addresses are skipped."
        )
    if inserted != new_rows:
        # Whoever holds the address now (a signup, the API, another import)
        # may have given or withheld consent of their own: the import must
        # not decide for them.
        clashed = new_rows - inserted
        raise ImportFileError(
            f"{clashed} {'row' if clashed == 1 else 'rows'} of the file clashed with people added while the import "
            "ran (the same address or external id, from a signup, the API or another import), so nothing was "
            "imported. Run the import again: they will be reported as they are now."
        )


def _apply(cursor: Any, dialect: _Dialect, options: ImportOptions, new_rows: int, updated_rows: int) -> None:
    s, sub = STAGING, "subscribers_subscriber"
    now = dialect.value(timezone.now())
    # New people without a source in the file get the import's name as source.
    text_cols = ", ".join(f"COALESCE({c}, %s)" if c == "source" else f"COALESCE({c}, '')" for c in TEXT_FIELDS)
    columns = (f"email, email_key, {', '.join(TEXT_FIELDS)}, {', '.join(NULLABLE_FIELDS)}, "
               "tags, attributes, status, created_at, updated_at, confirmed_at, status_changed_at")
    values = (f"email, email_key, {text_cols}, {', '.join(NULLABLE_FIELDS)}, "
              f"COALESCE(tags, {dialect.json('[]')}), COALESCE(attributes, {dialect.json('{}')}), "
              "'subscribed', %s, %s, confirmed_at, %s")
    params = [options.source, now, now, now]
    # On PostgreSQL the new subscribers get ids reserved beforehand: the n-th
    # new row of the file (in line order) gets first + n - 1, the id the
    # INSERT's own defaults would have given it. The consent and topic
    # statements compute the same number with a running count, so staging is
    # not rewritten to hold the ids (a pass over the whole file and a join).
    first_id = _reserve_ids(cursor, new_rows) if dialect.pg and new_rows else None
    if first_id is not None:
        new_no = "COUNT(*) FILTER (WHERE outcome = 'new') OVER (ORDER BY line ROWS UNBOUNDED PRECEDING)"
        inserted = _insert_new(
            cursor,
            f"""INSERT INTO {sub} (id, {columns})
            SELECT {first_id - 1} + {new_no}, {values} FROM {s} WHERE outcome = 'new' ORDER BY line""",
            params,
        )
    else:
        inserted = _insert_new(
            cursor,
            f"INSERT INTO {sub} ({columns}) SELECT {values} FROM {s} WHERE outcome = 'new' ORDER BY line",
            params,
        )
    _stop_if_changed_meanwhile(cursor, new_rows, inserted)
    if first_id is None:
        cursor.execute(
            f"""UPDATE {s} SET subscriber_id = sub.id FROM {sub} sub
            WHERE {s}.outcome = 'new' AND sub.email_key = {s}.email_key"""
        )
        # subscriber_id is now set on the new rows too; the consent and topic
        # statements below select by it.
        dialect.analyze(cursor)
    fill = options.mode == ImportMode.FILL_BLANKS
    sets = []
    for col in TEXT_FIELDS:
        if fill:
            sets.append(f"{col} = CASE WHEN {sub}.{col} = '' THEN COALESCE(st.{col}, '') ELSE {sub}.{col} END")
        else:
            sets.append(f"{col} = COALESCE(st.{col}, {sub}.{col})")
    for col in NULLABLE_FIELDS:
        sets.append(f"{col} = COALESCE({sub}.{col}, st.{col})" if fill else f"{col} = COALESCE(st.{col}, {sub}.{col})")
    merged_tags = dialect.merge_tags(f"{sub}.tags", "st.tags")
    sets.append(f"tags = CASE WHEN st.tags IS NULL THEN {sub}.tags ELSE {merged_tags} END")
    attrs = (dialect.merge_objects("st.attributes", f"{sub}.attributes") if fill
             else dialect.merge_objects(f"{sub}.attributes", "st.attributes"))
    sets.append(f"attributes = CASE WHEN st.attributes IS NULL THEN {sub}.attributes ELSE {attrs} END")
    sets.append(f"confirmed_at = COALESCE({sub}.confirmed_at, st.confirmed_at)")
    # An import is evidence of consent: a pending person becomes subscribed.
    sets.append("status = 'subscribed'")
    sets.append(f"status_changed_at = CASE WHEN {sub}.status IN ('pending', 'contact') THEN %s "
                f"ELSE {sub}.status_changed_at END")
    sets.append("updated_at = %s")
    # Only people still as the check saw them: someone who unsubscribed (or
    # was deleted, or changed address) since then must not be subscribed
    # again by this import.
    blocked = ", ".join(f"'{status}'" for status in SKIP_REASONS)
    cursor.execute(
        f"""UPDATE {sub} SET {", ".join(sets)} FROM {s} st
        WHERE st.outcome = 'updated' AND st.subscriber_id = {sub}.id AND {sub}.email_key = st.email_key
          AND {sub}.status NOT IN ({blocked})""",
        [now, now],
    )
    if cursor.rowcount != updated_rows:
        changed = updated_rows - cursor.rowcount
        raise ImportFileError(
            f"{changed} {'person' if changed == 1 else 'people'} in the file unsubscribed, changed address or "
            f"{'was' if changed == 1 else 'were'} deleted while the import ran, so nothing was imported. "
            "Run the import again: they will be reported as they are now."
        )
    # Every subscriber the ledger and topic rows point at was inserted or
    # updated just now (so it exists and is locked until COMMIT).
    _lock_references(cursor, dialect, options)
    if first_id is None:
        source, sid = f"{s} AS st", "subscriber_id"
    else:
        # Every new row is kept by each filter below, so the running count
        # numbers them as the INSERT did.
        source = (f"(SELECT line, outcome, subscriber_id, existing_status, optin_ip, optin_at, "
                  f"{first_id - 1} + {new_no} AS new_id FROM {s} WHERE outcome IN ('new', 'updated')) AS st")
        sid = "CASE WHEN outcome = 'new' THEN new_id ELSE subscriber_id END"
    with _references_proved(cursor, dialect):
        _write_ledger(cursor, dialect, options, source, sid, now)


def _write_ledger(cursor: Any, dialect: _Dialect, options: ImportOptions, source: str, sid: str, now: Any) -> None:
    """Append the import's consent rows and topic memberships.

    The people concerned (with their ids, a running count over the file) are
    computed in the ``ledger`` CTE for both purposes of consent and the
    memberships: on PostgreSQL all of it is one statement that computes them
    once; SQLite, which has no INSERT inside WITH, runs the same SQL as two.
    """
    topic = options.topic_id
    if topic is None:
        on_topic = "FALSE"
        on_topic_params: list[Any] = []
    else:
        not_yet = ("NOT EXISTS (SELECT 1 FROM preferences_topicsubscription ts "
                   "WHERE ts.subscriber_id = st.subscriber_id AND ts.topic_id = %s)")
        # A subscriber created just now has no topic rows yet.
        on_topic = f"(outcome = 'new' OR {not_yet})"
        on_topic_params = [topic]
    # Computed once on PostgreSQL, where one statement reads it three times.
    materialized = "MATERIALIZED " if dialect.pg else ""
    ledger = (f"WITH ledger AS {materialized}(SELECT line, {sid} AS person, outcome, existing_status, optin_ip, "
              f"optin_at, {on_topic} AS on_topic FROM {source} WHERE outcome IN ('new', 'updated'))")
    purposes = ("SELECT 'email_marketing' AS purpose, CAST(NULL AS bigint) AS topic_id"
                + (" UNION ALL SELECT 'topic', CAST(%s AS bigint)" if topic else ""))
    consent_cols = ("subscriber_id, purpose, topic_id, granted, method, notice_version, ip_address, user_agent, "
                    "occurred_at, recorded_at, actor_id")
    consents = (
        f"""INSERT INTO subscribers_consentrecord ({consent_cols})
        SELECT person, p.purpose, p.topic_id, TRUE, 'import', %s, optin_ip, '', COALESCE(optin_at, %s), %s, %s
        FROM ledger CROSS JOIN ({purposes}) AS p
        WHERE CASE WHEN p.purpose = 'topic' THEN on_topic
                   ELSE (outcome = 'new' OR existing_status IN ('pending', 'contact')) END
        ORDER BY line, p.purpose"""
    )
    consent_params = [options.consent_notice, now, now, options.actor_id] + ([topic] if topic else [])
    members = ("INSERT INTO preferences_topicsubscription (subscriber_id, topic_id, subscribed, changed_at) "
               "SELECT person, %s, TRUE, %s FROM ledger WHERE on_topic ORDER BY line")
    members_params = [topic, now]
    if topic is None:
        cursor.execute(f"{ledger} {consents}", on_topic_params + consent_params)
    elif dialect.pg:
        cursor.execute(f"{ledger}, consents AS ({consents}) {members}",
                       on_topic_params + consent_params + members_params)
    else:
        cursor.execute(f"{ledger} {consents}", on_topic_params + consent_params)
        cursor.execute(f"{ledger} {members}", on_topic_params + members_params)
