"""Generate a reproducible, realistic demo audience and its shopping history in bulk.

The same seed gives the same people and the same history. Subscribers are
numbered (external id ``demo-N``) and created in fixed batches, each in its own
transaction, so a second run adds only what is missing and an interrupted run
resumes.

Rows are generated as plain tuples and streamed to the database (COPY on
PostgreSQL, executemany elsewhere): no model instance is built per person,
event or order, which is what makes a million people with ten million events
a matter of minutes. With ``bulk_load`` on PostgreSQL the tables' secondary
indexes and foreign keys are dropped for the load and rebuilt at the end.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import itertools
import json
import random
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import NOT_PROVIDED, Field, JSONField, Model
from django.utils import timezone

from preferences.models import Topic, TopicSubscription
from subscribers.models import (
    AttributeDefinition,
    AttributeType,
    ConsentMethod,
    ConsentPurpose,
    ConsentRecord,
    Event,
    Gender,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    Subscriber,
    SubscriberStatus,
)

BATCH = 5000
HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class Market:
    country: str
    language: str
    timezones: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]  # (city, region)
    female: tuple[str, ...]
    male: tuple[str, ...]
    surnames: tuple[str, ...]
    weight: int
    female_surname: Callable[[str], str] = staticmethod(lambda s: s)  # type: ignore[assignment]


def _lv_female(surname: str) -> str:
    for male_end, female_end in (("iņš", "iņa"), ("is", "e"), ("s", "a")):
        if surname.endswith(male_end):
            return surname[: -len(male_end)] + female_end
    return surname


def _slavic_female(surname: str) -> str:
    if surname.endswith("ski"):
        return surname[:-1] + "a"
    if surname.endswith("ov") or surname.endswith("ev") or surname.endswith("ин"):
        return surname + "a"
    if surname.endswith(("ов", "ев")):
        return surname + "а"
    return surname


MARKETS = (
    Market("US", "en", ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
           (("New York", "NY"), ("Chicago", "IL"), ("Austin", "TX"), ("Seattle", "WA"), ("Denver", "CO"),
            ("Miami", "FL"), ("Los Angeles", "CA")),
           ("Emily", "Olivia", "Sophia", "Ava", "Madison", "Grace", "Chloe", "Harper"),
           ("James", "Michael", "Ethan", "Noah", "Daniel", "Logan", "Ryan", "Tyler"),
           ("Smith", "Johnson", "Williams", "Brown", "Miller", "Davis", "Garcia", "Wilson", "Moore"), 20),
    Market("GB", "en", ("Europe/London",),
           (("London", "England"), ("Manchester", "England"), ("Edinburgh", "Scotland"), ("Bristol", "England"),
            ("Cardiff", "Wales")),
           ("Amelia", "Isla", "Poppy", "Freya", "Evie", "Lily"), ("Oliver", "Harry", "George", "Jack", "Alfie"),
           ("Taylor", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Hughes"), 12),
    Market("PL", "pl", ("Europe/Warsaw",),
           (("Warszawa", "Mazowieckie"), ("Kraków", "Małopolskie"), ("Gdańsk", "Pomorskie"),
            ("Wrocław", "Dolnośląskie"), ("Poznań", "Wielkopolskie")),
           ("Anna", "Katarzyna", "Magdalena", "Zofia", "Agnieszka", "Małgorzata"),
           ("Piotr", "Krzysztof", "Tomasz", "Paweł", "Łukasz", "Jakub"),
           ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowski", "Zieliński"), 14,
           _slavic_female),
    Market("TR", "tr", ("Europe/Istanbul",),
           (("İstanbul", "İstanbul"), ("Ankara", "Ankara"), ("İzmir", "İzmir"), ("Bursa", "Bursa"),
            ("Antalya", "Antalya")),
           ("Elif", "Zeynep", "Ayşe", "Merve", "Büşra", "Defne"), ("Mehmet", "Mustafa", "Emre", "Burak", "Can"),
           ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Öztürk"), 14),
    Market("LV", "lv", ("Europe/Riga",),
           (("Rīga", "Rīga"), ("Daugavpils", "Latgale"), ("Liepāja", "Kurzeme"), ("Jelgava", "Zemgale"),
            ("Valmiera", "Vidzeme")),
           ("Anna", "Līga", "Ilze", "Kristīne", "Laura", "Elīza"),
           ("Jānis", "Kristaps", "Mārtiņš", "Artūrs", "Roberts"),
           ("Bērziņš", "Kalniņš", "Ozols", "Liepiņš", "Krūmiņš", "Zariņš", "Vītols"), 10, _lv_female),
    Market("BG", "bg", ("Europe/Sofia",),
           (("София", "София-град"), ("Пловдив", "Пловдив"), ("Варна", "Варна"), ("Бургас", "Бургас")),
           ("Мария", "Иванка", "Елена", "Десислава", "Гергана"), ("Иван", "Георги", "Димитър", "Николай", "Петър"),
           ("Иванов", "Петров", "Георгиев", "Димитров", "Николов", "Стоянов"), 10, _slavic_female),
    Market("UZ", "uz", ("Asia/Tashkent", "Asia/Samarkand"),
           (("Tashkent", "Toshkent"), ("Samarkand", "Samarqand"), ("Bukhara", "Buxoro"), ("Namangan", "Namangan")),
           ("Dilnoza", "Madina", "Gulnora", "Nilufar", "Shahnoza"), ("Aziz", "Sardor", "Jasur", "Bekzod", "Otabek"),
           ("Karimov", "Yusupov", "Rakhimov", "Tursunov", "Aliyev", "Nazarov"), 10, _slavic_female),
    Market("DE", "de", ("Europe/Berlin",),
           (("Berlin", "Berlin"), ("München", "Bayern"), ("Hamburg", "Hamburg"), ("Köln", "Nordrhein-Westfalen")),
           ("Lena", "Hannah", "Mia", "Lea", "Sophie"), ("Lukas", "Felix", "Jonas", "Leon", "Maximilian"),
           ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner"), 10),
)

_CYRILLIC = dict(zip("абвгдежзийклмнопрстуфхцчшщъьюя",
                     ["a", "b", "v", "g", "d", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s",
                      "t", "u", "f", "h", "ts", "ch", "sh", "sht", "a", "", "yu", "ya"], strict=True))
_SPECIAL = {"ł": "l", "ı": "i", "ß": "ss", "İ": "i"}

DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "inbox.example", "post.example")
SOURCES = (("website signup", 40), ("checkout", 25), ("popup", 15), ("import: legacy-list.csv", 12),
           ("trade fair", 5), ("referral", 3))
TAGS = ("running", "yoga", "outdoor", "fashion", "home-decor", "tech", "travel", "beauty", "kids", "gifts")
INDUSTRIES = ("Retail", "Software", "Healthcare", "Education", "Finance", "Hospitality", "Manufacturing")
TITLES = ("Designer", "Engineer", "Teacher", "Manager", "Nurse", "Accountant", "Student", "Founder")
COMPANIES = ("Northwind", "Baltic Goods", "Contoso", "Fabrikam", "Vistula Labs", "Bosphorus Trade", "Silk Road Co")
CATEGORIES = ("Shoes", "Outerwear", "Accessories", "Home", "Beauty", "Sports")

TOPICS = (
    ("newsletter", "Newsletter", "Our monthly letter: stories, guides and what is new.", True, 0),
    ("offers", "Offers and promotions", "Sales, discount codes and early access.", False, 1),
    ("new-arrivals", "New arrivals", "The latest products as soon as they land.", False, 2),
    ("events", "Events", "Store events, workshops and fairs near you.", False, 3),
    ("product-updates", "Product updates", "Care tips and news about products you own.", False, 4),
)
ATTRIBUTES = (
    ("favourite_category", "Favourite category", AttributeType.CHOICE, list(CATEGORIES), False),
    ("loyalty_tier", "Loyalty tier", AttributeType.CHOICE, ["bronze", "silver", "gold"], False),
    ("shoe_size", "Shoe size", AttributeType.NUMBER, [], False),
    ("vip", "VIP", AttributeType.BOOLEAN, [], False),
    ("member_since", "Member since", AttributeType.DATE, [], False),
    ("dietary_needs", "Dietary needs", AttributeType.TEXT, [], True),
)


@functools.lru_cache(maxsize=4096)
def ascii_slug(text: str) -> str:
    """Return the text as lower-case ASCII letters and digits (for e-mail addresses and ids)."""
    out = []
    for ch in text.lower():
        ch = _SPECIAL.get(ch, _CYRILLIC.get(ch, ch))
        out.append(ch)
    plain = unicodedata.normalize("NFKD", "".join(out)).encode("ascii", "ignore").decode()
    return "".join(c for c in plain if c.isalnum())


def ensure_catalogue() -> dict[str, Topic]:
    """Create the demo topics and attribute definitions if missing; return topics by slug."""
    topics = {}
    for slug, name, description, default, position in TOPICS:
        topics[slug], _ = Topic.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "default_opt_in": default,
                                 "position": position})
    for key, label, kind, choices, sensitive in ATTRIBUTES:
        AttributeDefinition.objects.get_or_create(
            key=key, defaults={"label": label, "type": kind, "choices": choices, "sensitive": sensitive})
    return topics


def seed_demo(*, subscribers: int, seed: int = 1, progress: Callable[[int], None] | None = None,
              behaviour: bool = True, bulk_load: bool = False, log: Callable[[str], None] | None = None,
              now: dt.datetime | None = None) -> int:
    """Create demo subscribers up to ``subscribers``; return how many were added.

    With ``behaviour`` every person also gets a shopper's history (page and
    product views, carts, checkouts, orders, email engagement) that fits one of
    the archetypes in ``ARCHETYPES``, and profile metrics that agree with it.
    ``bulk_load`` (PostgreSQL) drops the secondary indexes and foreign keys of
    the tables written while loading and rebuilds them at the end: several
    times faster for big seeds, meant for a database nothing else writes to;
    ``log`` receives its messages. ``now`` pins the clock that histories end
    at (reproducible rows in tests).
    """
    topics = [(topic.pk, topic.default_opt_in) for topic in ensure_catalogue().values()]
    writer = _Writer()
    shop = _Shop(ensure_products(), writer) if behaviour else None
    existing = Subscriber.objects.filter(external_id__startswith="demo-").count()
    now_ts = int((now or timezone.now()).timestamp())
    markets = [m for m in MARKETS for _ in range(m.weight)]
    sources = [s for s, w in SOURCES for _ in range(w)]
    added = 0
    with _bulk_load(bulk_load and existing < subscribers, log or (lambda message: None)):
        batches = range(existing // BATCH, (subscribers + BATCH - 1) // BATCH) if existing < subscribers else ()
        for batch_no in batches:
            first, end = batch_no * BATCH, min((batch_no + 1) * BATCH, subscribers)

            def generate(rows: _Rows, batch_no: int = batch_no, first: int = first, end: int = end) -> None:
                people_rng = random.Random(f"{seed}-{batch_no}")
                shop_rng = random.Random(f"{seed}-{batch_no}-shop")
                skipped = _Rows(refs=range(BATCH), emit=_discard)
                for index in range(first, end):
                    # People already stored are generated again (and thrown away) so that the
                    # random streams, and so everyone after them, come out the same.
                    into = rows if index >= existing else skipped
                    person = _person(people_rng, people_rng.choice(markets), index, now_ts, sources, writer)
                    _history(people_rng, person, topics, into, writer, now_ts)
                    metrics = shop.live(shop_rng, person, into, now_ts) if shop else _NO_METRICS
                    into.people.append((*person.row, *metrics))

            count = end - max(first, existing)
            writer.write_batch(count, generate)
            added += count
            if progress:
                progress(existing + added)
    return added


# --- Rows and how they reach the database ----------------------------------

# Epoch seconds to an aware UTC datetime (a partial: it runs for every event).
_utc: Callable[[int], dt.datetime] = functools.partial(dt.datetime.fromtimestamp, tz=dt.UTC)


def _discard(row: tuple[Any, ...]) -> None:
    return


@dataclass
class _Rows:
    """One batch's rows, and where its events go as they are generated.

    Events refer to people by ``refs[position]`` (their id when the writer
    knows it in advance, else their position); the other rows refer to
    people by position in ``people``, order items to orders by position in ``orders``.
    """

    refs: Sequence[int]
    emit: Callable[[tuple[Any, ...]], None]  # takes an event row in _Writer.events' column order
    people: list[tuple[Any, ...]] = field(default_factory=list)
    consents: list[tuple[Any, ...]] = field(default_factory=list)  # (person, purpose, topic, granted, ...)
    memberships: list[tuple[Any, ...]] = field(default_factory=list)  # (person, topic, subscribed, changed_at)
    orders: list[tuple[Any, ...]] = field(default_factory=list)  # (person, order_id, total, at)
    items: list[tuple[Any, ...]] = field(default_factory=list)  # (order, product, sku, name, category, price, qty)


class _Table:
    """Say where one kind of row goes: a model's table and the fields a generated row holds, in order.

    Concrete fields the rows leave out get their default (or the database's
    ``db_default``), so a field added to a model later does not break seeding.
    """

    def __init__(self, model: type[Model], fields: Sequence[str], writer: _Writer) -> None:
        opts = model._meta
        given = [opts.get_field(name) for name in fields]
        rest = [f for f in opts.concrete_fields
                if f not in given and not f.primary_key and f.db_default is NOT_PROVIDED]
        self.name = opts.db_table
        self.pk = opts.pk.column
        self.columns = [f.column for f in given + rest]  # type: ignore[union-attr]
        self.defaults = tuple(_default(f, writer) for f in rest)
        # Column type oids for binary COPY. jsonb values arrive already in jsonb's binary
        # form (see _Writer.json), which the driver is told is bytea so that it passes them as they are.
        self.types: dict[str, int] = {}
        if writer.postgres:
            with connection.cursor() as cursor:
                cursor.execute("SELECT attname, CASE WHEN atttypid = 'jsonb'::regtype THEN 'bytea'::regtype::oid "
                               "ELSE atttypid END FROM pg_attribute "
                               "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", [self.name])
                self.types = dict(cursor.fetchall())

    def complete(self, rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[Any, ...]]:
        """Return the rows with the left-out fields' defaults appended."""
        if not self.defaults:
            return rows
        defaults = self.defaults
        return (row + defaults for row in rows)


