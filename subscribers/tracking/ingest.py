"""Store tracking calls: people, events, products and orders, in a few statements per batch.

Order of work in a batch: identities first (identify, alias), so the other
calls of the same batch land on the right person; then all events in one
bulk insert; then e-commerce (products, orders, refunds); then one update
of ``last_seen_at``. Duplicates (same messageId) are dropped before any side
effect, and the calls whose effect is not idempotent (orders, refunds) are
guarded again by a unique row written in the same savepoint.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Case, DecimalField, ExpressionWrapper, F, Value, When
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from subscribers.models import (
    AnonymousVisitor,
    AttributeDefinition,
    Event,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    Subscriber,
    SubscriberStatus,
    SuppressedAddress,
    WriteKey,
    coerce_attribute_value,
    email_hash,
)
from subscribers.tracking.calls import (
    MAX_CALL_BYTES,
    Call,
    CallError,
    call_size,
    parse_call,
    profile_from_identify,
)

logger = logging.getLogger(__name__)

PRODUCT_EVENTS = frozenset({"Product Viewed", "Product Added", "Product Removed", "Product Clicked"})
CART_EVENTS = frozenset({"Cart Viewed", "Checkout Started", "Order Completed", "Order Refunded",
                         "Order Updated", "Checkout Step Viewed", "Checkout Step Completed"})
# Calls that say the person is active on the site or app.
ACTIVITY_TYPES = frozenset({"track", "page", "screen"})
MONEY = DecimalField(max_digits=14, decimal_places=2)
DEADLOCK_RETRIES = 5
T = TypeVar("T")


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": not self.errors, "accepted": self.accepted}
        if self.duplicates:
            body["duplicates"] = self.duplicates
        if self.errors:
            body["errors"] = self.errors
        if self.warnings:
            body["warnings"] = self.warnings
        return body


def ingest_calls(
    raw_calls: list[Any], *, source: WriteKey | None, default_type: str | None = None,
    batch_defaults: dict[str, Any] | None = None,
) -> IngestResult:
    """Validate and store calls; invalid ones are reported by index, the rest are kept.

    ``batch_defaults`` are a batch's top-level context and sentAt, which
    apply to each call that does not carry its own.
    """
    defaults = {k: v for k, v in (batch_defaults or {}).items() if v is not None}
    result = IngestResult()
    received_at = timezone.now()
    calls: list[tuple[int, Call]] = []
    for index, raw in enumerate(raw_calls):
        try:
            if call_size(raw) > MAX_CALL_BYTES:
                raise CallError("the call is larger than 32 KB")
            if defaults and isinstance(raw, dict):
                raw = {**defaults, **raw}
            calls.append((index, parse_call(raw, default_type=default_type, received_at=received_at)))
        except CallError as exc:
            result.errors.append({"index": index, "error": str(exc)})
    if not calls:
        return result

    def store() -> tuple[list[tuple[int, Call]], dict[str, int]]:
        result.warnings, result.duplicates = [], 0
        return _store(calls, source, received_at, result)

    kept, people = _retry_on_deadlock(store)
    # Monotonic, idempotent bookkeeping runs after the commit, in its own short
    # transactions, so concurrent batches never queue on these rows.
    _retry_on_deadlock(lambda: _touch_last_seen(kept, people))
    _mark_used(source, received_at)
    from subscribers.actions import TrackedEvent, announce_events

    announce_events([TrackedEvent(people[c.identity], c.event, c.properties, c.occurred_at)
                     for _, c in kept if c.event and c.type == "track" and c.identity in people])
    result.accepted = len(kept)
    return result


def _retry_on_deadlock(work: Callable[[], T]) -> T:
    """Run one transaction's ``work``, again if PostgreSQL aborted it as a deadlock victim.

    Two batches touching the same people in a different order make PostgreSQL
    abort one of them; nothing of it was written, so it can simply run again.
    """
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return work()
        except OperationalError as exc:
            if "deadlock" not in str(exc).lower() or attempt == DEADLOCK_RETRIES - 1:
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # let the other transaction finish
    raise AssertionError("unreachable")


def _store(calls: list[tuple[int, Call]], source: WriteKey | None, received_at: dt.datetime,
           result: IngestResult) -> tuple[list[tuple[int, Call]], dict[str, int]]:
    with transaction.atomic():
        calls = _drop_duplicates(calls, result)
        batch = _BatchCache(calls)
        for index, call in calls:
            if call.type == "identify":
                for warning in _identify(call, source, batch):
                    result.warnings.append({"index": index, "warning": warning})
            elif call.type == "alias":
                batch.flush_links()
                _alias(call)
        batch.flush_links()
        people = _resolve(c for _, c in calls)

        def event_for(call: Call) -> Event:
            subscriber_id = people.get(call.identity)
            return Event(
                subscriber_id=subscriber_id, anonymous_id="" if subscriber_id else call.identity,
                name=call.event, properties=call.properties, context=_slim_context(call.context),
                occurred_at=call.occurred_at, received_at=received_at, source=source, message_id=call.message_id,
            )

        # Refunds are not idempotent: their event row is written with the refund (see _order_refunded).
        _insert_events(
            [c for _, c in calls if c.event and c.type != "identify" and c.event != "Order Refunded"],
            people, source, received_at,
        )
        commerce = [(i, c) for i, c in calls if c.type == "track" and (c.event in PRODUCT_EVENTS
                                                                        or c.event in CART_EVENTS)]
        catalogue = upsert_products(
            [item for _, c in commerce for item in _products_of(c)], received_at) if commerce else {}
        for index, call in commerce:
            try:
                _commerce(call, people.get(call.identity), event_for(call), catalogue)
            except CallError as exc:
                result.warnings.append({"index": index, "warning": str(exc)})
    return calls, people


EVENT_COLUMNS = ("subscriber_id", "anonymous_id", "name", "properties", "context", "occurred_at", "received_at",
                 "source_id", "message_id")
_UNNEST_TYPES = ("bigint[]", "text[]", "text[]", "jsonb[]", "jsonb[]", "timestamptz[]", "timestamptz[]", "bigint[]",
                 "text[]")


def _insert_events(calls: list[Call], people: dict[str, int], source: WriteKey | None,
                   received_at: dt.datetime) -> None:
    """Insert a batch's events in one statement; a messageId already stored is skipped by the database.

    On PostgreSQL the rows go in as nine arrays through unnest() with server-side
    parameters: no per-row model objects or SQL text, which is what keeps
    ingestion at thousands of events a second.
    """
    if not calls:
        return
    rows = []
    for call in calls:
        subscriber_id = people.get(call.identity)
        rows.append((subscriber_id, "" if subscriber_id else call.identity, call.event,
                     json.dumps(call.properties, ensure_ascii=False),
                     json.dumps(_slim_context(call.context), ensure_ascii=False), call.occurred_at, received_at,
                     source.pk if source else None, call.message_id))
    if connection.vendor != "postgresql":
        Event.objects.bulk_create(
            [Event(**{col: (json.loads(v) if col in ("properties", "context") else v)
                      for col, v in zip(EVENT_COLUMNS, row, strict=True)}) for row in rows],
            ignore_conflicts=True)
        return
    import psycopg

    columns = list(zip(*rows, strict=True))
    casts = ", ".join(f"%s::{t}" for t in _UNNEST_TYPES)
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"INSERT INTO subscribers_event ({', '.join(EVENT_COLUMNS)}) SELECT * FROM unnest({casts}) "
            "ON CONFLICT DO NOTHING",
            [list(c) for c in columns],
        )


class _BatchCache:
    """What one batch looks up once instead of per call, and the identity links it writes at once."""

    def __init__(self, calls: list[tuple[int, Call]]) -> None:
        identifies = [c for _, c in calls if c.type == "identify"]
        trait_keys = {k for c in identifies for k in c.traits}
        self.definitions = ({d.key: d for d in AttributeDefinition.objects.filter(key__in=trait_keys)}
                            if trait_keys else {})
        identities = {i for c in identifies for i in (c.anonymous_id, f"user:{c.user_id}" if c.user_id else "") if i}
        self.links: dict[str, int] = dict(
            AnonymousVisitor.objects.filter(anonymous_id__in=identities).values_list("anonymous_id", "subscriber_id")
        ) if identities else {}
        user_ids = {c.user_id for c in identifies if c.user_id}
        emails = {str(c.traits["email"]).strip().lower() for c in identifies if c.traits.get("email")}
        self.by_external = {s.external_id: s for s in Subscriber.objects.filter(external_id__in=user_ids)
                            } if user_ids else {}
        self.by_email = {s.email_key: s for s in Subscriber.objects.filter(email_key__in=emails)} if emails else {}
        self.new_links: dict[str, int] = {}

    def remember(self, subscriber: Subscriber) -> None:
        self.by_email[subscriber.email_key] = subscriber
        if subscriber.external_id:
            self.by_external[subscriber.external_id] = subscriber

    def link(self, identity: str, subscriber: Subscriber) -> None:
        if identity not in self.links:
            self.links[identity] = self.new_links[identity] = subscriber.pk

    def flush_links(self) -> None:
        """Write new identity links and give each person what they did before being known."""
        if not self.new_links:
            return
        AnonymousVisitor.objects.bulk_create(
            [AnonymousVisitor(anonymous_id=i, subscriber_id=pk) for i, pk in sorted(self.new_links.items())],
            ignore_conflicts=True)
        owner = Case(*(When(anonymous_id=i, then=Value(pk)) for i, pk in self.new_links.items()))
        Event.objects.filter(subscriber__isnull=True, anonymous_id__in=list(self.new_links)).update(
            subscriber_id=owner, anonymous_id="")
        for order in Order.objects.filter(subscriber__isnull=True, anonymous_id__in=list(self.new_links)):
            order.subscriber_id = self.new_links[order.anonymous_id]
            order.save(update_fields=["subscriber"])
            _count_order(order.subscriber_id, order.total - order.refunded, order.occurred_at)
        self.new_links = {}


def _mark_used(source: WriteKey | None, at: dt.datetime) -> None:
    if source is None:
        return
    last = _last_marked.get(source.pk)
    if last is None or (at - last).total_seconds() >= 60:
        _last_marked[source.pk] = at
        WriteKey.objects.filter(pk=source.pk).update(last_used_at=at)


_last_marked: dict[int, dt.datetime] = {}


def _drop_duplicates(calls: list[tuple[int, Call]], result: IngestResult) -> list[tuple[int, Call]]:
    ids = [c.message_id for _, c in calls if c.message_id]
    if not ids:
        return calls
    seen = set(Event.objects.filter(message_id__in=ids).values_list("message_id", flat=True))
    kept = []
    for index, call in calls:
        if call.message_id and call.message_id in seen:
            result.duplicates += 1
            continue
        if call.message_id:
            seen.add(call.message_id)
        kept.append((index, call))
    return kept


def _slim_context(context: dict[str, Any]) -> dict[str, Any]:
    # Keep what segments and explanations use; drop device fingerprints.
    keep = ("locale", "timezone", "page", "campaign", "referrer", "userAgent", "library")
    return {k: context[k] for k in keep if k in context}


def _resolve(calls: Any) -> dict[str, int]:
    """Map each call's identity (user:<userId> or anonymousId) to a subscriber id, in two queries."""
    calls = list(calls)
    user_ids = {c.user_id for c in calls if c.user_id}
    anonymous = {c.identity for c in calls}
    people: dict[str, int] = {}
    for external_id, pk in Subscriber.objects.filter(external_id__in=user_ids).values_list("external_id", "pk"):
        people[f"user:{external_id}"] = pk
    for anonymous_id, pk in AnonymousVisitor.objects.filter(anonymous_id__in=anonymous - set(people)).values_list(
        "anonymous_id", "subscriber_id"
    ):
        people[anonymous_id] = pk
    return people


