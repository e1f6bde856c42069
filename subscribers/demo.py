"""Generate a reproducible, realistic demo audience in bulk.

The same seed gives the same people. Subscribers are numbered (external id
``demo-N``) and created in fixed batches, each in its own transaction, so a
second run adds only what is missing and an interrupted run resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import JSONField, Model
from django.utils import timezone
from django_countries.fields import CountryField

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
    Product,
    Subscriber,
    SubscriberStatus,
)

BATCH = 5000


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


def ascii_slug(text: str) -> str:
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


def _signup_time(rng: random.Random, now: dt.datetime) -> dt.datetime:
    # Three years of signups, growing over time, with November-December peaks.
    while True:
        days_ago = int(1095 * (rng.random() ** 1.4))
        moment = now - dt.timedelta(days=days_ago, seconds=rng.randrange(86400))
        if moment.month in (11, 12) or rng.random() < 0.72:
            return moment


def seed_demo(*, subscribers: int, seed: int = 1, progress: Callable[[int], None] | None = None,
              behaviour: bool = True) -> int:
    """Create demo subscribers up to ``subscribers``; return how many were added.

    With ``behaviour`` every person also gets a shopper's history (page and
    product views, carts, orders, email engagement) that fits one of the
    archetypes in ``ARCHETYPES``.
    """
    topics = ensure_catalogue()
    topic_list = list(topics.values())
    catalogue = ensure_products() if behaviour else []
    existing = Subscriber.objects.filter(external_id__startswith="demo-").count()
    if existing >= subscribers:
        return 0
    markets = [m for m in MARKETS for _ in range(m.weight)]
    sources = [s for s, w in SOURCES for _ in range(w)]
    now = timezone.now().replace(microsecond=0)
    added = 0
    for batch_no in range(existing // BATCH, (subscribers + BATCH - 1) // BATCH):
        rng = random.Random(f"{seed}-{batch_no}")
        people, consents, memberships = [], [], []
        lives: list[Behaviour] = []
        for index in range(batch_no * BATCH, min((batch_no + 1) * BATCH, subscribers)):
            market = rng.choice(markets)
            person = _person(rng, market, index, now, sources)
            life = _behaviour(rng, person, catalogue, now) if catalogue else None
            if index < existing:
                continue
            people.append(person)
            if life:
                lives.append(life)
        with transaction.atomic():
            bulk_insert(Subscriber, people)
            for person in people:
                _history(rng, person, topic_list, consents, memberships)
            bulk_insert(ConsentRecord, consents)
            bulk_insert(TopicSubscription, memberships)
            _store_behaviour(lives)
        added += len(people)
        if progress:
            progress(existing + added)
    return added


def bulk_insert(model: type[Model], objects: list[Model]) -> None:
    """Insert many new rows fast: PostgreSQL COPY with ids taken from the sequence, else bulk_create.

    Django's bulk_create spends most of its time building SQL; COPY streams
    values, which is what lets seed_demo make a million people in minutes.
    Objects get their primary keys either way.
    """
    if not objects:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects, batch_size=2000)
        return
    opts = model._meta
    for obj in objects:
        # Resolve foreign keys to saved objects (bulk_create does this too).
        obj._prepare_related_fields_for_save(operation_name="bulk_insert")
    fields = list(opts.concrete_fields)
    values = [_copy_value(f) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [opts.db_table, opts.pk.column, len(objects)])
        for obj, (pk,) in zip(objects, cursor.fetchall(), strict=True):
            obj.pk = pk
            obj._state.adding = False
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with cursor.cursor.copy(f"COPY {connection.ops.quote_name(opts.db_table)} ({columns}) FROM STDIN") as copy:
            for obj in objects:
                copy.write_row([value(obj) for value in values])


def _copy_value(field: Any) -> Callable[[Model], Any]:
    """Return how to read one field of an object as COPY wants it (cheaper than get_db_prep_save per value)."""
    attname = field.attname
    if isinstance(field, JSONField):
        return lambda obj: json.dumps(getattr(obj, attname), ensure_ascii=False)
    if isinstance(field, CountryField):
        return lambda obj: getattr(obj, attname).code or ""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda obj: field.pre_save(obj, True)
    return operator.attrgetter(attname)


def _person(rng: random.Random, market: Market, index: int, now: dt.datetime, sources: list[str]) -> Subscriber:
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
        birth = (now - dt.timedelta(days=age_days)).date()
    gender_roll = rng.random()
    gender = (Gender.FEMALE if female else Gender.MALE) if gender_roll < 0.9 else rng.choice(
        [Gender.NON_BINARY, Gender.PREFER_NOT_TO_SAY, ""])
    works = rng.random() < 0.35
    attributes: dict[str, object] = {"favourite_category": rng.choice(CATEGORIES)}
    if rng.random() < 0.5:
        attributes["loyalty_tier"] = rng.choices(["bronze", "silver", "gold"], [6, 3, 1])[0]
    if rng.random() < 0.3:
        attributes["shoe_size"] = rng.choice([36, 37, 38, 39, 40, 41, 42, 43, 44, 45])
    if rng.random() < 0.05:
        attributes["vip"] = True
    email = f"{ascii_slug(first)}.{ascii_slug(last)}.{index}@{rng.choice(DOMAINS)}"
    changed = created + dt.timedelta(days=rng.randrange(1, 400)) if status not in (
        SubscriberStatus.SUBSCRIBED, SubscriberStatus.PENDING) else created
    return Subscriber(
        email=email,
        email_key=email.lower(),
        first_name=first if rng.random() > 0.04 else "",
        last_name=last if rng.random() > 0.08 else "",
        language=market.language if rng.random() > 0.05 else "en",
        country=market.country,
        region=region,
        city=city,
        timezone=rng.choice(market.timezones),
        birth_date=birth,
        birthday_month=birth.month if birth else None,
        birthday_day=birth.day if birth else None,
        gender=gender,
        company=rng.choice(COMPANIES) if works else "",
        job_title=rng.choice(TITLES) if works else "",
        industry=rng.choice(INDUSTRIES) if works else "",
        source=rng.choice(sources),
        external_id=f"demo-{index}",
        tags=sorted(rng.sample(TAGS, rng.choice([0, 1, 1, 2, 2, 3]))),
        attributes=attributes,
        status=status,
        created_at=created,
        confirmed_at=(created + dt.timedelta(minutes=rng.randrange(2, 600))
                      if status != SubscriberStatus.PENDING else None),
        status_changed_at=min(changed, now),
    )


def _history(rng: random.Random, person: Subscriber, topics: list[Topic], consents: list[ConsentRecord],
             memberships: list[TopicSubscription]) -> None:
    method = ConsentMethod.IMPORT if person.source.startswith("import") else ConsentMethod.FORM
    ip = f"203.0.113.{rng.randrange(1, 255)}" if method == ConsentMethod.FORM else None
    agent = "Mozilla/5.0 (demo)" if method == ConsentMethod.FORM else ""
    if person.status == SubscriberStatus.PENDING:
        return
    consents.append(ConsentRecord(subscriber=person, purpose=ConsentPurpose.EMAIL_MARKETING, granted=True,
                                  method=method, notice_version="signup-notice-v2", ip_address=ip, user_agent=agent,
                                  occurred_at=person.confirmed_at or person.created_at))
    chosen = [t for t in topics if t.default_opt_in or rng.random() < 0.35]
    for topic in chosen:
        memberships.append(TopicSubscription(subscriber=person, topic=topic, subscribed=True,
                                             changed_at=person.created_at))
        consents.append(ConsentRecord(subscriber=person, purpose=ConsentPurpose.TOPIC, topic=topic, granted=True,
                                      method=method, notice_version="signup-notice-v2", ip_address=ip,
                                      user_agent=agent, occurred_at=person.confirmed_at or person.created_at))
    if rng.random() < 0.15:
        consents.append(ConsentRecord(subscriber=person, purpose=ConsentPurpose.PERSONALIZATION,
                                      granted=rng.random() < 0.3, method=ConsentMethod.PREFERENCE_CENTER,
                                      notice_version="preferences-v1", occurred_at=person.created_at
                                      + dt.timedelta(days=rng.randrange(1, 90))))
    if person.status == SubscriberStatus.UNSUBSCRIBED:
        consents.append(ConsentRecord(subscriber=person, purpose=ConsentPurpose.EMAIL_MARKETING, granted=False,
                                      method=ConsentMethod.PREFERENCE_CENTER, notice_version="signup-notice-v2",
                                      occurred_at=person.status_changed_at))


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
# (name, weight): who the demo people are as shoppers.
ARCHETYPES = (("browser", 24), ("cart_abandoner", 8), ("one_time", 18), ("repeat", 14), ("lapsed", 10),
              ("dormant", 26))


@dataclass
class Behaviour:
    person: Subscriber
    events: list[Event]
    orders: list[tuple[Order, list[OrderItem]]]


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
                url=f"https://shop.example/p/{product_id}", image_url=f"https://shop.example/img/{product_id}.jpg")
            products.append(product)
    return products


def _at(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    span = max(1, int((end - start).total_seconds()))
    return start + dt.timedelta(seconds=rng.randrange(span))


def _order_time(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    # Seasonal peaks: a third of draws are moved into November or December.
    moment = _at(rng, start, end)
    if rng.random() < 0.33 and moment.month not in (11, 12):
        peak = moment.replace(month=rng.choice((11, 12)), day=rng.randrange(1, 29))
        if start <= peak <= end:
            return peak
    return moment


def _behaviour(rng: random.Random, person: Subscriber, catalogue: list[Product], now: dt.datetime) -> Behaviour:
    kind = rng.choices([a for a, _ in ARCHETYPES], [w for _, w in ARCHETYPES])[0]
    favourite = person.attributes.get("favourite_category")
    liked = [p for p in catalogue if p.category == favourite] or catalogue
    life = Behaviour(person=person, events=[], orders=[])
    start = person.created_at
    anonymous = f"demo-anon-{person.external_id}"

    def event(event_name: str, at: dt.datetime, **properties: object) -> None:
        life.events.append(Event(subscriber=person, name=event_name, properties=properties, occurred_at=at,
                                 received_at=at, context={"page": {"url": properties.get("url", "")}}))

    def browse(at: dt.datetime) -> Product:
        product = rng.choice(liked if rng.random() < 0.7 else catalogue)
        event("Page Viewed", at, url="https://shop.example/", name="Home")
        event("Product Viewed", at + dt.timedelta(seconds=40), product_id=product.product_id, name=product.name,
              category=product.category, price=str(product.price), url=product.url)
        return product

    def buy(at: dt.datetime) -> None:
        chosen = rng.sample(liked if rng.random() < 0.6 else catalogue, rng.choice((1, 1, 2, 3)))
        items = [OrderItem(product=p, sku=p.sku, name=p.name, category=p.category, price=p.price,
                           quantity=rng.choice((1, 1, 1, 2))) for p in chosen]
        total = sum((i.price * i.quantity for i in items), Decimal("0"))
        order_id = f"demo-{person.external_id}-{len(life.orders) + 1}"
        browse(at - dt.timedelta(minutes=12))
        event("Checkout Started", at - dt.timedelta(minutes=3), order_id=order_id, value=str(total))
        event("Order Completed", at, order_id=order_id, total=str(total), currency="EUR",
              products=[{"product_id": i.product.product_id, "price": str(i.price), "quantity": i.quantity}
                        for i in items])
        life.orders.append((Order(order_id=order_id, subscriber=person, total=total, revenue=total, currency="EUR",
                                  occurred_at=at, created_at=at), items))

    if kind == "browser":
        for _ in range(rng.randrange(2, 9)):
            browse(_at(rng, start, now))
    elif kind == "cart_abandoner":
        for _ in range(rng.randrange(1, 4)):
            browse(_at(rng, start, now))
        when = now - dt.timedelta(hours=rng.randrange(2, 72))
        product = browse(when)
        event("Product Added", when + dt.timedelta(minutes=2), product_id=product.product_id, name=product.name,
              price=str(product.price), quantity=1)
        if rng.random() < 0.6:
            event("Checkout Started", when + dt.timedelta(minutes=5), value=str(product.price))
    elif kind == "one_time":
        buy(_order_time(rng, start, now))
        for _ in range(rng.randrange(0, 4)):
            browse(_at(rng, start, now))
    elif kind == "repeat":
        interval = dt.timedelta(days=rng.randrange(20, 75))
        at = start + dt.timedelta(days=rng.randrange(1, 30))
        while at < now:
            buy(at)
            at += interval + dt.timedelta(days=rng.randrange(-7, 8))
        for _ in range(rng.randrange(2, 8)):
            browse(_at(rng, max(start, now - dt.timedelta(days=60)), now))
    elif kind == "lapsed":
        end = now - dt.timedelta(days=rng.randrange(200, 420))
        if end > start:
            for _ in range(rng.randrange(1, 4)):
                buy(_order_time(rng, start, end))
    for e in life.events:
        e.anonymous_id = "" if e.subscriber else anonymous
    _metrics(rng, person, life, kind, now)
    return life


def _metrics(rng: random.Random, person: Subscriber, life: Behaviour, kind: str, now: dt.datetime) -> None:
    """Set the profile metrics the real pipeline would have kept current."""
    totals = [order.total for order, _ in life.orders]
    times = [order.occurred_at for order, _ in life.orders]
    person.order_count = len(totals)
    person.total_spent = sum(totals, Decimal("0"))
    person.average_order_value = (person.total_spent / len(totals)).quantize(Decimal("0.01")) if totals else 0
    person.first_order_at = min(times) if times else None
    person.last_order_at = max(times) if times else None
    person.last_seen_at = max((e.occurred_at for e in life.events), default=None)
    if person.status in (SubscriberStatus.SUBSCRIBED, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED,
                         SubscriberStatus.COMPLAINED):
        weeks = max(1, (now - person.created_at).days // 7)
        person.emails_received = rng.randrange(weeks // 2, weeks + 1)
        engaged = {"repeat": 0.9, "one_time": 0.6, "cart_abandoner": 0.7, "browser": 0.5, "lapsed": 0.3,
                   "dormant": 0.15}[kind]
        if person.emails_received and rng.random() < engaged:
            recent = 90 if engaged > 0.4 else 400
            person.last_open_at = now - dt.timedelta(days=rng.randrange(0, recent), hours=rng.randrange(24))
            if rng.random() < engaged * 0.6:
                person.last_click_at = person.last_open_at + dt.timedelta(seconds=rng.randrange(5, 600))


def _store_behaviour(lives: list[Behaviour]) -> None:
    events = [e for life in lives for e in life.events]
    for e in events:
        e.subscriber_id = e.subscriber.pk if e.subscriber else None
    bulk_insert(Event, events)
    orders = [order for life in lives for order, _ in life.orders]
    for order in orders:
        order.subscriber_id = order.subscriber.pk
    bulk_insert(Order, orders)
    items = []
    for life in lives:
        for order, order_items in life.orders:
            for item in order_items:
                item.order_id = order.pk
                items.append(item)
    bulk_insert(OrderItem, items)