def _default(f: Field, writer: _Writer) -> Any:
    value = timezone.now() if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else f.get_default()
    if isinstance(f, JSONField):
        return writer.json(json.dumps(value, cls=f.encoder))
    return f.get_db_prep_save(value, connection)


def _same(value: Any) -> Any:
    return value


def _jsonb(text: str) -> bytes:
    """Return serialized JSON in jsonb's binary COPY form: format version 1, then the text."""
    return b"\x01" + text.encode()


class _Writer:
    """Insert generated rows: binary COPY on PostgreSQL, executemany elsewhere.

    ``at`` (epoch seconds), ``json`` (serialized JSON) and ``ip`` (an address
    as text) turn generated values into what the database driver takes.
    """

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"
        self.at: Callable[[int], Any]
        self.json: Callable[[str], Any]
        self.ip: Callable[[str], Any]
        if self.postgres:
            self.at = _utc
            self.json = _jsonb
            self.ip = functools.lru_cache(maxsize=1024)(ipaddress.ip_address)
        else:
            adapt = connection.ops.adapt_datetimefield_value
            self.at = lambda ts: adapt(_utc(ts))
            self.json = self.ip = _same
        self.people = _Table(Subscriber, SUBSCRIBER_FIELDS, self)
        self.consents = _Table(ConsentRecord, ("subscriber", "purpose", "topic", "granted", "method",
                                               "notice_version", "ip_address", "user_agent", "occurred_at",
                                               "recorded_at"), self)
        self.memberships = _Table(TopicSubscription, ("subscriber", "topic", "subscribed", "changed_at"), self)
        self.events = _Table(Event, ("subscriber", "name", "properties", "context", "occurred_at", "received_at",
                                     "anonymous_id", "source", "message_id"), self)
        self.orders = _Table(Order, ("subscriber", "order_id", "anonymous_id", "total", "revenue", "refunded",
                                     "currency", "status", "coupon", "occurred_at", "created_at"), self)
        self.items = _Table(OrderItem, ("order", "product", "sku", "name", "category", "price", "quantity"), self)

    def write_batch(self, count: int, generate: Callable[[_Rows], None]) -> None:
        """Generate a batch of ``count`` people with ``generate`` and insert it, in one transaction.

        On PostgreSQL the people's ids are taken from the sequence first, so
        events stream into COPY while they are generated: the database
        stores them on the other core meanwhile.
        """
        with transaction.atomic():
            if self.postgres:
                ids = self._reserve(self.people, count)
                with self._copy(self.events) as write:
                    rows = _Rows(refs=ids, emit=write)
                    generate(rows)
                self.insert(self.people, ((pk, *row) for pk, row in zip(ids, rows.people, strict=True)),
                            with_pk=True)
            else:
                events: list[tuple[Any, ...]] = []
                rows = _Rows(refs=range(count), emit=events.append)
                generate(rows)
                ids = self.insert_returning_ids(self.people, rows.people)
                self.insert(self.events, ((ids[e[0]], *e[1:]) for e in events))
            self.insert(self.consents, ((ids[c[0]], *c[1:]) for c in rows.consents))
            self.insert(self.memberships, ((ids[p], t, s, at) for p, t, s, at in rows.memberships))
            completed = OrderStatus.COMPLETED.value
            zero = Decimal("0.00")
            order_ids = self.insert_returning_ids(self.orders, [
                (ids[p], order_id, "", total, total, zero, "EUR", completed, "", at, at)
                for p, order_id, total, at in rows.orders])
            self.insert(self.items, ((order_ids[i[0]], *i[1:]) for i in rows.items))

    def insert(self, table: _Table, rows: Iterable[tuple[Any, ...]], *, with_pk: bool = False) -> None:
        """Insert rows in ``table``'s column order (with the primary key first if ``with_pk``)."""
        if self.postgres:
            with self._copy(table, with_pk=with_pk) as write:
                for row in rows:
                    write(row)
            return
        quote = connection.ops.quote_name
        columns = [table.pk, *table.columns] if with_pk else table.columns
        marks = ", ".join(["%s"] * len(columns))
        with connection.cursor() as cursor:
            cursor.cursor.executemany(
                f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES ({marks})",
                table.complete(rows))

    @contextmanager
    def _copy(self, table: _Table, *, with_pk: bool = False) -> Iterator[Callable[[tuple[Any, ...]], None]]:
        """Open a binary COPY into ``table``; yield the function that writes one row."""
        from psycopg.types.string import BytesBinaryDumper

        quote = connection.ops.quote_name
        columns = [table.pk, *table.columns] if with_pk else table.columns
        names = ", ".join(quote(c) for c in columns)
        with connection.cursor() as cursor:
            # The plain (C) bytes dumper for the jsonb-as-bytea columns, not the DB-API Binary one.
            cursor.cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
            with cursor.cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([table.types[c] for c in columns])
                if table.defaults:
                    defaults, write_row = table.defaults, copy.write_row
                    yield lambda row: write_row(row + defaults)
                else:
                    yield copy.write_row

    def _reserve(self, table: _Table, count: int) -> list[int]:
        """Take ``count`` primary keys from the table's sequence (PostgreSQL)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [table.name, table.pk, count])
            return [pk for pk, in cursor.fetchall()]

    def insert_returning_ids(self, table: _Table, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert rows and return their primary keys, in order."""
        if not rows:
            return []
        if self.postgres:
            ids = self._reserve(table, len(rows))
            self.insert(table, ((pk, *row) for pk, row in zip(ids, rows, strict=True)), with_pk=True)
            return ids
        quote = connection.ops.quote_name
        marks = ", ".join(["%s"] * len(table.columns))
        sql = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in table.columns)}) VALUES ({marks})"
        ids = []
        with connection.cursor() as cursor:
            raw = cursor.cursor
            for row in table.complete(rows):
                raw.execute(sql, row)
                ids.append(raw.lastrowid)
        return ids


