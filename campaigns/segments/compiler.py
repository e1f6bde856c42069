"""Compile a segment's rule tree into one Django ``Q`` over subscribers.

The rule tree is plain JSON, as the admin's builder saves it::

    {"match": "all", "rules": [
        {"field": "country", "op": "in", "value": ["LV", "LT"]},
        {"match": "any", "rules": [
            {"field": "event", "op": "at_least", "value": 2, "event": "Product Viewed",
             "where": [{"property": "category", "op": "equals", "value": "Shoes"}], "within_days": 30},
            {"field": "order_count", "op": "gte", "value": 3}]}]}

A group has ``match`` ("all" or "any"), ``rules`` and optionally
``negate``; an empty group matches everyone (MATCH_ALL). Every other node is
a rule: ``field`` from the allow-list ``FIELDS``, ``op`` from the operator
table of the field's type, ``value``, and the field's own parameters.

Everything is compiled into subquery conditions (EXISTS / IN over events,
orders, deliveries, consent) of a single query: nothing is evaluated per
person in Python. The module is pure: the only database reads happen
through ``CompileContext`` (attribute catalogue, referenced segments), which
tests can fill by hand. Conditions reach subscriber columns only through
expressions (``F``, ``OuterRef``), never by writing the table name into SQL:
a segment's queryset is often nested in another query, where Django gives
the subscriber table another alias (U0…).

Null rule: a positive operator never matches a missing value; a negative one
("not equals", "not in", "does not contain", "did not buy"…) matches people
who have no value, because marketers read "country is not Latvia" as
"everyone except Latvians".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    Max,
    Min,
    OuterRef,
    Q,
    Value,
    Window,
    lookups,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, PercentRank
from django_countries import countries

MATCH_ALL = Q()
MATCH_NONE = Q(pk__in=[])

MAX_DEPTH = 6
MAX_RULES = 200


class SegmentRuleError(ValueError):
    """A rule tree that cannot be compiled; ``errors`` names each bad rule in plain words."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


# --- Operators -------------------------------------------------------------

OPERATOR_LABELS = {
    "equals": "is", "not_equals": "is not", "in": "is any of", "not_in": "is none of",
    "contains": "contains", "not_contains": "does not contain", "starts_with": "starts with",
    "ends_with": "ends with", "matches": "matches pattern", "is_set": "is set", "is_not_set": "is not set",
    "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "between": "is between",
    "before": "is before", "after": "is after", "on": "is on",
    "in_last_days": "in the last N days", "more_than_days_ago": "more than N days ago",
    "in_next_days": "in the next N days",
    "is_true": "is yes", "is_false": "is no",
    "has": "has tag", "has_not": "does not have tag", "has_any": "has any of", "has_none": "has none of",
    "subscribed": "is subscribed to", "not_subscribed": "is not subscribed to",
    "granted": "has granted", "not_granted": "has not granted",
    "at_least": "at least N times", "at_most": "at most N times", "exactly": "exactly N times",
    "not_performed": "did not perform",
    "ever": "ever", "never": "never", "not_in_last_days": "not in the last N days",
    "bought": "bought", "not_bought": "did not buy",
    "in_segment": "is in segment", "not_in_segment": "is not in segment",
    "top_percent": "is in the top N%",
}

TYPE_OPERATORS: dict[str, tuple[str, ...]] = {
    "text": ("equals", "not_equals", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with",
             "matches", "is_set", "is_not_set"),
    "number": ("equals", "not_equals", "gt", "gte", "lt", "lte", "between", "is_set", "is_not_set"),
    "datetime": ("before", "after", "on", "between", "in_last_days", "more_than_days_ago", "in_next_days",
                 "is_set", "is_not_set"),
    "date": ("before", "after", "on", "between", "in_last_days", "more_than_days_ago", "in_next_days",
             "is_set", "is_not_set"),
    "choice": ("equals", "not_equals", "in", "not_in", "is_set", "is_not_set"),
    "country": ("in", "not_in", "equals", "not_equals", "is_set", "is_not_set"),
    "boolean": ("is_true", "is_false"),
    "tags": ("has", "has_not", "has_any", "has_none", "is_set", "is_not_set"),
}
NEGATIVE_OPS = {"not_equals", "not_in", "not_contains", "has_not", "has_none"}
# Operators whose value is a list, and those that take no value at all.
LIST_OPS = {"in", "not_in", "has_any", "has_none", "between"}
NO_VALUE_OPS = {"is_set", "is_not_set", "is_true", "is_false", "ever", "never", "not_performed"}
DAYS_OPS = {"in_last_days", "more_than_days_ago", "in_next_days", "not_in_last_days"}

CART_EVENTS = ("Product Added", "Checkout Started")


# --- Context ---------------------------------------------------------------


@dataclass
class CompileContext:
    """What compiling needs from outside the rule tree.

    ``segment_rules`` returns a referenced segment's rules (or None when it
    does not exist); ``lifecycle_rules`` returns the rule tree of a
    lifecycle stage's source segment. ``attributes`` maps catalogue keys to
    their type and choices, ``attribute_labels`` to what people call them.
    ``stack`` holds the segments being compiled, to reject cycles.
    """

    now: dt.datetime
    attributes: Mapping[str, tuple[str, list[str]]] = field(default_factory=dict)
    attribute_labels: Mapping[str, str] = field(default_factory=dict)
    segment_rules: Callable[[int], tuple[str, Any] | None] = lambda pk: None
    lifecycle_rules: Callable[[str], Any] = lambda key: None
    topics: Callable[[int], bool] = lambda pk: True
    stack: tuple[str, ...] = ()
    references: set[int] = field(default_factory=set)
    fields_used: list[str] = field(default_factory=list)

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(dt.UTC).date()


@dataclass(frozen=True)
class FieldSpec:
    """One entry of the allow-list: what people see, which operators fit, how it compiles."""

    key: str
    label: str
    group: str
    type: str
    compile: Callable[[FieldSpec, dict[str, Any], CompileContext], Q]
    path: str = ""
    ops: tuple[str, ...] = ()
    choices: tuple[tuple[str, str], ...] | Callable[[], list[tuple[str, str]]] = ()
    params: tuple[dict[str, Any], ...] = ()
    help: str = ""
    sample: str = ""  # subscriber column shown in the preview for this rule

    @property
    def operators(self) -> tuple[str, ...]:
        return self.ops or TYPE_OPERATORS[self.type]

    def choice_list(self) -> list[tuple[str, str]]:
        return list(self.choices() if callable(self.choices) else self.choices)