def _identify(call: Call, source: WriteKey | None, batch: _BatchCache) -> list[str]:
    fields, warnings = profile_from_identify(call)
    attributes, attribute_warnings = _catalogue_traits(call.traits, batch.definitions)
    warnings += attribute_warnings
    subscriber = batch.by_external.get(call.user_id) if call.user_id else None
    if subscriber is None and "email" in fields:
        subscriber = batch.by_email.get(fields["email"].lower())
    if subscriber is None and call.anonymous_id in batch.links:
        subscriber = Subscriber.objects.filter(pk=batch.links[call.anonymous_id]).first()
    if subscriber is None:
        if "email" not in fields:
            warnings.append("no traits.email yet: the person is created once an identify call carries an email; "
                            "their events are kept and attached then")
            return warnings
        if SuppressedAddress.objects.filter(email_hash=email_hash(fields["email"])).exists():
            warnings.append("this address was erased at the person's request and is not added again")
            return warnings
        now = timezone.now()
        subscriber = Subscriber(status=SubscriberStatus.CONTACT, status_changed_at=now, created_at=now,
                                source=f"tracking: {source.name}"[:100] if source else "tracking",
                                external_id=call.user_id or None, attributes=attributes, **fields)
        try:
            with transaction.atomic():
                subscriber.save()
        except IntegrityError:
            # Another request created the same person a moment ago.
            subscriber = Subscriber.objects.get(email_key=fields["email"].lower())
            warnings += _update_profile(subscriber, fields, attributes, call.user_id)
    elif subscriber.status == SubscriberStatus.ERASED:
        return [*warnings, "this person's data was erased; the call is not applied"]
    else:
        warnings += _update_profile(subscriber, fields, attributes, call.user_id)
    batch.remember(subscriber)
    for identity in filter(None, (call.anonymous_id, f"user:{call.user_id}" if call.user_id else "")):
        batch.link(identity, subscriber)
    return warnings