# --- Loading without secondary indexes (PostgreSQL) ------------------------

BULK_MODELS = (Subscriber, ConsentRecord, TopicSubscription, Event, Order, OrderItem)
_PENDING = "seed_demo bulk load; to rebuild: "


@contextmanager
def _bulk_load(enabled: bool, log: Callable[[str], None]) -> Iterator[None]:
    """Load without the written tables' secondary indexes and foreign keys; rebuild them afterwards.

    Unique and primary keys stay (they guard the data). What was dropped is
    kept in each table's comment until it is rebuilt, so a run that stopped
    half-way is finished by the next run, with or without the flag.
    """
    if connection.vendor != "postgresql":
        if enabled:
            log("A bulk load is for PostgreSQL; loading as usual")
        yield
        return
    tables = [m._meta.db_table for m in BULK_MODELS]
    pending = _pending(tables)
    if enabled and not pending:
        log("Dropping secondary indexes and foreign keys for the bulk load")
        _drop(tables)
    try:
        yield
    except BaseException:
        if enabled or pending:
            log("Stopped before the indexes and foreign keys were rebuilt: "
                "run seed_demo again to resume the load and rebuild them.")
        raise
    if enabled or pending:
        log("Rebuilding indexes and foreign keys")
        _rebuild(tables, log)


