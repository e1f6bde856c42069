"""Change and evaluate segments: save with validation, delete when unused, count, preview, snapshot.

Admin, commands and Beat tasks call these; none of them writes Segment,
SegmentDependency, SegmentMembership or SegmentMembershipChange rows itself.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, CharField, Q, QuerySet, Value, When
from django.utils import timezone

from campaigns.segments.compiler import (
    BIG_TABLES,
    FIELDS,
    LIFECYCLE_STAGES,
    CompileContext,
    SegmentRuleError,
    compile_rules,
    field_spec,
    is_group,
    iter_rules,
    lifecycle_conditions,
    referenced_segments,
    uses_lifecycle,
)
from campaigns.segments.models import (
    Segment,
    SegmentDependency,
    SegmentMembership,
    SegmentMembershipChange,
    SegmentRefresh,
)
from subscribers.models import AttributeDefinition, Subscriber, SubscriberStatus

# Which prebuilt segment (by system_key) each lifecycle stage is derived from.
LIFECYCLE_SOURCES = {
    "lapsed": "lapsed_customers",
    "at_risk": "at_risk_customers",
    "loyal": "loyal_customers",
    "new_customer": "first_time_customers",
}

# A plan whose estimated cost is above this gets a warning in the preview.
EXPENSIVE_PLAN_COST = 2_000_000


class SegmentInUse(Exception):
    """A segment that other objects use; ``usages`` names them."""

    def __init__(self, segment: Segment, usages: list[str]):
        super().__init__(f"“{segment}” is used by {', '.join(usages)}; remove it there first.")
        self.usages = usages


# --- Compiling with the database's view of the world ------------------------


class AttributeCatalogue(Mapping):
    """The custom-attribute catalogue as ``key -> (type, choices)``, read the first time a rule needs it.

    ``labels`` (``key -> label``) comes from the same read.
    """

    @functools.cached_property
    def _read(self) -> tuple[dict[str, tuple[str, list[str]]], dict[str, str]]:
        rows = list(AttributeDefinition.objects.values_list("key", "type", "choices", "label"))
        return ({key: (kind, list(choices or [])) for key, kind, choices, _ in rows},
                {key: label for key, _, _, label in rows if label})

    @property
    def _rows(self) -> dict[str, tuple[str, list[str]]]:
        return self._read[0]

    @property
    def labels(self) -> Mapping[str, str]:
        return _Labels(self)

    def __getitem__(self, key: str) -> tuple[str, list[str]]:
        return self._rows[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


class _Labels(Mapping):
    """The catalogue's labels, read only when a label is asked for (with the catalogue itself)."""

    def __init__(self, catalogue: AttributeCatalogue) -> None:
        self.catalogue = catalogue

    def __getitem__(self, key: str) -> str:
        return self.catalogue._read[1][key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.catalogue._read[1])

    def __len__(self) -> int:
        return len(self.catalogue._read[1])


def build_context(*, segment_id: int | None = None, now: Any = None) -> CompileContext:
    """Return a compile context reading attributes, segments and topics from the database."""
    from preferences.models import Topic

    @functools.cache
    def sources() -> dict[str, Any]:
        return dict(Segment.objects.filter(system_key__in=LIFECYCLE_SOURCES.values())
                    .values_list("system_key", "rules"))

    def segment_rules(pk: int) -> tuple[str, Any] | None:
        row = Segment.objects.filter(pk=pk).values_list("name", "rules").first()
        return (row[0], row[1]) if row else None

    catalogue = AttributeCatalogue()
    return CompileContext(
        now=now or timezone.now(),
        attributes=catalogue,
        attribute_labels=catalogue.labels,
        segment_rules=segment_rules,
        lifecycle_rules=lambda stage: sources().get(LIFECYCLE_SOURCES[stage]),
        topics=lambda pk: Topic.objects.filter(pk=pk).exists(),
        stack=(f"segment:{segment_id}",) if segment_id else (),
    )