# --- Value checking --------------------------------------------------------


def _number(value: Any, what: str = "The value") -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number.")
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except (InvalidOperation, AttributeError):
        raise ValueError(f"{what} must be a number, not “{value}”.") from None
    if not number.is_finite():
        raise ValueError(f"{what} must be a number, not “{value}”.")
    return number


def _whole(value: Any, what: str = "The number of days", low: int = 0, high: int = 36500) -> int:
    number = _number(value, what)
    if number != number.to_integral_value() or not low <= number <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, not “{value}”.")
    return int(number)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValueError(f"“{value}” is not a date; use YYYY-MM-DD.") from None


def _pair(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("“between” needs two values: from and to.")
    return value[0], value[1]


def _list(value: Any) -> list[Any]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list | tuple):
        raise ValueError("Choose one or more values.")
    items = [v for v in value if v not in (None, "")]
    if not items:
        raise ValueError("Choose one or more values.")
    return items


def _text(value: Any) -> str:
    if value is None or isinstance(value, list | dict) or str(value).strip() == "":
        raise ValueError("Enter a value.")
    return str(value).strip()


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


# --- Generic comparisons on a column path -----------------------------------


def _set_q(path: str, *, text: bool) -> Q:
    q = Q(**{f"{path}__isnull": False})
    return q & ~Q(**{path: ""}) if text else q


def compare_text(path: str, op: str, value: Any, *, exact: bool = False) -> Q:
    """Compare a text column; case-insensitive unless ``exact`` (codes such as language or status)."""
    if op == "is_set":
        return _set_q(path, text=True)
    if op == "is_not_set":
        return ~_set_q(path, text=True)
    if op in {"in", "not_in"}:
        items = [str(v).strip() for v in _list(value)]
        if exact:
            q = Q(**{f"{path}__in": items})
        else:
            q = Q()
            for item in items:
                q |= Q(**{f"{path}__iexact": item})
        return _negate_or_null(q, path) if op == "not_in" else q
    text = _text(value)
    if op == "matches":
        try:
            re.compile(text)
        except re.error as exc:
            raise ValueError(f"“{text}” is not a valid pattern ({exc}).") from None
        return Q(**{f"{path}__iregex": text})
    lookup = {"equals": "exact" if exact else "iexact", "not_equals": "exact" if exact else "iexact",
              "contains": "icontains", "not_contains": "icontains", "starts_with": "istartswith",
              "ends_with": "iendswith"}.get(op)
    if lookup is None:
        raise ValueError(f"“{OPERATOR_LABELS.get(op, op)}” does not apply here.")
    q = Q(**{f"{path}__{lookup}": text})
    return _negate_or_null(q, path) if op in NEGATIVE_OPS else q


def _negate_or_null(q: Q, path: str) -> Q:
    # NOT (x = v) is NULL, not true, when x is NULL: say explicitly that people without a value match.
    return ~q | Q(**{f"{path}__isnull": True})


def compare_number(path: str, op: str, value: Any, *, cast: bool = False) -> Q:
    """Compare a number column (or, with ``cast``, a JSON attribute path read as a number)."""
    lhs: Any = JSONNumber(KeyTextTransform(*reversed(path.split("__", 1)))) if cast else F(path)
    if op == "is_set":
        return Q(**{f"{path}__isnull": False})
    if op == "is_not_set":
        return Q(**{f"{path}__isnull": True})
    if op == "between":
        low, high = (_number(v) for v in _pair(value))
        if low > high:
            raise ValueError("The first number of “between” must not be larger than the second.")
        if not cast:
            return Q(**{f"{path}__gte": low, f"{path}__lte": high})
        return _lookup(lhs, "gte", low, cast) & _lookup(lhs, "lte", high, cast)
    number = _number(value)
    lookup = {"equals": "exact", "not_equals": "exact", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}.get(op)
    if lookup is None:
        raise ValueError(f"“{OPERATOR_LABELS.get(op, op)}” does not apply to numbers.")
    q = _lookup(lhs, lookup, number, cast) if cast else Q(**{f"{path}__{lookup}": number})
    return _negate_or_null(q, path) if op == "not_equals" else q


class JSONNumber(Func):
    """Read a JSON value as a number; text that is not a number reads as NULL instead of failing the query."""

    template = "CAST(%(expressions)s AS REAL)"  # SQLite's CAST never fails
    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        inner, params = compiler.compile(self.source_expressions[0])
        pattern = r"^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$"
        sql = f"(CASE WHEN ({inner}) ~ %s THEN CAST(({inner}) AS double precision) END)"
        return sql, (*params, pattern, *params)


def _lookup(lhs: Any, lookup: str, number: Decimal, cast: bool) -> Q:
    classes = {"exact": lookups.Exact, "gt": lookups.GreaterThan, "gte": lookups.GreaterThanOrEqual,
               "lt": lookups.LessThan, "lte": lookups.LessThanOrEqual}
    rhs: Any = float(number) if cast else number
    return Q(classes[lookup](lhs, Value(rhs)))


def compare_moment(path: str, op: str, value: Any, ctx: CompileContext, *, kind: str = "datetime") -> Q:
    """Compare a datetime column, a date column or (``kind="isodate"``) an ISO-date JSON value.

    Dates given by staff are whole days in UTC: "before 2026-03-01" means
    before that day starts, "after" means after it ends.
    """
    if op == "is_set":
        return Q(**{f"{path}__isnull": False})
    if op == "is_not_set":
        return Q(**{f"{path}__isnull": True})

    def point(day: dt.date) -> Any:
        if kind == "datetime":
            return _start_of(day)
        return day.isoformat() if kind == "isodate" else day

    def moment(delta_days: int) -> Any:
        if kind == "datetime":
            return ctx.now + dt.timedelta(days=delta_days)
        day = ctx.today + dt.timedelta(days=delta_days)
        return day.isoformat() if kind == "isodate" else day

    if op in {"before", "after", "on"}:
        day = _date(value)
        if op == "before":
            return Q(**{f"{path}__lt": point(day)})
        if op == "after":
            return Q(**{f"{path}__gte": point(day + dt.timedelta(days=1))})
        return Q(**{f"{path}__gte": point(day), f"{path}__lt": point(day + dt.timedelta(days=1))})
    if op == "between":
        first, last = (_date(v) for v in _pair(value))
        if first > last:
            raise ValueError("The first date of “between” must not be after the second.")
        return Q(**{f"{path}__gte": point(first), f"{path}__lt": point(last + dt.timedelta(days=1))})
    days = _whole(value)
    if op == "in_last_days":
        return Q(**{f"{path}__gte": moment(-days)}) & Q(**{f"{path}__lte": moment(0)})
    if op == "more_than_days_ago":
        return Q(**{f"{path}__lt": moment(-days)})
    if op == "in_next_days":
        return Q(**{f"{path}__gte": moment(0), f"{path}__lte": moment(days)})
    raise ValueError(f"“{OPERATOR_LABELS.get(op, op)}” does not apply to dates.")