def _pending(tables: list[str]) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, obj_description(oid, 'pg_class') FROM pg_class "
                       "WHERE oid = ANY(%s::regclass[])", [tables])
        return {table: json.loads(comment[len(_PENDING):]) for table, comment in cursor.fetchall()
                if comment and comment.startswith(_PENDING)}


def _drop(tables: list[str]) -> None:
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT obj_description(%s::regclass, 'pg_class')", [table])
            (comment,) = cursor.fetchone()
            cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                           "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname", [table])
            foreign_keys = cursor.fetchall()
            cursor.execute(
                "SELECT x.indexrelid::regclass::text, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                "WHERE x.indrelid = %s::regclass AND NOT x.indisunique AND NOT x.indisprimary "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY 1",
                [table])
            indexes = cursor.fetchall()
            for name, _ in foreign_keys:
                cursor.execute(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
            for name, _ in indexes:
                cursor.execute(f"DROP INDEX {name}")
            saved = {"comment": comment, "indexes": [ddl for _, ddl in indexes], "foreign_keys": foreign_keys}
            _comment(cursor, table, _PENDING + json.dumps(saved))


def _rebuild(tables: list[str], log: Callable[[str], None]) -> None:
    """Recreate what ``_drop`` took away; each step is idempotent and commits on its own."""
    quote = connection.ops.quote_name
    for table, saved in _pending(tables).items():
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '256MB'")
            for ddl in saved["indexes"]:
                cursor.execute(ddl.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))
            for name, definition in saved["foreign_keys"]:
                cursor.execute("SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
                               [table, name])
                if not cursor.fetchone():
                    cursor.execute(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}")
            _comment(cursor, table, saved["comment"])
            cursor.execute("RESET maintenance_work_mem")
        log(f"Rebuilt {len(saved['indexes'])} indexes and {len(saved['foreign_keys'])} foreign keys of {table} "
            f"in {time.monotonic() - started:.1f} s")