def audience() -> QuerySet[Subscriber]:
    """Return everyone segments choose from: all people except erased tombstones."""
    return Subscriber.objects.exclude(status=SubscriberStatus.ERASED).order_by()


def segment_queryset(rules: Any, *, segment_id: int | None = None, ctx: CompileContext | None = None,
                     now: Any = None) -> QuerySet[Subscriber]:
    """Return the people matching ``rules`` as one lazy queryset; raises SegmentRuleError."""
    ctx = ctx or build_context(segment_id=segment_id, now=now)
    return audience().filter(compile_rules(rules, ctx))


def members(segment: Segment, *, now: Any = None) -> QuerySet[Subscriber]:
    """Return the people in a segment now (the rules run again; no snapshot is read)."""
    return segment_queryset(segment.rules, segment_id=segment.pk, now=now)


def validate_rules(rules: Any, *, segment_id: int | None = None) -> list[str]:
    """Return every problem of a rule tree in plain words (empty when it is valid)."""
    if not is_group(rules):
        return ["The rules must start with a group (match all / any)."]
    try:
        segment_queryset(rules, segment_id=segment_id)
    except SegmentRuleError as exc:
        return exc.errors
    return []


# --- Saving and deleting ----------------------------------------------------


@transaction.atomic
def save_segment(segment: Segment, *, actor_id: int | None = None) -> Segment:
    """Validate and save a segment, record which segments it uses, and count its members.

    Raises SegmentRuleError naming each bad rule; nothing is saved then.
    """
    errors = validate_rules(segment.rules, segment_id=segment.pk)
    if errors:
        raise SegmentRuleError(errors)
    segment.updated_at = timezone.now()
    if segment.pk is None:
        segment.created_by_id = actor_id
    segment.save()
    wanted = referenced_segments(segment.rules)
    if uses_lifecycle(segment.rules):
        wanted |= set(Segment.objects.filter(system_key__in=LIFECYCLE_SOURCES.values()).values_list("pk", flat=True))
    wanted.discard(segment.pk)
    SegmentDependency.objects.filter(segment=segment).exclude(depends_on_id__in=wanted).delete()
    existing = set(SegmentDependency.objects.filter(segment=segment).values_list("depends_on_id", flat=True))
    SegmentDependency.objects.bulk_create(
        [SegmentDependency(segment=segment, depends_on_id=pk) for pk in sorted(wanted - existing)]
    )
    transaction.on_commit(lambda: _count_later(segment.pk))
    return segment


def _count_later(segment_id: int) -> None:
    from campaigns.segments.tasks import count_segment_task

    count_segment_task.delay(segment_id)


def segment_usages(segment: Segment) -> list[str]:
    """Return where a segment is used, in words ("segment “VIP”", "lifecycle stages")."""
    usages = [f"segment “{name}”" for name in
              Segment.objects.filter(dependencies__depends_on=segment).values_list("name", flat=True)]
    if segment.system_key in LIFECYCLE_SOURCES.values():
        usages.append("the lifecycle stages (it defines one)")
    for relation in segment._meta.related_objects:
        # Campaigns and journeys point at segments with PROTECT foreign keys.
        if relation.on_delete.__name__ != "PROTECT" or relation.related_model is SegmentDependency:
            continue
        for obj in relation.related_model._default_manager.filter(**{relation.field.name: segment})[:10]:
            label = getattr(obj, "usage_label", None)
            usages.append(label() if label else f"{relation.related_model._meta.verbose_name} “{obj}”")
    return usages


@transaction.atomic
def delete_segment(segment: Segment) -> None:
    """Delete a segment that nothing uses; raises SegmentInUse saying where it is used."""
    usages = segment_usages(segment)
    if usages:
        raise SegmentInUse(segment, usages)
    segment.delete()


# --- Counting and previewing -------------------------------------------------