# --- Field compilers --------------------------------------------------------


def _column(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    op, value = rule["op"], rule.get("value")
    if spec.type == "text":
        return compare_text(spec.path, op, value)
    if spec.type in {"choice", "country"}:
        if op in {"equals", "not_equals", "in", "not_in"}:
            allowed = {code for code, _ in spec.choice_list()}
            values = _list(value) if op in LIST_OPS else [_text(value)]
            unknown = [str(v) for v in values if str(v) not in allowed]
            if unknown:
                raise ValueError(f"{', '.join(unknown)} is not one of the choices.")
        return compare_text(spec.path, op, value, exact=True)
    if spec.type == "number":
        return compare_number(spec.path, op, value)
    if spec.type in {"datetime", "date"}:
        return compare_moment(spec.path, op, value, ctx, kind=spec.type)
    if spec.type == "boolean":
        return Q(**{spec.path: op == "is_true"})
    if spec.type == "tags":
        return _tags(spec.path, op, value)
    raise ValueError(f"Field type {spec.type} has no comparison.")


def _tags(path: str, op: str, value: Any) -> Q:
    if op in {"is_set", "is_not_set"}:
        has_any = ~Q(**{path: []}) & Q(**{f"{path}__isnull": False})
        return has_any if op == "is_set" else ~has_any
    items = [str(v).strip() for v in (_list(value) if op in {"has_any", "has_none"} else [_text(value)])]
    q = Q(HasAnyTag(F(path), items))
    return ~q if op in {"has_not", "has_none"} else q


class HasAnyTag(Func):
    """Say whether a JSON list of tags holds any of ``tags``, ignoring case.

    The column is an expression (``F("tags")``), never a table name written
    into SQL: a segment's queryset is often nested in another query
    (``subscriber__in=members(...)``), where Django gives the subscriber
    table another alias, and only the compiled column follows it.
    """

    output_field = BooleanField()

    def __init__(self, column: Any, tags: list[str]) -> None:
        super().__init__(column)
        self.tags = [tag.lower() for tag in tags]

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        marks = ", ".join("%s" for _ in self.tags)
        return (f"EXISTS (SELECT 1 FROM json_each({column}) WHERE lower(value) IN ({marks}))",
                (*params, *self.tags))

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Containment on the lower-cased list: one cast per row, no set-returning function.
        column, params = compiler.compile(self.source_expressions[0])
        return f"(lower(({column})::text)::jsonb ?| %s::text[])", (*params, self.tags)


def _email_domain(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    op, value = rule["op"], rule.get("value")
    if op in {"is_set", "is_not_set"}:
        raise ValueError("Every subscriber has an email domain.")
    domains = [str(v).strip().lstrip("@").lower() for v in (_list(value) if op in LIST_OPS else [_text(value)])]
    if op in {"equals", "not_equals", "in", "not_in"}:
        q = Q()
        for domain in domains:
            q |= Q(email_key__endswith=f"@{domain}")
        return ~q if op in NEGATIVE_OPS else q
    return compare_text("email_key", op, value)


def _attribute(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    path = spec.path
    key = path.split("__", 1)[1]
    op, value = rule["op"], rule.get("value")
    if op == "is_set":
        return Q(attributes__has_key=key)
    if op == "is_not_set":
        return ~Q(attributes__has_key=key)
    if spec.type == "number":
        q = compare_number(path, op, value, cast=True)
        return q if op != "not_equals" else q | ~Q(attributes__has_key=key)
    if spec.type == "date":
        return Q(attributes__has_key=key) & compare_moment(path, op, value, ctx, kind="isodate")
    if spec.type == "boolean":
        return Q(**{path: op == "is_true"})
    if spec.type == "choice":
        allowed = {code for code, _ in spec.choice_list()}
        values = _list(value) if op in LIST_OPS else [_text(value)]
        unknown = [str(v) for v in values if str(v) not in allowed]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} is not one of the choices.")
    q = compare_text(path, op, value)
    return q | ~Q(attributes__has_key=key) if op in NEGATIVE_OPS else q


def _age(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    """Turn an age condition into a birth-date range (index-friendly; leap days count as 1 March)."""
    op, value = rule["op"], rule.get("value")
    if op in {"is_set", "is_not_set"}:
        return Q(birth_date__isnull=op == "is_not_set")

    def born_by(years: int) -> dt.date:  # latest birth date of someone aged >= years today
        today = ctx.today
        try:
            return today.replace(year=today.year - years)
        except ValueError:
            return today.replace(year=today.year - years, day=28)

    def at_least(years: int) -> Q:
        return Q(birth_date__lte=born_by(years))

    def at_most(years: int) -> Q:
        return Q(birth_date__gt=born_by(years + 1))

    if op == "between":
        low, high = (_whole(v, "An age", 0, 150) for v in _pair(value))
        return at_least(low) & at_most(high)
    years = _whole(value, "An age", 0, 150)
    table = {"gte": at_least(years), "gt": at_least(years + 1), "lte": at_most(years),
             "lt": at_most(years - 1) if years > 0 else MATCH_NONE, "equals": at_least(years) & at_most(years)}
    if op == "not_equals":
        return ~(at_least(years) & at_most(years)) | Q(birth_date__isnull=True)
    if op not in table:
        raise ValueError(f"“{OPERATOR_LABELS.get(op, op)}” does not apply to an age.")
    return table[op]


def _birthday(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    """Match birthdays (month and day, the year ignored) from today for N days; 29 Feb counts on 28 Feb."""
    op, value = rule["op"], rule.get("value")
    if op in {"is_set", "is_not_set"}:
        return Q(birthday_month__isnull=op == "is_not_set")
    if op != "in_next_days":
        raise ValueError("Use “in the next N days” for birthdays.")
    days = _whole(value, "The number of days", 0, 366)
    by_month: dict[int, set[int]] = {}
    for offset in range(days + 1):
        day = ctx.today + dt.timedelta(days=offset)
        by_month.setdefault(day.month, set()).add(day.day)
        if day.month == 2 and day.day == 28 and not _is_leap(day.year):
            by_month[2].add(29)
    q = MATCH_NONE
    for month, month_days in sorted(by_month.items()):
        q |= Q(birthday_month=month, birthday_day__in=sorted(month_days))
    return q


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _topic(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    from preferences.models import TopicSubscription

    topic_id = _whole(rule.get("value"), "The topic", 1, 2**31)
    if not ctx.topics(topic_id):
        raise ValueError("That topic no longer exists.")
    q = Q(Exists(TopicSubscription.objects.filter(subscriber=OuterRef("pk"), topic_id=topic_id, subscribed=True)))
    return q if rule["op"] == "subscribed" else ~q


def _consent(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    purpose = _text(rule.get("value"))
    if purpose not in {"email_marketing", "personalization"}:
        raise ValueError("Choose email marketing or personalization.")
    from subscribers.models import ConsentRecord

    latest = ConsentRecord.objects.filter(subscriber=OuterRef("pk"), purpose=purpose, topic__isnull=True)
    q = Q(Exists(latest.filter(granted=True).exclude(
        Exists(ConsentRecord.objects.filter(subscriber=OuterRef("subscriber"), purpose=purpose, topic__isnull=True,
                                            occurred_at__gt=OuterRef("occurred_at")))
    )))
    return q if rule["op"] == "granted" else ~q


def _personalization_opt_out(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    from subscribers.models import ConsentRecord

    withdrawn = Q(Exists(ConsentRecord.objects.filter(
        subscriber=OuterRef("pk"), purpose="personalization", topic__isnull=True, granted=False,
    ).exclude(Exists(ConsentRecord.objects.filter(
        subscriber=OuterRef("subscriber"), purpose="personalization", topic__isnull=True,
        occurred_at__gt=OuterRef("occurred_at"))))))
    return withdrawn if rule["op"] == "is_true" else ~withdrawn


_ENGAGEMENT = {
    # field: (subscriber column used for "any email", delivery column)
    "email_received": ("", "sent_at"),
    "email_opened": ("last_open_at", "first_opened_at"),
    "email_clicked": ("last_click_at", "first_clicked_at"),
}


def _engagement(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    """Received / opened / clicked any email, or a given campaign's, ever or within N days.

    "Any email" opens and clicks use the profile's last human open/click
    (kept current by tracking), so machine opens never count as engagement.
    """
    from campaigns.models import Delivery

    op = rule["op"]
    column, delivery_column = _ENGAGEMENT[spec.key]
    message = str(rule.get("message") or "").strip()
    since = None
    if op in {"in_last_days", "not_in_last_days"}:
        since = ctx.now - dt.timedelta(days=_whole(rule.get("value")))
    if column and not message:
        q = Q(**{f"{column}__isnull": False})
        if since is not None:
            q &= Q(**{f"{column}__gte": since})
    else:
        deliveries = Delivery.objects.filter(subscriber=OuterRef("pk"), **{f"{delivery_column}__isnull": False})
        if message:
            deliveries = deliveries.filter(Q(message_key=message) | Q(message_key__startswith=f"{message}:"))
        if since is not None:
            deliveries = deliveries.filter(**{f"{delivery_column}__gte": since})
        q = Q(Exists(deliveries))
    return q if op in {"ever", "in_last_days"} else ~q


def _bounced(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    from campaigns.models import Delivery, DeliveryStatus

    deliveries = Delivery.objects.filter(subscriber=OuterRef("pk"), status=DeliveryStatus.BOUNCED)
    if rule["op"] in {"in_last_days", "not_in_last_days"}:
        since = ctx.now - dt.timedelta(days=_whole(rule.get("value")))
        deliveries = deliveries.filter(created_at__gte=since)
        q = Q(Exists(deliveries))
    else:
        q = Q(status="bounced") | Q(Exists(deliveries))
    return q if rule["op"] in {"ever", "in_last_days"} else ~q


def _event_filter(rule: dict[str, Any], ctx: CompileContext) -> Q:
    """Return the conditions on the event rows themselves: name, window and property filters."""
    name = str(rule.get("event") or "").strip()
    if not name:
        raise ValueError("Choose which event.")
    q = Q(name=name)
    if rule.get("within_days") not in (None, ""):
        q &= Q(occurred_at__gte=ctx.now - dt.timedelta(days=_whole(rule["within_days"])))
    if rule.get("between"):
        first, last = (_date(v) for v in _pair(rule["between"]))
        if first > last:
            raise ValueError("The first date must not be after the second.")
        q &= Q(occurred_at__gte=_start_of(first), occurred_at__lt=_start_of(last + dt.timedelta(days=1)))
    for condition in rule.get("where") or []:
        if not isinstance(condition, dict):
            raise ValueError("An event property filter must name a property, an operator and a value.")
        prop = str(condition.get("property") or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", prop):
            raise ValueError(f"“{prop}” is not a property name (letters, digits and _).")
        path = f"properties__{prop}"
        op = condition.get("op", "equals")
        if op in {"gt", "gte", "lt", "lte", "between"}:
            q &= compare_number(path, op, condition.get("value"), cast=True)
        elif op in TYPE_OPERATORS["text"]:
            q &= compare_text(path, op, condition.get("value"))
        else:
            raise ValueError(f"“{OPERATOR_LABELS.get(op, op)}” does not apply to an event property.")
    return q


def _event(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    from subscribers.models import Event

    op = rule["op"]
    events = Event.objects.filter(_event_filter(rule, ctx), subscriber__isnull=False)
    if op == "not_performed":
        return ~Q(Exists(events.filter(subscriber=OuterRef("pk"))))
    times = _whole(rule.get("value", 1), "The number of times", 0, 100000)
    if op == "at_least" and times <= 1:
        return Q(Exists(events.filter(subscriber=OuterRef("pk")))) if times == 1 else MATCH_ALL
    if op == "exactly" and times == 0:
        return ~Q(Exists(events.filter(subscriber=OuterRef("pk"))))
    counted = events.order_by().values("subscriber_id").annotate(n=Count("*"))
    if op == "at_least":
        return Q(pk__in=counted.filter(n__gte=times).values("subscriber_id"))
    if op == "exactly":
        return Q(pk__in=counted.filter(n=times).values("subscriber_id"))
    if op == "at_most":
        return ~Q(pk__in=counted.filter(n__gt=times).values("subscriber_id"))
    raise ValueError(f"“{OPERATOR_LABELS.get(op, op)}” does not apply to events.")


def _event_time(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    """Compare when a person first (or last) performed an event with a date condition."""
    from subscribers.models import Event

    events = Event.objects.filter(_event_filter(rule, ctx), subscriber__isnull=False).order_by()
    aggregate = Min("occurred_at") if spec.key == "event_first" else Max("occurred_at")
    per_person = events.values("subscriber_id").annotate(at=aggregate)
    condition = compare_moment("at", rule["op"], rule.get("value"), ctx)
    return Q(pk__in=per_person.filter(condition).values("subscriber_id"))


def _bought(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    from subscribers.models import OrderItem

    by = rule.get("by", "category")
    path = {"product": "product__product_id", "category": "category", "sku": "sku"}.get(by)
    if path is None:
        raise ValueError("Choose product, category or SKU.")
    items = [str(v).strip() for v in _list(rule.get("value"))]
    match = Q()
    for item in items:
        match |= Q(**{f"{path}__iexact" if by == "category" else path: item})
    bought = OrderItem.objects.filter(match, order__subscriber=OuterRef("pk"), order__status__in=["completed",
                                                                                                  "partially_refunded"])
    if rule.get("within_days") not in (None, ""):
        bought = bought.filter(order__occurred_at__gte=ctx.now - dt.timedelta(days=_whole(rule["within_days"])))
    q = Q(Exists(bought))
    return q if rule["op"] == "bought" else ~q


def _cart_abandoned(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    """A cart event (Product Added, Checkout Started) in the window with no order after it.

    "No order after it" reads the profile's last order time, which the
    tracking API keeps current, instead of scanning order events again.
    """
    from subscribers.models import Event

    hours = _whole(rule.get("within_hours", 24), "The number of hours", 1, 24 * 365)
    carts = Event.objects.filter(
        subscriber=OuterRef("pk"), name__in=CART_EVENTS, occurred_at__gte=ctx.now - dt.timedelta(hours=hours),
        occurred_at__gt=Coalesce(OuterRef("last_order_at"), Value(dt.datetime(1970, 1, 1, tzinfo=dt.UTC))),
    )
    q = Q(Exists(carts))
    return q if rule["op"] == "is_true" else ~q


class Epoch(Func):
    """Read a datetime as seconds since 1970, on SQLite and PostgreSQL alike."""

    template = "((julianday(%(expressions)s) - 2440587.5) * 86400.0)"
    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)", **extra)


def _lapsed(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    """Customers whose last order is older than N× their usual interval between orders, or than D days.

    The usual interval is (last order − first order) / (orders − 1), so it
    exists from the second order on, and counts only when it is at least a
    day (orders placed together say nothing about rhythm); everyone else
    lapses after D days.
    """
    multiplier = _number(rule.get("multiplier", 2), "The multiplier")
    days = _whole(rule.get("days", 180))
    if multiplier <= 0:
        raise ValueError("The multiplier must be above 0.")
    last = Epoch("last_order_at")
    span = last - Epoch("first_order_at")  # first to last order, in seconds
    gaps = F("order_count") - 1  # intervals between orders
    since_last = Value(ctx.now.timestamp()) - last
    overdue = (Q(order_count__gte=2) & Q(lookups.GreaterThanOrEqual(span, Value(86400.0) * gaps))
               & Q(lookups.GreaterThan(since_last * gaps, Value(float(multiplier)) * span)))
    q = Q(order_count__gte=1) & (Q(last_order_at__lt=ctx.now - dt.timedelta(days=days)) | overdue)
    return q if rule["op"] == "is_true" else ~q


def _spend_rank(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    from subscribers.models import Subscriber

    percent = _number(rule.get("value"), "The percentage")
    if not 0 < percent <= 100:
        raise ValueError("The percentage must be above 0 and at most 100.")
    ranked = Subscriber.objects.filter(order_count__gt=0).annotate(
        rank=Window(PercentRank(), order_by=F("total_spent").desc())
    ).filter(rank__lt=float(percent) / 100).values("pk")
    return Q(pk__in=ranked)


def _segment(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    segment_id = _whole(rule.get("value"), "The segment", 1, 2**31)
    found = ctx.segment_rules(segment_id)
    if found is None:
        raise ValueError("That segment no longer exists.")
    name, rules = found
    q = _nested(f"segment:{segment_id}", name, rules, ctx)
    ctx.references.add(segment_id)
    return q if rule["op"] == "in_segment" else ~q


def _nested(key: str, name: str, rules: Any, ctx: CompileContext) -> Q:
    if key in ctx.stack:
        raise ValueError(f"“{name}” refers back to this segment (a cycle).")
    inner = CompileContext(now=ctx.now, attributes=ctx.attributes, segment_rules=ctx.segment_rules,
                           lifecycle_rules=ctx.lifecycle_rules, topics=ctx.topics, stack=(*ctx.stack, key),
                           references=ctx.references)
    try:
        return compile_rules(rules, inner)
    except SegmentRuleError as exc:
        raise ValueError(f"“{name}” cannot be used: {exc.errors[0]}") from None


LIFECYCLE_STAGES = (
    ("lead", "Lead (never ordered)"),
    ("new_customer", "New customer"),
    ("active", "Active customer"),
    ("loyal", "Loyal customer"),
    ("at_risk", "At risk"),
    ("lapsed", "Lapsed"),
)
# Which stage wins when a person matches several: the most urgent first.
LIFECYCLE_PRECEDENCE = ("lapsed", "at_risk", "loyal", "new_customer", "active")


def lifecycle_conditions(ctx: CompileContext) -> list[tuple[str, Q]]:
    """Return (stage, condition) in precedence order; each excludes the stages before it.

    Stages come from the prebuilt segments (Lapsed, At-risk, Loyal and
    First-time customers), so editing their thresholds moves people between
    stages. Leads never ordered; active customers ordered and are none of the rest.
    """
    result: list[tuple[str, Q]] = []
    earlier = MATCH_NONE
    customer = Q(order_count__gte=1)
    for stage in LIFECYCLE_PRECEDENCE:
        if stage == "active":
            own = customer
        else:
            rules = ctx.lifecycle_rules(stage)
            own = customer & _nested(f"lifecycle:{stage}", dict(LIFECYCLE_STAGES)[stage], rules, ctx) \
                if rules is not None else MATCH_NONE
        result.append((stage, own & ~earlier))
        earlier |= own
    result.append(("lead", Q(order_count=0)))
    return result


def _lifecycle(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    op, value = rule["op"], rule.get("value")
    wanted = set(_list(value) if op in LIST_OPS else [_text(value)])
    unknown = wanted - {code for code, _ in LIFECYCLE_STAGES}
    if unknown:
        raise ValueError(f"{', '.join(sorted(unknown))} is not a lifecycle stage.")
    q = MATCH_NONE
    for stage, condition in lifecycle_conditions(ctx):
        if stage in wanted:
            q |= condition
    return ~q if op in NEGATIVE_OPS else q


BUCKET_MODULUS = 4294967296
BUCKET_MULTIPLIER = 2654435761


def bucket_multiplier(salt: int) -> int:
    """Return the odd multiplier of a salt: each salt orders people differently (multiplicative hashing)."""
    multiplier = (BUCKET_MULTIPLIER + salt * 2246822518) % BUCKET_MODULUS
    return multiplier | 1


def random_bucket(subscriber_id: int, salt: int = 0) -> int:
    """Return the stable bucket 0–99 of a person, the same the SQL computes."""
    return (subscriber_id * bucket_multiplier(salt) % BUCKET_MODULUS) * 100 // BUCKET_MODULUS


def _bucket(spec: FieldSpec, rule: dict[str, Any], ctx: CompileContext) -> Q:
    salt = _whole(rule.get("salt", 0), "The salt", 0, 10**6)
    # Whole numbers throughout: the division truncates, as random_bucket's // does.
    bucket = (F("id") * bucket_multiplier(salt) % BUCKET_MODULUS) * 100 / BUCKET_MODULUS
    op, value = rule["op"], rule.get("value")
    if op == "between":
        low, high = (_whole(v, "A bucket", 0, 99) for v in _pair(value))
        return Q(lookups.GreaterThanOrEqual(bucket, low)) & Q(lookups.LessThanOrEqual(bucket, high))
    number = _whole(value, "A bucket", 0, 100)
    table = {"lt": lookups.LessThan, "gte": lookups.GreaterThanOrEqual, "equals": lookups.Exact}
    if op not in table:
        raise ValueError("Use “<”, “≥”, “is” or “between” for buckets.")
    return Q(table[op](bucket, number))


# --- The allow-list --------------------------------------------------------


def _choices_of(model_choices: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(v), str(label)) for v, label in model_choices)


def _languages() -> list[tuple[str, str]]:
    from django.conf import settings

    return [(code, str(name)) for code, name in settings.LANGUAGES]


def _countries() -> list[tuple[str, str]]:
    return [(code, str(name)) for code, name in countries]


def _statuses() -> tuple[tuple[str, str], ...]:
    from subscribers.models import SubscriberStatus

    return _choices_of(SubscriberStatus.choices)


def _genders() -> tuple[tuple[str, str], ...]:
    from subscribers.models import Gender

    return _choices_of(Gender.choices)


def _days_param(label: str = "Within the last N days (empty: ever)") -> dict[str, Any]:
    return {"name": "within_days", "label": label, "type": "number", "required": False}


MESSAGE_PARAM = {"name": "message", "label": "Campaign or message (empty: any email)", "type": "message",
                 "required": False}
EVENT_PARAMS = ({"name": "event", "label": "Event", "type": "event", "required": True},
                {"name": "where", "label": "Where", "type": "properties", "required": False})


def _build_fields() -> dict[str, FieldSpec]:
    profile, consent, engagement, behaviour, commerce, lifecycle = (
        "Profile", "Consent and preferences", "Email engagement", "Behaviour", "Commerce", "Lifecycle and segments")
    specs = [
        FieldSpec("email", "Email address", profile, "text", _column, path="email_key", sample="email"),
        FieldSpec("email_domain", "Email domain", profile, "text", _email_domain,
                  ops=("equals", "not_equals", "in", "not_in", "ends_with"), sample="email",
                  help="e.g. gmail.com"),
        FieldSpec("first_name", "First name", profile, "text", _column, path="first_name", sample="first_name"),
        FieldSpec("last_name", "Last name", profile, "text", _column, path="last_name", sample="last_name"),
        FieldSpec("language", "Language", profile, "choice", _column, path="language", choices=_languages,
                  sample="language"),
        FieldSpec("country", "Country", profile, "country", _column, path="country", choices=_countries,
                  sample="country"),
        FieldSpec("region", "Region", profile, "text", _column, path="region", sample="region"),
        FieldSpec("city", "City", profile, "text", _column, path="city", sample="city"),
        FieldSpec("timezone", "Time zone", profile, "text", _column, path="timezone", sample="timezone"),
        FieldSpec("age", "Age", profile, "number", _age,
                  ops=("equals", "not_equals", "gt", "gte", "lt", "lte", "between", "is_set", "is_not_set"),
                  sample="birth_date", help="From the birth date; people without one never match."),
        FieldSpec("birthday", "Birthday", profile, "date", _birthday, ops=("in_next_days", "is_set", "is_not_set"),
                  sample="birthday_month", help="Month and day, the year ignored; 0 days means today."),
        FieldSpec("gender", "Gender", profile, "choice", _column, path="gender", choices=_genders, sample="gender"),
        FieldSpec("company", "Company", profile, "text", _column, path="company", sample="company"),
        FieldSpec("industry", "Industry", profile, "text", _column, path="industry", sample="industry"),
        FieldSpec("job_title", "Job title", profile, "text", _column, path="job_title", sample="job_title"),
        FieldSpec("source", "Signup source", profile, "text", _column, path="source", sample="source"),
        FieldSpec("tags", "Tags", profile, "tags", _column, path="tags", sample="tags"),
        FieldSpec("created_at", "Added on", profile, "datetime", _column, path="created_at", sample="created_at"),
        FieldSpec("confirmed_at", "Confirmed on", profile, "datetime", _column, path="confirmed_at",
                  sample="confirmed_at"),
        FieldSpec("status", "Subscription status", profile, "choice", _column, path="status", choices=_statuses,
                  sample="status"),
        FieldSpec("topic", "Topic", consent, "choice", _topic, ops=("subscribed", "not_subscribed"),
                  help="Subscribed to a preference-center topic."),
        FieldSpec("consent", "Consent", consent, "choice", _consent, ops=("granted", "not_granted"),
                  choices=(("email_marketing", "Email marketing"), ("personalization", "Personalization")),
                  help="The latest entry of the consent ledger for this purpose."),
        FieldSpec("personalization_opted_out", "Opted out of personalization", consent, "boolean",
                  _personalization_opt_out),
        FieldSpec("email_received", "Received an email", engagement, "datetime", _engagement,
                  ops=("ever", "never", "in_last_days", "not_in_last_days"),
                  params=(MESSAGE_PARAM,)),
        FieldSpec("email_opened", "Opened an email", engagement, "datetime", _engagement,
                  ops=("ever", "never", "in_last_days", "not_in_last_days"), sample="last_open_at",
                  params=(MESSAGE_PARAM,), help="Human opens only; privacy-proxy and scanner opens never count."),
        FieldSpec("email_clicked", "Clicked an email", engagement, "datetime", _engagement,
                  ops=("ever", "never", "in_last_days", "not_in_last_days"), sample="last_click_at",
                  params=(MESSAGE_PARAM,)),
        FieldSpec("last_open_at", "Last opened", engagement, "datetime", _column, path="last_open_at",
                  sample="last_open_at"),
        FieldSpec("last_click_at", "Last clicked", engagement, "datetime", _column, path="last_click_at",
                  sample="last_click_at"),
        FieldSpec("emails_received", "Emails received", engagement, "number", _column, path="emails_received",
                  sample="emails_received"),
        FieldSpec("bounced", "Bounced", engagement, "datetime", _bounced, ops=("ever", "never", "in_last_days")),
        FieldSpec("event", "Performed event", behaviour, "number", _event,
                  ops=("at_least", "at_most", "exactly", "not_performed"),
                  params=(*EVENT_PARAMS, _days_param(),
                          {"name": "between", "label": "Between dates", "type": "daterange", "required": False}),
                  sample="last_seen_at"),
        FieldSpec("event_first", "First performed event", behaviour, "datetime", _event_time,
                  ops=("before", "after", "between", "in_last_days", "more_than_days_ago"),
                  params=EVENT_PARAMS),
        FieldSpec("event_last", "Last performed event", behaviour, "datetime", _event_time,
                  ops=("before", "after", "between", "in_last_days", "more_than_days_ago"),
                  params=EVENT_PARAMS),
        FieldSpec("last_seen_at", "Last seen on the site", behaviour, "datetime", _column, path="last_seen_at",
                  sample="last_seen_at"),
        FieldSpec("order_count", "Number of orders", commerce, "number", _column, path="order_count",
                  sample="order_count"),
        FieldSpec("total_spent", "Total spent", commerce, "number", _column, path="total_spent",
                  sample="total_spent"),
        FieldSpec("average_order_value", "Average order value", commerce, "number", _column,
                  path="average_order_value", sample="average_order_value"),
        FieldSpec("first_order_at", "First order", commerce, "datetime", _column, path="first_order_at",
                  sample="first_order_at"),
        FieldSpec("last_order_at", "Last order", commerce, "datetime", _column, path="last_order_at",
                  sample="last_order_at"),
        FieldSpec("bought", "Bought", commerce, "text", _bought, ops=("bought", "not_bought"),
                  params=({"name": "by", "label": "By", "type": "choice", "required": True,
                           "choices": [["category", "Category"], ["product", "Product"], ["sku", "SKU"]]},
                          _days_param()),
                  sample="last_order_at"),
        FieldSpec("cart_abandoned", "Abandoned a cart", commerce, "boolean", _cart_abandoned,
                  params=({"name": "within_hours", "label": "Within the last N hours", "type": "number",
                           "required": True, "default": 24},),
                  help="Product Added or Checkout Started in the window, and no order after it.",
                  sample="last_seen_at"),
        FieldSpec("lapsed", "Lapsed customer", commerce, "boolean", _lapsed,
                  params=({"name": "multiplier", "label": "× their usual interval", "type": "number",
                           "required": True, "default": 2},
                          {"name": "days", "label": "or no order for N days", "type": "number", "required": True,
                           "default": 180}),
                  sample="last_order_at"),
        FieldSpec("spend_rank", "Top spenders", commerce, "number", _spend_rank, ops=("top_percent",),
                  help="Among customers, by total spent.", sample="total_spent"),
        FieldSpec("lifecycle_stage", "Lifecycle stage", lifecycle, "choice", _lifecycle,
                  ops=("equals", "not_equals", "in", "not_in"), choices=LIFECYCLE_STAGES),
        FieldSpec("segment", "Segment", lifecycle, "choice", _segment, ops=("in_segment", "not_in_segment")),
        FieldSpec("random_bucket", "Random bucket (0–99)", lifecycle, "number", _bucket,
                  ops=("lt", "gte", "equals", "between"),
                  params=({"name": "salt", "label": "Salt (another number gives other buckets)", "type": "number",
                           "required": False, "default": 0},),
                  help="Stable per person: “< 10” is a steady 10% hold-out group."),
    ]
    return {spec.key: spec for spec in specs}


FIELDS: dict[str, FieldSpec] = _build_fields()

ATTRIBUTE_TYPES = {"text": "text", "number": "number", "date": "date", "boolean": "boolean", "choice": "choice"}


def field_spec(key: str, ctx: CompileContext) -> FieldSpec | None:
    """Return the spec of a field key, including custom attributes (``attribute.<key>``)."""
    if key.startswith("attribute."):
        attr = key.split(".", 1)[1]
        if attr not in ctx.attributes:
            return None
        kind, choices = ctx.attributes[attr]
        return FieldSpec(key, ctx.attribute_labels.get(attr) or attr, "Custom attributes", ATTRIBUTE_TYPES[kind],
                         _attribute,
                         path=f"attributes__{attr}", choices=tuple((c, c) for c in choices))
    return FIELDS.get(key)


# --- Compiling the tree ----------------------------------------------------


def is_group(node: Any) -> bool:
    return isinstance(node, dict) and "rules" in node


def compile_rules(tree: Any, ctx: CompileContext) -> Q:
    """Return the ``Q`` of a whole rule tree, or raise SegmentRuleError naming every bad rule."""
    errors: list[str] = []
    count = [0]
    q = _compile_node(tree, ctx, errors, "", 0, count)
    if count[0] > MAX_RULES:
        errors.append(f"A segment may have at most {MAX_RULES} rules; this one has {count[0]}.")
    if errors:
        raise SegmentRuleError(errors)
    return q


def _compile_node(node: Any, ctx: CompileContext, errors: list[str], where: str, depth: int,
                  count: list[int]) -> Q:
    if not is_group(node):
        if where == "":  # the root must be a group
            errors.append("The rules must start with a group (match all / any).")
            return MATCH_NONE
        return _compile_rule(node, ctx, errors, where, count)
    if depth >= MAX_DEPTH:
        errors.append(f"{where or 'The rules'}: groups may be nested at most {MAX_DEPTH} deep.")
        return MATCH_NONE
    match = node.get("match", "all")
    if match not in {"all", "any"}:
        errors.append(f"{where or 'The top group'}: match must be “all” or “any”.")
        return MATCH_NONE
    children = node.get("rules")
    if not isinstance(children, list):
        errors.append(f"{where or 'The top group'}: rules must be a list.")
        return MATCH_NONE
    parts = [
        _compile_node(child, ctx, errors, f"{where}.{i}" if where else f"Rule {i}", depth + 1, count)
        for i, child in enumerate(children, start=1)
    ]
    if not parts:
        q = MATCH_ALL
    else:
        q = Q()
        for part in parts:
            q = (q & part) if match == "all" else (q | part)
        if match == "any" and not q:
            q = MATCH_ALL
    return ~q if node.get("negate") and parts else q


def _compile_rule(rule: Any, ctx: CompileContext, errors: list[str], where: str, count: list[int]) -> Q:
    count[0] += 1
    if not isinstance(rule, dict) or "field" not in rule:
        errors.append(f"{where}: choose a field.")
        return MATCH_NONE
    spec = field_spec(str(rule["field"]), ctx)
    if spec is None:
        errors.append(f"{where}: “{rule['field']}” is not a field segments can use.")
        return MATCH_NONE
    op = rule.get("op")
    if op not in spec.operators:
        allowed = ", ".join(f"“{OPERATOR_LABELS.get(o, o)}”" for o in spec.operators)
        errors.append(f"{where} ({spec.label}): choose one of {allowed}, not “{op}”.")
        return MATCH_NONE
    for param in spec.params:
        if param.get("required") and param.get("default") is None and rule.get(param["name"]) in (None, "", []):
            errors.append(f"{where} ({spec.label}): {param['label'].lower()} is required.")
            return MATCH_NONE
    if op not in NO_VALUE_OPS and rule.get("value") in (None, "", []) and spec.key not in {"event"}:
        errors.append(f"{where} ({spec.label}): enter a value.")
        return MATCH_NONE
    try:
        q = spec.compile(spec, rule, ctx)
    except ValueError as exc:
        errors.append(f"{where} ({spec.label}): {exc}")
        return MATCH_NONE
    if spec.sample and spec.sample not in ctx.fields_used:
        ctx.fields_used.append(spec.sample)
    if spec.key.startswith("attribute.") and spec.path not in ctx.fields_used:
        ctx.fields_used.append("attributes")
    return q


def referenced_segments(tree: Any) -> set[int]:
    """Return the ids of segments a rule tree names directly (for dependency tracking)."""
    found: set[int] = set()

    def walk(node: Any) -> None:
        if is_group(node):
            for child in node.get("rules") or []:
                walk(child)
        elif isinstance(node, dict) and node.get("field") == "segment":
            with contextlib.suppress(TypeError, ValueError):
                found.add(int(node.get("value")))

    walk(tree)
    return found


def uses_lifecycle(tree: Any) -> bool:
    def walk(node: Any) -> bool:
        if is_group(node):
            return any(walk(child) for child in node.get("rules") or [])
        return isinstance(node, dict) and node.get("field") == "lifecycle_stage"

    return walk(tree)


def catalogue(ctx: CompileContext) -> list[dict[str, Any]]:
    """Return the allow-list as plain data for the admin's rule builder."""
    entries: list[FieldSpec] = list(FIELDS.values())
    entries += [s for key in sorted(ctx.attributes) if (s := field_spec(f"attribute.{key}", ctx))]
    return [
        {"key": s.key, "label": s.label, "group": s.group, "type": s.type, "help": s.help,
         "ops": [{"key": o, "label": OPERATOR_LABELS.get(o, o), "value": _value_kind(s, o)} for o in s.operators],
         "choices": [list(c) for c in s.choice_list()] if s.key not in {"topic", "segment"} else [],
         "params": [dict(p) for p in s.params]}
        for s in entries
    ]


def _value_kind(spec: FieldSpec, op: str) -> str:
    """Say which value widget fits a field and operator: none, text, number, date, days, list, choice…"""
    if op in NO_VALUE_OPS:
        return "none"
    if op in DAYS_OPS:
        return "days"
    if spec.key in {"topic", "segment"}:
        return spec.key
    if spec.key == "bought":
        return "list"
    if spec.type in {"choice", "country"}:
        return "multichoice" if op in LIST_OPS else "choice"
    if op == "between":
        return "daterange" if spec.type in {"date", "datetime"} and spec.key != "age" else "numberrange"
    if spec.type in {"date", "datetime"}:
        return "date"
    if spec.type == "number" or spec.key in {"event"}:
        return "number"
    if spec.type == "tags":
        return "list" if op in LIST_OPS else "text"
    return "list" if op in LIST_OPS else "text"


def iter_rules(tree: Any) -> Iterable[dict[str, Any]]:
    if is_group(tree):
        for child in tree.get("rules") or []:
            yield from iter_rules(child)
    elif isinstance(tree, dict):
        yield tree


# Used by EXPLAIN warnings: tables whose sequential scan on a big audience is a red flag.
BIG_TABLES = ("subscribers_event", "subscribers_orderitem", "subscribers_order", "campaigns_delivery",
              "subscribers_consentrecord")