def _comment(cursor: Any, table: str, text: str | None) -> None:
    # COMMENT takes no parameters; the literal is quoted by the driver.
    from psycopg import sql

    cursor.cursor.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(text)))


# --- People ------------------------------------------------------------------

SUBSCRIBER_FIELDS = (
    "email", "email_key", "first_name", "last_name", "language", "country", "region", "city", "timezone",
    "birth_date", "birthday_month", "birthday_day", "gender", "company", "job_title", "industry", "source",
    "external_id", "tags", "attributes", "status", "created_at", "updated_at", "confirmed_at",
    "status_changed_at",
    # Profile metrics, in the order _Shop.live returns them.
    "order_count", "total_spent", "average_order_value", "first_order_at", "last_order_at", "last_seen_at",
    "last_open_at", "last_click_at", "emails_received",
)
_NO_METRICS = (0, Decimal("0.00"), Decimal("0.00"), None, None, None, None, None, 0)


@dataclass(slots=True)
class _Person:
    row: tuple[Any, ...]  # SUBSCRIBER_FIELDS up to the metrics
    external_id: str
    status: str
    source: str
    created: int  # epoch seconds
    confirmed: int | None
    status_changed: int
    favourite: str


def _signup_time(rng: random.Random, now: int) -> int:
    # Three years of signups, growing over time, with November-December peaks.
    while True:
        moment = now - int(1095 * (rng.random() ** 1.4)) * DAY - rng.randrange(DAY)
        if _utc(moment).month in (11, 12) or rng.random() < 0.72:
            return moment


def _person(rng: random.Random, market: Market, index: int, now: int, sources: list[str], writer: _Writer) -> _Person:
    at = writer.at
    female = rng.random() < 0.52
    first = rng.choice(market.female if female else market.male)
    last = rng.choice(market.surnames)
    if female:
        last = market.female_surname(last)
    city, region = rng.choice(market.cities)
    created = _signup_time(rng, now)
    roll = rng.random()
    if roll < 0.80:
        status = SubscriberStatus.SUBSCRIBED
    elif roll < 0.86:
        status = SubscriberStatus.PENDING
    elif roll < 0.94:
        status = SubscriberStatus.UNSUBSCRIBED
    elif roll < 0.985:
        status = SubscriberStatus.BOUNCED
    else:
        status = SubscriberStatus.COMPLAINED
    birth = None
    if rng.random() < 0.7:
        age_days = int(365.25 * rng.triangular(18, 75, 34))
        birth = (_utc(now) - dt.timedelta(days=age_days)).date()
    gender_roll = rng.random()
    gender = (Gender.FEMALE if female else Gender.MALE) if gender_roll < 0.9 else rng.choice(
        [Gender.NON_BINARY, Gender.PREFER_NOT_TO_SAY, ""])
    works = rng.random() < 0.35
    favourite = rng.choice(CATEGORIES)
    attributes: dict[str, object] = {"favourite_category": favourite}
    if rng.random() < 0.5:
        attributes["loyalty_tier"] = rng.choices(["bronze", "silver", "gold"], cum_weights=[6, 9, 10])[0]
    if rng.random() < 0.3:
        attributes["shoe_size"] = rng.choice([36, 37, 38, 39, 40, 41, 42, 43, 44, 45])
    if rng.random() < 0.05:
        attributes["vip"] = True
    email = f"{ascii_slug(first)}.{ascii_slug(last)}.{index}@{rng.choice(DOMAINS)}"
    source = rng.choice(sources)
    external_id = f"demo-{index}"
    tags = sorted(rng.sample(TAGS, rng.choice([0, 1, 1, 2, 2, 3])))
    first_name = first if rng.random() > 0.04 else ""
    last_name = last if rng.random() > 0.08 else ""
    language = market.language if rng.random() > 0.05 else "en"
    # Nothing happens after "now": a person who signed up an hour ago confirmed within that hour.
    confirmed = min(created + 60 * rng.randrange(2, 600), now) if status != SubscriberStatus.PENDING else None
    changed = created + DAY * rng.randrange(1, 400) if status not in (
        SubscriberStatus.SUBSCRIBED, SubscriberStatus.PENDING) else created
    changed = min(changed, now)
    row = (
        email, email.lower(), first_name, last_name, language, market.country, region, city,
        rng.choice(market.timezones), birth, birth.month if birth else None, birth.day if birth else None, str(gender),
        rng.choice(COMPANIES) if works else "", rng.choice(TITLES) if works else "",
        rng.choice(INDUSTRIES) if works else "", source, external_id, writer.json(json.dumps(tags)),
        writer.json(json.dumps(attributes, ensure_ascii=False)), status.value, at(created), at(now),
        at(confirmed) if confirmed else None, at(changed),
    )
    return _Person(row=row, external_id=external_id, status=status.value, source=source, created=created,
                   confirmed=confirmed, status_changed=changed, favourite=favourite)


