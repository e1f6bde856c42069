"""Generate a reproducible, realistic demo audience in bulk.

The same seed gives the same people. Subscribers are numbered (external id
``demo-N``) and created in fixed batches, each in its own transaction, so a
second run adds only what is missing and an interrupted run resumes.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from preferences.models import Topic, TopicSubscription
from subscribers.models import (
    AttributeDefinition,
    AttributeType,
    ConsentMethod,
    ConsentPurpose,
    ConsentRecord,
    Gender,
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


def seed_demo(*, subscribers: int, seed: int = 1, progress: Callable[[int], None] | None = None) -> int:
    """Create demo subscribers up to ``subscribers``; return how many were added."""
    topics = ensure_catalogue()
    topic_list = list(topics.values())
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
        for index in range(batch_no * BATCH, min((batch_no + 1) * BATCH, subscribers)):
            market = rng.choice(markets)
            person = _person(rng, market, index, now, sources)
            if index < existing:
                continue
            people.append(person)
        with transaction.atomic():
            Subscriber.objects.bulk_create(people, batch_size=1000)
            for person in people:
                _history(rng, person, topic_list, consents, memberships)
            ConsentRecord.objects.bulk_create(consents, batch_size=2000)
            TopicSubscription.objects.bulk_create(memberships, batch_size=2000)
        added += len(people)
        if progress:
            progress(existing + added)
    return added


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