def count_segment(segment: Segment) -> int:
    """Count a segment's members now and remember the count and how long it took."""
    started = time.perf_counter()
    total = members(segment).count()
    seconds = time.perf_counter() - started
    Segment.objects.filter(pk=segment.pk).update(member_count=total, counted_at=timezone.now(), count_seconds=seconds)
    segment.member_count, segment.count_seconds = total, seconds
    return total


def recount_segments() -> int:
    """Count every segment again (a Beat job, so the segment list stays current); returns how many."""
    done = 0
    for segment in Segment.objects.all():
        try:
            count_segment(segment)
        except SegmentRuleError:
            continue  # a segment broken by a deleted topic or attribute keeps its old count
        done += 1
    return done


@dataclass
class Preview:
    """What the rule builder shows while staff edit: count, sample, SQL and plan."""

    errors: list[str] = field(default_factory=list)
    count: int = 0
    seconds: float = 0.0
    sample: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    sql: str = ""
    plan: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"errors": self.errors, "count": self.count, "seconds": round(self.seconds, 3),
                "sample": self.sample, "columns": self.columns, "sql": self.sql, "plan": self.plan,
                "warnings": self.warnings}


SAMPLE_LABELS = {"email": "Email", "first_name": "First name", "last_name": "Last name"}


def preview_segment(rules: Any, *, segment_id: int | None = None, sample_size: int = 20,
                    explain: bool = False) -> Preview:
    """Count and sample the people ``rules`` match, with the values that matched and (optionally) the plan."""
    result = Preview()
    ctx = build_context(segment_id=segment_id)
    try:
        queryset = audience().filter(compile_rules(rules, ctx))
    except SegmentRuleError as exc:
        result.errors = exc.errors
        return result
    started = time.perf_counter()
    result.count = queryset.count()
    result.seconds = time.perf_counter() - started
    columns = ["email", *[c for c in ctx.fields_used if c != "email"]][:8]
    result.columns = [_column_label(c) for c in columns]
    for row in queryset.order_by("-id").values("pk", "first_name", "last_name", *columns)[:sample_size]:
        name = " ".join(p for p in (row["first_name"], row["last_name"]) if p)
        result.sample.append({"id": row["pk"], "name": name, "email": row["email"],
                              "values": [_display(row[c]) for c in columns]})
    # Everyone sees the warnings; only those allowed see the SQL and the plan behind them.
    plan, result.warnings = explain_queryset(queryset.values("pk"))
    if explain:
        result.sql, result.plan = compiled_sql(queryset.values("pk")), plan
    return result


def _column_label(column: str) -> str:
    if column in SAMPLE_LABELS:
        return SAMPLE_LABELS[column]
    if column == "attributes":
        return "Custom attributes"
    if column == "birthday_month":
        return "Birthday month"
    try:
        return str(Subscriber._meta.get_field(column).verbose_name).capitalize()
    except Exception:  # noqa: BLE001 - any unknown column just shows its name
        return column


def _display(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if hasattr(value, "isoformat"):
        return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "hour") else value.isoformat()
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "—"
    return str(value)


def compiled_sql(queryset: QuerySet) -> str:
    """Return the SQL of a queryset with its parameters filled in, as the database runs it."""
    sql, params = queryset.query.sql_with_params()
    if connection.vendor == "postgresql":
        return connection.ops.compose_sql(sql, params)
    # SQLite: quote the parameters the way its own query log does.
    return sql % tuple(connection.ops._quote_params_for_last_executed_query(params))