def _history(rng: random.Random, person: _Person, topics: list[tuple[int, bool]], rows: _Rows,
             writer: _Writer, now: int) -> None:
    """Add the person's consent records and topic memberships."""
    at = writer.at
    slot = len(rows.people)
    method = ConsentMethod.IMPORT.value if person.source.startswith("import") else ConsentMethod.FORM.value
    form = method == ConsentMethod.FORM
    ip = writer.ip(f"203.0.113.{rng.randrange(1, 255)}") if form else None
    agent = "Mozilla/5.0 (demo)" if form else ""
    if person.status == SubscriberStatus.PENDING:
        return
    signed = at(person.confirmed or person.created)
    notice = "signup-notice-v2"
    rows.consents.append((slot, ConsentPurpose.EMAIL_MARKETING.value, None, True, method, notice, ip, agent,
                          signed, signed))
    joined = at(person.created)
    for topic, default in topics:
        if default or rng.random() < 0.35:
            rows.memberships.append((slot, topic, True, joined))
            rows.consents.append((slot, ConsentPurpose.TOPIC.value, topic, True, method, notice, ip, agent,
                                  signed, signed))
    if rng.random() < 0.15:
        when = at(min(person.created + DAY * rng.randrange(1, 90), now))
        rows.consents.append((slot, ConsentPurpose.PERSONALIZATION.value, None, rng.random() < 0.3,
                              ConsentMethod.PREFERENCE_CENTER.value, "preferences-v1", None, "", when, when))
    if person.status == SubscriberStatus.UNSUBSCRIBED:
        when = at(person.status_changed)
        rows.consents.append((slot, ConsentPurpose.EMAIL_MARKETING.value, None, False,
                              ConsentMethod.PREFERENCE_CENTER.value, notice, None, "", when, when))


# --- Shopper behaviour ------------------------------------------------------

PRODUCTS = {
    "Shoes": ("Trail runner", "City sneaker", "Leather boot", "Yoga slip-on", "Hiking boot", "Sandal"),
    "Outerwear": ("Rain jacket", "Down parka", "Wool coat", "Windbreaker", "Fleece"),
    "Accessories": ("Beanie", "Scarf", "Leather belt", "Backpack", "Sunglasses", "Gloves"),
    "Home": ("Linen throw", "Ceramic mug", "Scented candle", "Cushion cover", "Table lamp"),
    "Beauty": ("Hand cream", "Face oil", "Lip balm", "Body wash"),
    "Sports": ("Yoga mat", "Water bottle", "Running belt", "Resistance bands"),
}
PRICES = {"Shoes": (59, 189), "Outerwear": (79, 299), "Accessories": (15, 89), "Home": (12, 120),
          "Beauty": (8, 45), "Sports": (12, 69)}
SHOP = "https://shop.example"
# (name, weight): who the demo people are as shoppers.
#   browser         visits now and then, never buys (some left a cart long ago)
#   cart_abandoner  added to the cart 2-72 hours ago and did not order since (some bought before)
#   one_time        one order, a few visits around it
#   repeat          orders at a regular interval, browses in between
#   lapsed          bought a few times, nothing in the last 200-420 days
#   dormant         signed up, never came to the shop
ARCHETYPES = (("browser", 26), ("cart_abandoner", 8), ("one_time", 18), ("repeat", 11), ("lapsed", 10),
              ("dormant", 27))
# How likely each archetype opens (and clicks) email.
ENGAGEMENT = {"repeat": 0.9, "one_time": 0.6, "cart_abandoner": 0.7, "browser": 0.5, "lapsed": 0.3, "dormant": 0.15}
VIEWS_PER_VISIT = (1, 1, 1, 2, 2, 3)
BASKET_SIZES = (1, 1, 1, 2, 2, 3)
QUANTITIES = (1, 1, 1, 1, 2)


def ensure_products() -> list[Product]:
    """Create the demo shop's catalogue if missing."""
    existing = {p.product_id: p for p in Product.objects.filter(product_id__startswith="demo-")}
    rng = random.Random("catalogue")
    products = []
    for category, names in PRODUCTS.items():
        low, high = PRICES[category]
        for name in names:
            product_id = f"demo-{ascii_slug(category)}-{ascii_slug(name)}"
            product = existing.get(product_id) or Product.objects.create(
                product_id=product_id, sku=f"SKU-{len(products) + 1000}", name=name, category=category,
                brand=rng.choice(("Northwind", "Baltic Goods", "Fabrikam")),
                price=Decimal(rng.randrange(low, high)) - Decimal("0.01"), currency="EUR",
                url=f"{SHOP}/p/{product_id}", image_url=f"{SHOP}/img/{product_id}.jpg")
            products.append(product)
    return products


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _page(name: str, path: str, **extra: str) -> tuple[str, tuple[str, str]]:
    """Return a landing page's properties and its context, arriving directly or from an email."""
    url = f"{SHOP}{path}"
    campaign = {"source": "newsletter", "medium": "email", "name": "weekly-picks"}
    return (_json({"name": name, **extra, "path": path, "url": url}),
            (_json({"page": {"url": url}}), _json({"page": {"url": f"{url}?utm_medium=email"}, "campaign": campaign})))


Page = tuple[Any, tuple[Any, Any]]  # properties, (context, context from an email), as database values