def _catalogue_traits(traits: dict[str, Any], definitions: dict[str, AttributeDefinition]
                      ) -> tuple[dict[str, Any], list[str]]:
    definitions = {k: d for k, d in definitions.items() if k in traits}
    values: dict[str, Any] = {}
    warnings = []
    for key, definition in definitions.items():
        try:
            value = coerce_attribute_value(definition.type, definition.choices, traits[key], definition.label)
        except Exception as exc:  # noqa: BLE001 - ValidationError; reported, never fatal
            warnings.append(f"traits.{key}: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
            continue
        if value is not None:
            values[key] = value
    return values, warnings


def _update_profile(subscriber: Subscriber, fields: dict[str, Any], attributes: dict[str, Any],
                    user_id: str) -> list[str]:
    """Apply identify's traits: the latest identify is the truth for profile fields."""
    warnings = []
    changed = []
    email = fields.pop("email", None)
    if email and email.lower() != subscriber.email_key:
        if Subscriber.objects.filter(email_key=email.lower()).exclude(pk=subscriber.pk).exists():
            warnings.append("traits.email belongs to another subscriber; the email was not changed")
        else:
            subscriber.email = email
            changed += ["email", "email_key"]
    elif email and email != subscriber.email:
        subscriber.email = email
        changed.append("email")
    for name, value in fields.items():
        current = getattr(subscriber, name)
        if (current.code if name == "country" else current) != value:
            setattr(subscriber, name, value)
            changed.append(name)
    if attributes and any((subscriber.attributes or {}).get(k) != v for k, v in attributes.items()):
        subscriber.attributes = {**(subscriber.attributes or {}), **attributes}
        changed.append("attributes")
    if user_id and not subscriber.external_id:
        if Subscriber.objects.filter(external_id=user_id).exists():
            warnings.append("userId already belongs to another subscriber")
        else:
            subscriber.external_id = user_id
            changed.append("external_id")
    if changed:
        # Only what identify changed is written: most identifies repeat what we know.
        subscriber.save(update_fields=[*dict.fromkeys(changed), "updated_at"])
    return warnings


def _link(identity: str, subscriber: Subscriber) -> None:
    """Remember who an anonymous identity is, and give them what they did before."""
    link, created = AnonymousVisitor.objects.get_or_create(anonymous_id=identity,
                                                           defaults={"subscriber": subscriber})
    if not created and link.subscriber_id != subscriber.pk:
        return
    Event.objects.filter(subscriber__isnull=True, anonymous_id=identity).update(subscriber=subscriber,
                                                                                anonymous_id="")
    orphans = Order.objects.filter(subscriber__isnull=True, anonymous_id=identity)
    for order in orphans:
        order.subscriber = subscriber
        order.save(update_fields=["subscriber"])
        _count_order(subscriber.pk, order.total - order.refunded, order.occurred_at)


def _alias(call: Call) -> None:
    """alias(previousId → userId): what was done as previousId belongs to userId."""
    target = Subscriber.objects.filter(external_id=call.user_id).first()
    if target is not None:
        _link(call.previous_id, target)
        return
    # The userId is not known yet: file previousId's events under it until identify.
    Event.objects.filter(subscriber__isnull=True, anonymous_id=call.previous_id).update(
        anonymous_id=f"user:{call.user_id}")
    Order.objects.filter(subscriber__isnull=True, anonymous_id=call.previous_id).update(
        anonymous_id=f"user:{call.user_id}")


# --- e-commerce (Segment E-commerce spec v2) -------------------------------


def _money(value: Any, name: str) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise CallError(f"properties.{name} must be a number") from None
    if not amount.is_finite():
        raise CallError(f"properties.{name} must be a number")
    return amount.quantize(Decimal("0.01"))


def _product_fields(data: dict[str, Any], currency: str) -> dict[str, Any] | None:
    product_id = data.get("product_id") or data.get("productId") or data.get("id") or data.get("sku")
    if not product_id:
        return None
    fields = {
        "product_id": str(product_id)[:200],
        "sku": str(data.get("sku") or "")[:200],
        "name": str(data.get("name") or "")[:300],
        "category": str(data.get("category") or "")[:300],
        "brand": str(data.get("brand") or "")[:200],
        "url": str(data.get("url") or "")[:1000],
        "image_url": str(data.get("image_url") or data.get("imageUrl") or "")[:1000],
        "currency": str(data.get("currency") or currency or "")[:3].upper(),
    }
    price = _money(data.get("price"), "price")
    if price is not None:
        fields["price"] = price
    return fields


def _products_of(call: Call) -> list[dict[str, Any]]:
    props = call.properties
    currency = str(props.get("currency") or "")[:3].upper()
    items = [props] if call.event in PRODUCT_EVENTS else (
        props.get("products") if isinstance(props.get("products"), list) else [])
    return [{**item, "currency": item.get("currency") or currency} for item in items if isinstance(item, dict)]


def upsert_products(items: list[dict[str, Any]], at: dt.datetime) -> dict[str, Product]:
    """Create or refresh catalogue products in a few statements; blank values never overwrite known ones.

    New products are inserted in product-id order with ON CONFLICT DO NOTHING,
    so concurrent batches that see the same new product neither fail nor deadlock.
    """
    wanted: dict[str, dict[str, Any]] = {}
    for item in items:
        fields = _product_fields(item, item.get("currency", ""))
        if fields:
            merged = wanted.setdefault(fields["product_id"], {})
            merged.update({k: v for k, v in fields.items() if v not in ("", None)})
    if not wanted:
        return {}
    existing = {p.product_id: p for p in Product.objects.filter(product_id__in=list(wanted))}
    new = [Product(created_at=at, updated_at=at, **wanted[pid]) for pid in sorted(set(wanted) - set(existing))]
    if new:
        Product.objects.bulk_create(new, ignore_conflicts=True)
        existing.update({p.product_id: p for p in Product.objects.filter(product_id__in=[p.product_id for p in new])})
    for product_id in sorted(wanted):
        product = existing.get(product_id)
        if product is None:
            continue
        changed = [name for name, value in wanted[product_id].items() if getattr(product, name) != value]
        if changed:
            for name in changed:
                setattr(product, name, wanted[product_id][name])
            product.updated_at = at
            product.save(update_fields=[*changed, "updated_at"])
    return existing


def _commerce(call: Call, subscriber_id: int | None, event: Event, catalogue: dict[str, Product]) -> None:
    props = call.properties
    currency = str(props.get("currency") or "")[:3].upper()
    at = call.occurred_at or timezone.now()
    products = props.get("products") if isinstance(props.get("products"), list) else []
    if call.event == "Order Completed":
        _order_completed(call, subscriber_id, products, catalogue, currency, at)
    elif call.event == "Order Refunded":
        _order_refunded(call, products, event)


def _order_completed(call: Call, subscriber_id: int | None, products: list[Any], catalogue: dict[str, Product],
                     currency: str, at: dt.datetime) -> None:
    props = call.properties
    order_id = props.get("order_id") or props.get("orderId") or props.get("checkout_id")
    if not order_id:
        raise CallError("Order Completed needs properties.order_id")
    items = []
    for item in products:
        if not isinstance(item, dict):
            continue
        fields = _product_fields(item, currency) or {}
        quantity = item.get("quantity") or 1
        try:
            quantity = max(1, int(quantity))
        except (TypeError, ValueError):
            quantity = 1
        items.append(OrderItem(
            product=catalogue.get(fields.get("product_id", "")),
            sku=fields.get("sku", ""), name=fields.get("name", ""), category=fields.get("category", ""),
            price=fields.get("price") or Decimal("0"), quantity=quantity,
        ))
    total = _money(props.get("total"), "total")
    revenue = _money(props.get("revenue"), "revenue")
    if total is None:
        total = revenue if revenue is not None else sum((i.price * i.quantity for i in items), Decimal("0"))
    order = Order(
        order_id=str(order_id)[:200], subscriber_id=subscriber_id,
        anonymous_id="" if subscriber_id else call.identity, total=total,
        revenue=revenue if revenue is not None else total, currency=currency,
        coupon=str(props.get("coupon") or "")[:200], occurred_at=at,
    )
    try:
        with transaction.atomic():
            order.save()
    except IntegrityError:
        return  # the order is already recorded: Order Completed is idempotent on order_id
    for item in items:
        item.order = order
    OrderItem.objects.bulk_create(items)
    if subscriber_id:
        _count_order(subscriber_id, total, at)


def _count_order(subscriber_id: int, amount: Decimal, at: dt.datetime) -> None:
    """Add one order to a person's metrics with a single UPDATE."""
    Subscriber.objects.filter(pk=subscriber_id).update(
        order_count=F("order_count") + 1,
        total_spent=F("total_spent") + amount,
        average_order_value=ExpressionWrapper((F("total_spent") + amount) / (F("order_count") + 1),
                                              output_field=MONEY),
        first_order_at=Coalesce(Least("first_order_at", Value(at)), Value(at)),
        last_order_at=Coalesce(Greatest("last_order_at", Value(at)), Value(at)),
    )


def _order_refunded(call: Call, products: list[Any], event: Event) -> None:
    props = call.properties
    order_id = props.get("order_id") or props.get("orderId")
    if not order_id:
        raise CallError("Order Refunded needs properties.order_id")
    amount = _money(props.get("total"), "total")
    if amount is None:
        amount = _money(props.get("revenue"), "revenue")
    if amount is None and products:
        amount = sum(((_money(p.get("price"), "price") or Decimal("0")) * int(p.get("quantity") or 1)
                      for p in products if isinstance(p, dict)), Decimal("0"))
    try:
        with transaction.atomic():
            event.save()
    except IntegrityError:
        return  # the same refund (same messageId) was already applied
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(order_id=str(order_id)).first()
        if order is None:
            raise CallError(f"Order Refunded for unknown order “{order_id}”; send Order Completed first")
        remaining = order.total - order.refunded
        refund = remaining if amount is None else max(Decimal("0"), min(abs(amount), remaining))
        if refund == 0:
            return
        order.refunded += refund
        order.status = OrderStatus.REFUNDED if order.refunded >= order.total else OrderStatus.PARTIALLY_REFUNDED
        order.save(update_fields=["refunded", "status"])
        if order.subscriber_id:
            Subscriber.objects.filter(pk=order.subscriber_id).update(
                total_spent=F("total_spent") - refund,
                average_order_value=Case(
                    When(order_count__gt=0, then=ExpressionWrapper((F("total_spent") - refund) / F("order_count"),
                                                                   output_field=MONEY)),
                    default=Value(Decimal("0")), output_field=MONEY),
            )


def _touch_last_seen(calls: list[tuple[int, Call]], people: dict[str, int]) -> None:
    """Move each active person's last_seen_at forward, for the whole batch in one statement."""
    latest: dict[int, dt.datetime] = {}
    for _, call in calls:
        pk = people.get(call.identity)
        if pk and call.type in ACTIVITY_TYPES and call.occurred_at and (
            pk not in latest or call.occurred_at > latest[pk]
        ):
            latest[pk] = call.occurred_at
    if not latest:
        return
    ops = connection.ops
    rows = sorted(latest.items())  # a fixed lock order: concurrent batches queue, never deadlock
    values = ", ".join(["(%s, %s)"] * len(rows))
    params = [v for pk, at in rows for v in (pk, ops.adapt_datetimefield_value(at))]
    if connection.vendor == "postgresql":
        sql = (f"UPDATE subscribers_subscriber AS s SET last_seen_at = GREATEST(s.last_seen_at, v.at::timestamptz) "
               f"FROM (VALUES {values}) AS v(id, at) WHERE s.id = v.id::bigint")
    else:
        sql = (f"WITH v(id, at) AS (VALUES {values}) UPDATE subscribers_subscriber "
               "SET last_seen_at = MAX(COALESCE(last_seen_at, v.at), v.at) "
               "FROM v WHERE subscribers_subscriber.id = v.id")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