def explain_queryset(queryset: QuerySet) -> tuple[str, list[str]]:
    """Return the database's plan for a queryset and warnings when it looks expensive."""
    plan = queryset.explain()
    warnings: list[str] = []
    if connection.vendor == "postgresql":
        costs = [float(c) for c in re.findall(r"cost=[\d.]+\.\.([\d.]+)", plan)]
        if costs and max(costs) > EXPENSIVE_PLAN_COST:
            warnings.append(f"The database expects this to be expensive (cost {max(costs):,.0f}); "
                            "narrow it with a time window or a profile rule first.")
        scanned = sorted({t for t in BIG_TABLES if re.search(rf"Seq Scan on {t}\b", plan)})
    else:
        scanned = sorted({t for t in BIG_TABLES if re.search(rf"SCAN {t}\b(?! USING)", plan)})
    for table in scanned:
        warnings.append(f"It reads the whole {table.split('_', 1)[1]} table; add a time window (“in the last N "
                        "days”) or an event name so an index can be used.")
    return plan, warnings


# --- Membership snapshots ----------------------------------------------------


ANALYZE_AFTER_CHANGES = 10_000


def _analyze(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")


@transaction.atomic
def refresh_membership(segment: Segment) -> SegmentRefresh:
    """Materialize a segment's members with set-based SQL and record who entered and who left.

    The first refresh of a segment is marked ``initial``: its entries are the
    starting point, not news, so journeys do not treat them as "entered".
    Two refreshes of one segment never interleave (the segment row is locked).
    """
    Segment.objects.select_for_update().filter(pk=segment.pk).first()
    started = time.perf_counter()
    now = timezone.now()
    member_sql, member_params = members(segment, now=now).values("id").query.sql_with_params()
    initial = not SegmentRefresh.objects.filter(segment=segment).exists()
    refresh = SegmentRefresh.objects.create(segment=segment, started_at=now, initial=initial)
    memberships, changes = SegmentMembership._meta.db_table, SegmentMembershipChange._meta.db_table
    temp = f"segment_now_{refresh.pk}"
    true = "true" if connection.vendor == "postgresql" else "1"
    false = "false" if connection.vendor == "postgresql" else "0"
    stamp = connection.ops.adapt_datetimefield_value(now)  # raw SQL: the value as the ORM stores it
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {temp} AS {member_sql}", member_params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {temp}")
        cursor.execute(f"SELECT count(*) FROM {temp}")
        total = cursor.fetchone()[0]
        cursor.execute(
            f"INSERT INTO {changes} (segment_id, subscriber_id, entered, occurred_at, refresh_id) "
            f"SELECT %s, n.id, {true}, %s, %s FROM {temp} n WHERE NOT EXISTS "
            f"(SELECT 1 FROM {memberships} m WHERE m.segment_id = %s AND m.subscriber_id = n.id)",
            [segment.pk, stamp, refresh.pk, segment.pk])
        entered = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {changes} (segment_id, subscriber_id, entered, occurred_at, refresh_id) "
            f"SELECT %s, m.subscriber_id, {false}, %s, %s FROM {memberships} m WHERE m.segment_id = %s "
            f"AND NOT EXISTS (SELECT 1 FROM {temp} n WHERE n.id = m.subscriber_id)",
            [segment.pk, stamp, refresh.pk, segment.pk])
        left = cursor.rowcount
        if left:
            cursor.execute(
                f"DELETE FROM {memberships} WHERE segment_id = %s AND subscriber_id IN "
                f"(SELECT subscriber_id FROM {changes} WHERE refresh_id = %s AND entered = {false})",
                [segment.pk, refresh.pk])
        if entered:
            cursor.execute(
                f"INSERT INTO {memberships} (segment_id, subscriber_id, since) "
                f"SELECT segment_id, subscriber_id, occurred_at FROM {changes} "
                f"WHERE refresh_id = %s AND entered = {true}",
                [refresh.pk])
        cursor.execute(f"DROP TABLE {temp}")
    if connection.vendor == "postgresql" and entered + left >= ANALYZE_AFTER_CHANGES:
        # Fresh statistics for the snapshot just written: without them a send chunk's "who of these 500 is in
        # the segment" is planned for the old membership (a scan of the whole segment, not 500 lookups) until
        # autovacuum gets round to it. After the commit, so its lock does not make other refreshes wait.
        transaction.on_commit(functools.partial(_analyze, memberships))
    seconds = time.perf_counter() - started
    SegmentRefresh.objects.filter(pk=refresh.pk).update(members=total, entered=entered, left=left, seconds=seconds)
    Segment.objects.filter(pk=segment.pk).update(refreshed_at=now, member_count=total, counted_at=now,
                                                 count_seconds=seconds)
    refresh.members, refresh.entered, refresh.left, refresh.seconds = total, entered, left, seconds
    return refresh