class _Shop:
    """Write shoppers' histories as rows: visits with page and product views, carts, checkouts and orders.

    Everything that does not change from event to event (a product's
    properties, a page's context) is serialized once, so an event costs a few
    random draws and a tuple. Times are epoch seconds until they become rows.
    """

    def __init__(self, products: list[Product], writer: _Writer) -> None:
        self.products = products
        self.at = writer.at
        self.json = js = writer.json
        self.by_category = {c: [i for i, p in enumerate(products) if p.category == c] or list(range(len(products)))
                            for c in CATEGORIES}
        described = [{"product_id": p.product_id, "sku": p.sku, "name": p.name, "category": p.category,
                      "brand": p.brand, "price": float(p.price or 0)} for p in products]
        self.viewed = [js(_json(d)) for d in described]
        self.added = [[js(_json({**d, "quantity": q})) for q in range(3)] for d in described]
        self.context = [js(_json({"page": {"url": p.url}})) for p in products]
        self.lines = [[_json({"product_id": p.product_id, "sku": p.sku, "name": p.name, "category": p.category,
                              "price": float(p.price or 0), "quantity": q}) for q in range(3)] for p in products]
        self.items = [(p.pk, p.sku, p.name, p.category, p.price or Decimal("0")) for p in products]

        def page(name: str, path: str, **extra: str) -> Page:
            properties, (direct, from_email) = _page(name, path, **extra)
            return js(properties), (js(direct), js(from_email))

        self.home = page("Home", "/")
        self.sale = page("Sale", "/sale")
        self.new = page("New arrivals", "/new")
        self.category_pages = {c: page(c, f"/c/{ascii_slug(c)}", category=c) for c in CATEGORIES}
        self.checkout_context = js(_json({"page": {"url": f"{SHOP}/checkout"}}))
        self.kinds = [a for a, _ in ARCHETYPES]
        self.cumulative = list(itertools.accumulate(w for _, w in ARCHETYPES))

    def live(self, rng: random.Random, person: _Person, rows: _Rows, now: int) -> tuple[Any, ...]:
        """Add one person's shopping history to ``rows``; return their profile metrics."""
        self.rand = rng.random
        self.slot = len(rows.people)
        self.ref = rows.refs[self.slot]
        self.emit = rows.emit
        self.rows = rows
        self.liked = self.by_category[person.favourite]
        self.favourite = person.favourite
        self.external_id = person.external_id
        self.last_seen = 0
        self.spent: list[tuple[Decimal, int]] = []
        kind = rng.choices(self.kinds, cum_weights=self.cumulative)[0]
        start = person.created
        getattr(self, f"_{kind}")(rng, start, now)
        return (*self._orders_metrics(), _utc_or_none(self.last_seen, self.at),
                *_engagement(rng, person, kind, now, self.at))

    def _orders_metrics(self) -> tuple[Any, ...]:
        if not self.spent:
            return 0, Decimal("0.00"), Decimal("0.00"), None, None
        total = sum((amount for amount, _ in self.spent), Decimal("0.00"))
        times = [ts for _, ts in self.spent]
        count = len(self.spent)
        return (count, total, (total / count).quantize(Decimal("0.01")), self.at(min(times)),
                self.at(max(times)))

    # Archetypes: each adds visits and orders between the person's signup and now.

    def _browser(self, rng: random.Random, start: int, now: int) -> None:
        for _ in range(rng.randrange(1, 6)):
            self._visit(_between(self.rand, start, now - HOUR))
        if self.rand() < 0.2 and start < now - 8 * DAY:
            # A cart left long ago: old enough not to count as a fresh abandonment.
            product, end = self._visit(_between(self.rand, start, now - 8 * DAY))
            self._add(product, end + 40, 1)

    def _cart_abandoner(self, rng: random.Random, start: int, now: int) -> None:
        when = now - 2 * HOUR - 30 * 60 - int(self.rand() * 69 * HOUR)
        for _ in range(rng.randrange(1, 5)):
            self._visit(_between(self.rand, start, when - 4 * DAY))
        if self.rand() < 0.35:
            self._order(_between(self.rand, start, when - 10 * DAY))
        product, end = self._visit(when)
        end += 30 + int(self.rand() * 60)
        quantity = QUANTITIES[int(self.rand() * len(QUANTITIES))]
        self._add(product, end, quantity)
        value = self.items[product][4] * quantity
        if self.rand() < 0.3:
            other = self._pick()
            if other != product:
                end += 60 + int(self.rand() * 120)
                self._event("Product Viewed", self.viewed[other], self.context[other], end)
                end += 20 + int(self.rand() * 40)
                self._add(other, end, 1)
                value += self.items[other][4]
        if self.rand() < 0.6:
            end += 60 + int(self.rand() * 240)
            properties = f'{{"checkout_id": "{self.external_id}-cart", "value": {value}, "currency": "EUR"}}'
            self._event("Checkout Started", self.json(properties), self.checkout_context, end)
        self.last_seen = max(self.last_seen, end)

    def _one_time(self, rng: random.Random, start: int, now: int) -> None:
        ordered = _order_time(self.rand, start, now - HOUR)
        for _ in range(rng.randrange(0, 3)):
            self._visit(_between(self.rand, start - 30 * DAY, ordered - DAY))
        self._order(ordered)
        for _ in range(rng.randrange(0, 3)):
            self._visit(_between(self.rand, ordered + DAY, now - HOUR))

    def _repeat(self, rng: random.Random, start: int, now: int) -> None:
        interval = DAY * rng.randrange(30, 150)
        ordered = _between(self.rand, start + HOUR, min(start + 30 * DAY, now - 2 * HOUR))
        while ordered < now - HOUR:
            self._order(ordered)
            following = ordered + interval + DAY * rng.randrange(-7, 8)
            # Browsing between two orders.
            for _ in range((0, 0, 1, 1, 1)[int(self.rand() * 5)]):
                self._visit(_between(self.rand, ordered + DAY, min(following, now) - HOUR))
            ordered = following

    def _lapsed(self, rng: random.Random, start: int, now: int) -> None:
        end = now - DAY * rng.randrange(200, 420)
        if end <= start:
            return
        for _ in range(rng.randrange(1, 4)):
            self._order(_order_time(self.rand, start, end))
        for _ in range(rng.randrange(0, 3)):
            self._visit(_between(self.rand, start, end))

    def _dormant(self, rng: random.Random, start: int, now: int) -> None:
        return

    # Building blocks.

    def _pick(self) -> int:
        """Return a product index: mostly from the person's favourite category."""
        rand = self.rand
        if rand() < 0.7:
            liked = self.liked
            return liked[int(rand() * len(liked))]
        return int(rand() * len(self.products))

    def _landing(self) -> Page:
        roll = self.rand()
        if roll < 0.45:
            return self.home
        if roll < 0.75:
            category = self.favourite if self.rand() < 0.7 else CATEGORIES[int(self.rand() * len(CATEGORIES))]
            return self.category_pages[category]
        return self.sale if roll < 0.9 else self.new

    def _event(self, name: str, properties: Any, context: Any, ts: int) -> None:
        """Emit one event row (in _Writer.events' column order)."""
        at = self.at(ts)
        self.emit((self.ref, name, properties, context, at, at, "", None, None))

    def _visit(self, ts: int) -> tuple[int, int]:
        """Add a visit starting at ``ts`` (a landing page, then a few products); return the last product and time."""
        rand, at, emit, ref = self.rand, self.at, self.emit, self.ref
        properties, contexts = self._landing()
        when = at(ts)
        emit((ref, "Page Viewed", properties, contexts[rand() < 0.2], when, when, "", None, None))
        product = 0
        for _ in range(VIEWS_PER_VISIT[int(rand() * len(VIEWS_PER_VISIT))]):
            ts += 15 + int(rand() * 150)
            product = self._pick()
            when = at(ts)
            emit((ref, "Product Viewed", self.viewed[product], self.context[product], when, when, "", None, None))
        if ts > self.last_seen:
            self.last_seen = ts
        return product, ts

    def _add(self, product: int, ts: int, quantity: int) -> None:
        self._event("Product Added", self.added[product][quantity], self.context[product], ts)
        if ts > self.last_seen:
            self.last_seen = ts

    def _order(self, ts: int) -> None:
        """Add an order completed at ``ts`` with the visit that led to it: views, cart adds, checkout."""
        rand, event = self.rand, self._event
        size = BASKET_SIZES[int(rand() * len(BASKET_SIZES))]
        basket: list[int] = []
        for _ in range(size * 2):
            product = self._pick()
            if product not in basket:
                basket.append(product)
                if len(basket) == size:
                    break
        quantities = [QUANTITIES[int(rand() * len(QUANTITIES))] for _ in basket]
        total = sum((self.items[p][4] * q for p, q in zip(basket, quantities, strict=True)), Decimal("0.00"))
        order_id = f"demo-{self.external_id}-{len(self.spent) + 1}"
        checkout = ts - 60 - int(rand() * 240)
        moment = checkout - len(basket) * 200 - int(rand() * 300)
        properties, contexts = self._landing()
        event("Page Viewed", properties, contexts[rand() < 0.25], moment)
        for product, quantity in zip(basket, quantities, strict=True):
            moment += 15 + int(rand() * 120)
            event("Product Viewed", self.viewed[product], self.context[product], moment)
            moment += 10 + int(rand() * 60)
            event("Product Added", self.added[product][quantity], self.context[product], moment)
        event("Checkout Started", self.json(f'{{"order_id": "{order_id}", "value": {total}, "currency": "EUR"}}'),
              self.checkout_context, checkout)
        lines = ", ".join(self.lines[p][q] for p, q in zip(basket, quantities, strict=True))
        event("Order Completed", self.json(f'{{"order_id": "{order_id}", "total": {total}, "revenue": {total}, '
                                           f'"currency": "EUR", "products": [{lines}]}}'), self.checkout_context, ts)
        position = len(self.rows.orders)
        self.rows.orders.append((self.slot, order_id, total, self.at(ts)))
        items = self.rows.items
        for product, quantity in zip(basket, quantities, strict=True):
            items.append((position, *self.items[product], quantity))
        self.spent.append((total, ts))
        if ts > self.last_seen:
            self.last_seen = ts