def refresh_tracked_segments() -> list[SegmentRefresh]:
    """Refresh every segment that keeps a membership snapshot (a Beat job)."""
    done = []
    for segment in Segment.objects.filter(track_membership=True):
        try:
            done.append(refresh_membership(segment))
        except SegmentRuleError:
            continue
    return done


# --- Lifecycle stage ---------------------------------------------------------


def lifecycle_stage(*, subscriber_id: int) -> str | None:
    """Return a person's lifecycle stage (lead, new customer, active, loyal, at risk, lapsed) in one query."""
    ctx = build_context()
    cases = [When(condition, then=Value(stage)) for stage, condition in lifecycle_conditions(ctx)]
    row = (Subscriber.objects.filter(pk=subscriber_id)
           .annotate(stage=Case(*cases, default=Value("lead"), output_field=CharField()))
           .values_list("stage", flat=True).first())
    return row


def lifecycle_label(stage: str | None) -> str:
    return dict(LIFECYCLE_STAGES).get(stage or "", "—")


def segment_history(*, subscriber_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """Return a person's recent entries to and exits from tracked segments, newest first."""
    rows = (SegmentMembershipChange.objects.filter(subscriber_id=subscriber_id, refresh__initial=False)
            .values("segment__name", "entered", "occurred_at")[:limit])
    current = dict(SegmentMembership.objects.filter(subscriber_id=subscriber_id)
                   .values_list("segment__name", "since"))
    history = [{"segment": r["segment__name"], "entered": r["entered"], "at": r["occurred_at"]} for r in rows]
    return [*({"segment": name, "member_since": since} for name, since in sorted(current.items())), *history]


def describe_rule(rule: dict[str, Any]) -> str:
    """Return a rule in words, e.g. “Country is any of LV, LT” or “Added on in the last 14 days”."""
    from campaigns.segments.compiler import OPERATOR_LABELS

    spec = FIELDS.get(str(rule.get("field"))) or field_spec(str(rule.get("field")), build_context())
    label = spec.label if spec else str(rule.get("field"))
    value = rule.get("value")
    shown = ", ".join(str(v) for v in value) if isinstance(value, list) else ("" if value is None else str(value))
    op = OPERATOR_LABELS.get(str(rule.get("op")), str(rule.get("op")))
    if " N" in op and shown:
        op, shown = op.replace(" N", f" {shown}", 1), ""
    words = " ".join(p for p in (label, op, shown) if p)
    extras = []
    for param in spec.params if spec else ():
        given = rule.get(param["name"])
        if param["type"] in {"number", "event", "choice"} and given not in (None, ""):
            text = param["label"][0].lower() + param["label"][1:]
            extras.append(text.replace(" N", f" {given}", 1) if " N" in text else f"{text} {given}")
    return f"{words} ({', '.join(extras)})" if extras else words


def summarize(rules: Any) -> str:
    parts = [describe_rule(r) for r in iter_rules(rules)]
    return "; ".join(parts[:4]) + (f" (+{len(parts) - 4} more)" if len(parts) > 4 else "") if parts else "Everyone"


def members_filter(segment: Segment) -> Q:
    """Return the ``Q`` of a segment (for campaigns combining include and exclude segments)."""
    return compile_rules(segment.rules, build_context(segment_id=segment.pk))