def _between(rand: Callable[[], float], low: int, high: int) -> int:
    """Return a moment in [low, high); ``high`` when the window is empty."""
    if high <= low:
        return high
    return low + int(rand() * (high - low))


def _order_time(rand: Callable[[], float], start: int, end: int) -> int:
    # Seasonal peaks: a third of draws are moved into November or December.
    moment = _between(rand, start, end)
    if rand() < 0.33:
        day = _utc(moment)
        if day.month not in (11, 12):
            peak = int(day.replace(month=11 + int(rand() * 2), day=1 + int(rand() * 28)).timestamp())
            if start <= peak <= end:
                return peak
    return moment


def _utc_or_none(ts: int, at: Callable[[int], Any]) -> Any:
    return at(ts) if ts else None


def _engagement(rng: random.Random, person: _Person, kind: str, now: int,
                at: Callable[[int], Any]) -> tuple[Any, Any, int]:
    """Return last open, last click and emails received, as the email pipeline would have kept them."""
    if person.status not in (SubscriberStatus.SUBSCRIBED, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED,
                             SubscriberStatus.COMPLAINED):
        return None, None, 0
    weeks = max(1, (now - person.created) // (7 * DAY))
    received = rng.randrange(weeks // 2, weeks + 1)
    engaged = ENGAGEMENT[kind]
    if not received or rng.random() >= engaged:
        return None, None, received
    recent = 90 if engaged > 0.4 else 400
    opened = _between(rng.random, max(person.created, now - recent * DAY), now)
    clicked = None
    if rng.random() < engaged * 0.6:
        clicked = at(min(now, opened + rng.randrange(5, 600)))
    return at(opened), clicked, received
