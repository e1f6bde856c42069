"""Store who people are: subscribers, their custom attributes and consent ledger."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Upper
from django.utils import timezone as django_tz
from django_countries.fields import CountryField


def normalize_email(raw: str) -> str:
    """Return the address trimmed, with the domain lower-cased.

    The local part keeps its case (it is the recipient's to decide); the
    uniqueness key (``email_key``) is fully lower-cased.
    """
    value = (raw or "").strip()
    local, sep, domain = value.rpartition("@")
    if not sep:
        return value
    return f"{local}@{domain.lower()}"


def email_key(raw: str) -> str:
    """Return the case-insensitive uniqueness key of an address."""
    return normalize_email(raw).lower()


def email_hash(raw: str) -> str:
    """Return the SHA-256 of the key, kept for erased addresses instead of the address."""
    return hashlib.sha256(email_key(raw).encode()).hexdigest()


@lru_cache(maxsize=1)
def timezone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_timezone(value: str) -> None:
    if value and value not in timezone_names():
        raise ValidationError(
            "%(value)s is not a known time zone; use a name like Europe/Riga or America/New_York.",
            params={"value": value},
            code="invalid_timezone",
        )


class SubscriberStatus(models.TextChoices):
    # Known from the shop or the tracking API, but never agreed to marketing mail.
    CONTACT = "contact", "Contact (not subscribed)"
    PENDING = "pending", "Pending confirmation"
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    ERASED = "erased", "Erased"


# Statuses that only the person can undo (by confirming again); imports and
# the tracking API never move anyone out of them.
BLOCKED_STATUSES = frozenset(
    {
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.COMPLAINED,
        SubscriberStatus.ERASED,
    }
)


class Gender(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    NON_BINARY = "non_binary", "Non-binary"
    OTHER = "other", "Other"
    PREFER_NOT_TO_SAY = "prefer_not_to_say", "Prefer not to say"


class Subscriber(models.Model):
    email = models.CharField(max_length=254, help_text="As given; the domain is stored lower-case.")
    email_key = models.CharField(max_length=254, unique=True, editable=False)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    language = models.CharField(max_length=10, blank=True, help_text="Language code, e.g. en, lv, pl.")
    country = CountryField(blank=True)
    region = models.CharField(max_length=100, blank=True)
    city = models.CharField(max_length=100, blank=True)
    timezone = models.CharField(
        max_length=64, blank=True, validators=[validate_timezone], help_text="IANA name, e.g. Europe/Riga."
    )
    birth_date = models.DateField(null=True, blank=True)
    # Many lists know the birthday without the year (Mailchimp's MM/DD);
    # birthday journeys need only these two.
    birthday_month = models.PositiveSmallIntegerField(null=True, blank=True)
    birthday_day = models.PositiveSmallIntegerField(null=True, blank=True)
    gender = models.CharField(max_length=20, choices=Gender.choices, blank=True)
    company = models.CharField(max_length=200, blank=True)
    job_title = models.CharField(max_length=200, blank=True)
    industry = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=100, blank=True, help_text="Where the person signed up or came from.")
    external_id = models.CharField(
        max_length=255, null=True, blank=True, unique=True, help_text="The shop's user id."
    )
    tags = models.JSONField(default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="Values of catalogue attributes.")
    status = models.CharField(
        max_length=20, choices=SubscriberStatus.choices, default=SubscriberStatus.PENDING, db_index=True
    )
    created_at = models.DateTimeField(default=django_tz.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    # Profile metrics, kept current incrementally by subscribers.actions as
    # orders, site visits and email engagement arrive (never recomputed per event).
    # db_default too: the CSV import inserts rows with set-based SQL.
    order_count = models.PositiveIntegerField(default=0, db_default=0)
    total_spent = models.DecimalField(max_digits=14, decimal_places=2, default=0, db_default=0)
    average_order_value = models.DecimalField(max_digits=14, decimal_places=2, default=0, db_default=0)
    first_order_at = models.DateTimeField(null=True, blank=True)
    last_order_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="Last activity on the site or app.")
    last_open_at = models.DateTimeField(null=True, blank=True, help_text="Last human open (machine opens excluded).")
    last_click_at = models.DateTimeField(null=True, blank=True)
    emails_received = models.PositiveIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("export_subscriber", "Can export subscriber personal data")]
        indexes = [
            models.Index(fields=["country", "status"], name="subscriber_country_status"),
            models.Index(fields=["source"], name="subscriber_source"),
            # Partial: most people have never ordered, and every range filter
            # on the date implies it is set; imports skip 1M index entries.
            models.Index(fields=["last_order_at"], name="subscriber_last_order_at",
                         condition=models.Q(last_order_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    def clean(self) -> None:
        self.email = normalize_email(self.email)
        if self.birth_date:
            self.birthday_month, self.birthday_day = self.birth_date.month, self.birth_date.day
        self.attributes = validate_attribute_values(self.attributes or {})

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_email(self.email)
        self.email_key = self.email.lower()
        if self.birth_date:
            self.birthday_month, self.birthday_day = self.birth_date.month, self.birth_date.day
        if self.external_id == "":
            self.external_id = None
        super().save(*args, **kwargs)


class SuppressedAddress(models.Model):
    """Remember an address that must never be re-added, without keeping the address.

    Written when a person is erased; imports and signups check it by hash.
    """

    email_hash = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=40, default="erased")
    created_at = models.DateTimeField(default=django_tz.now)

    class Meta:
        verbose_name_plural = "suppressed addresses"

    def __str__(self) -> str:
        return f"{self.email_hash[:12]}… ({self.reason})"


class AttributeType(models.TextChoices):
    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    DATE = "date", "Date"
    BOOLEAN = "boolean", "Yes / no"
    CHOICE = "choice", "Choice"


class AttributeDefinition(models.Model):
    """Describe one custom attribute: its key, type and whether it is sensitive."""

    key = models.SlugField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z][a-z0-9_]*$", "Use lower-case letters, digits and _.")],
        help_text="Used in segments, merge tags and CSV headers, e.g. favourite_colour.",
    )
    label = models.CharField(max_length=100)
    type = models.CharField(max_length=10, choices=AttributeType.choices, default=AttributeType.TEXT)
    choices = models.JSONField(default=list, blank=True, help_text="Allowed values for a choice attribute.")
    sensitive = models.BooleanField(
        default=False,
        help_text="Health, religion, finances and the like: never used in content without a recorded reason.",
    )
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label

    def clean(self) -> None:
        if self.type == AttributeType.CHOICE and not self.choices:
            raise ValidationError({"choices": "A choice attribute needs at least one allowed value."})
        if self.type != AttributeType.CHOICE and self.choices:
            raise ValidationError({"choices": "Only choice attributes have allowed values."})

    def coerce(self, raw: Any) -> Any:
        """Return ``raw`` as this attribute's JSON value, or raise ValidationError in plain words."""
        return coerce_attribute_value(self.type, self.choices, raw, self.label)


_TRUE_WORDS = {"1", "true", "yes", "y", "on", "t"}
_FALSE_WORDS = {"0", "false", "no", "n", "off", "f"}


def coerce_attribute_value(kind: str, choices: list[str], raw: Any, label: str) -> Any:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if kind == AttributeType.TEXT:
        return str(raw).strip()
    if kind == AttributeType.NUMBER:
        if isinstance(raw, bool):
            raise ValidationError(f"{label} must be a number.")
        if isinstance(raw, int | float):
            return raw
        try:
            number = Decimal(str(raw).strip().replace(",", "."))
        except InvalidOperation:
            raise ValidationError(f"{label} must be a number, not “{raw}”.") from None
        if not number.is_finite():
            raise ValidationError(f"{label} must be a number, not “{raw}”.")
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == AttributeType.DATE:
        if isinstance(raw, dt.date):
            return raw.isoformat()
        try:
            return dt.date.fromisoformat(str(raw).strip()).isoformat()
        except ValueError:
            raise ValidationError(f"{label} must be a date written as YYYY-MM-DD, not “{raw}”.") from None
    if kind == AttributeType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ValidationError(f"{label} must be yes or no, not “{raw}”.")
    if kind == AttributeType.CHOICE:
        value = str(raw).strip()
        for choice in choices:
            if choice.lower() == value.lower():
                return choice
        raise ValidationError(f"{label} must be one of {', '.join(choices)}; “{raw}” is not.")
    raise ValidationError(f"Unknown attribute type {kind}.")


def validate_attribute_values(values: dict[str, Any]) -> dict[str, Any]:
    """Return ``values`` checked and coerced against the catalogue.

    Unknown keys and wrongly typed values raise one ValidationError that
    names every problem, keyed by attribute.
    """
    if not isinstance(values, dict):
        raise ValidationError({"attributes": "Attributes must be a mapping of attribute key to value."})
    definitions = {d.key: d for d in AttributeDefinition.objects.filter(key__in=list(values))}
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, raw in values.items():
        definition = definitions.get(key)
        if definition is None:
            errors[key] = f"“{key}” is not in the attribute catalogue; add it there first."
            continue
        try:
            value = definition.coerce(raw)
        except ValidationError as exc:
            errors[key] = " ".join(exc.messages)
            continue
        if value is not None:
            cleaned[key] = value
    if errors:
        raise ValidationError({"attributes": [f"{k}: {v}" for k, v in errors.items()]})
    return cleaned


class ConsentPurpose(models.TextChoices):
    EMAIL_MARKETING = "email_marketing", "Email marketing"
    PERSONALIZATION = "personalization", "Personalization"
    TOPIC = "topic", "Topic"


class ConsentMethod(models.TextChoices):
    IMPORT = "import", "Import"
    FORM = "form", "Signup form"
    PREFERENCE_CENTER = "preference_center", "Preference center"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    AUTOMATION = "automation", "Journey (automation)"


class ConsentRecordQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("The consent ledger is append-only; record a new entry instead.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("The consent ledger is append-only; entries cannot be deleted.")

    def purge_for_erasure(self) -> int:
        """Delete a person's ledger rows as part of erasing them: the one permitted deletion.

        Called only by subscribers.actions.erase_subscriber, which then appends
        the erasure itself as the person's only remaining record.
        """
        return super().delete()[0]


class ConsentRecord(models.Model):
    """Append one consent fact: who granted or withdrew what, how, when and under which notice.

    Current consent per purpose is the latest record; history is never
    rewritten. Rows go away only with their subscriber (erasure keeps the
    hashed suppression entry, not the ledger).
    """

    # No index of its own: consent_latest starts with the subscriber.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="consent_records", db_index=False
    )
    purpose = models.CharField(max_length=20, choices=ConsentPurpose.choices)
    # Topic and actor are indexed only where set (see Meta): most rows have
    # neither, and deleting a topic or a user looks up rows that have it.
    topic = models.ForeignKey("preferences.Topic", null=True, blank=True, on_delete=models.PROTECT, db_index=False)
    granted = models.BooleanField()
    method = models.CharField(max_length=20, choices=ConsentMethod.choices)
    notice_version = models.CharField(max_length=200, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    occurred_at = models.DateTimeField(default=django_tz.now, help_text="When the person gave or withdrew it.")
    recorded_at = models.DateTimeField(default=django_tz.now, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    objects = ConsentRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["subscriber", "purpose", "-occurred_at"], name="consent_latest"),
            models.Index(fields=["topic"], name="consent_topic", condition=models.Q(topic__isnull=False)),
            models.Index(fields=["actor"], name="consent_actor", condition=models.Q(actor__isnull=False)),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(purpose="topic", topic__isnull=False)
                | (~models.Q(purpose="topic") & models.Q(topic__isnull=True)),
                name="consent_topic_iff_topic_purpose",
            )
        ]

    def __str__(self) -> str:
        verb = "granted" if self.granted else "withdrew"
        return f"{self.subscriber} {verb} {self.purpose_label} ({self.get_method_display()})"

    @property
    def purpose_label(self) -> str:
        if self.purpose == ConsentPurpose.TOPIC and self.topic_id:
            return f"topic “{self.topic}”"
        return self.get_purpose_display()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise TypeError("The consent ledger is append-only; record a new entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("The consent ledger is append-only; entries cannot be deleted.")


class PrivacyRequestKind(models.TextChoices):
    EXPORT = "export", "Data export"
    ERASURE = "erasure", "Erasure"


class PrivacyRequest(models.Model):
    """Log each exercise of a privacy right (export, erasure): who asked, how, when. Append-only."""

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="privacy_requests")
    kind = models.CharField(max_length=10, choices=PrivacyRequestKind.choices)
    method = models.CharField(max_length=20, choices=ConsentMethod.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    occurred_at = models.DateTimeField(default=django_tz.now)

    class Meta:
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.get_method_display()})"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued for checking"
    CHECKING = "checking", "Checking"
    CHECKED = "checked", "Checked, waiting for confirmation"
    IMPORTING = "importing", "Importing"
    DONE = "done", "Imported"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ImportMode(models.TextChoices):
    FILL_BLANKS = "fill_blanks", "Fill blank fields only"
    OVERWRITE = "overwrite", "Overwrite with values from the file"


class ImportJob(models.Model):
    """Track one CSV import from upload through dry run to the real import."""

    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    topic = models.ForeignKey("preferences.Topic", null=True, blank=True, on_delete=models.SET_NULL)
    consent_notice = models.CharField(
        max_length=200, blank=True, help_text="Version or text of the consent notice these people agreed to."
    )
    mode = models.CharField(max_length=20, choices=ImportMode.choices, default=ImportMode.FILL_BLANKS)
    skip_bad_rows = models.BooleanField(
        default=False, help_text="Import the good rows even if some rows have errors."
    )
    status = models.CharField(max_length=20, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    new_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    report = models.FileField(upload_to="imports/reports/%Y/%m/", blank=True)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=django_tz.now)
    checked_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "CSV import"

    def __str__(self) -> str:
        return f"{self.original_name} ({self.get_status_display()})"

    @property
    def is_running(self) -> bool:
        return self.status in {ImportStatus.QUEUED, ImportStatus.CHECKING, ImportStatus.IMPORTING}

    @property
    def can_confirm(self) -> bool:
        return self.status == ImportStatus.CHECKED and (self.error_count == 0 or self.skip_bad_rows)


# --- Behaviour: tracking sources, events, products and orders --------------


class WriteKey(models.Model):
    """Authenticate one tracking source (a shop backend, a website SDK) on the tracking API.

    Only a hash of the key is stored; the key itself is shown once, when created.
    """

    name = models.CharField(max_length=100, help_text="Which source uses this key, e.g. “Shop backend”.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise it.")
    created_at = models.DateTimeField(default=django_tz.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "tracking write key"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AnonymousVisitor(models.Model):
    """Link a tracking anonymousId (or an aliased id) to the subscriber it turned out to be."""

    anonymous_id = models.CharField(max_length=200, unique=True)
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="anonymous_ids")
    linked_at = models.DateTimeField(default=django_tz.now)

    def __str__(self) -> str:
        return f"{self.anonymous_id} → {self.subscriber_id}"


class Event(models.Model):
    """One thing a person did: a tracked event or a page view (Segment track/page).

    Indexed for segment queries by person + name + time and by name + time.
    Events sent before a person is known carry only ``anonymous_id`` and are
    attached when the person is identified.
    """

    subscriber = models.ForeignKey(Subscriber, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    anonymous_id = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200)
    properties = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=django_tz.now)
    source = models.ForeignKey(WriteKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message_id = models.CharField(max_length=200, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["subscriber", "name", "occurred_at"], name="event_person_name_time"),
            models.Index(fields=["name", "occurred_at"], name="event_name_time"),
            models.Index(fields=["anonymous_id"], name="event_anonymous",
                         condition=models.Q(subscriber__isnull=True)),
            # "Viewed / added category X n times in N days" (segments): the e-commerce spec's category property,
            # upper-cased as the case-insensitive rule compares it, with the person for an index-only scan.
            models.Index(models.F("name"), Upper(Cast(KeyTextTransform("category", "properties"), models.TextField())),
                         models.F("occurred_at"), models.F("subscriber"), name="event_name_category_time"),
        ]

    def __str__(self) -> str:
        return f"{self.name} at {self.occurred_at:%Y-%m-%d %H:%M}"


class Product(models.Model):
    """A product of the shop's catalogue, upserted from e-commerce events."""

    product_id = models.CharField(max_length=200, unique=True, help_text="The shop's product id.")
    sku = models.CharField(max_length=200, blank=True, db_index=True)
    name = models.CharField(max_length=300, blank=True)
    category = models.CharField(max_length=300, blank=True, db_index=True)
    brand = models.CharField(max_length=200, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image_url = models.URLField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=django_tz.now)
    updated_at = models.DateTimeField(default=django_tz.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name or self.product_id


class OrderStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"


class Order(models.Model):
    """One completed order (Segment “Order Completed”), adjusted by refunds."""

    order_id = models.CharField(max_length=200, unique=True)
    subscriber = models.ForeignKey(Subscriber, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    anonymous_id = models.CharField(max_length=200, blank=True)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    refunded = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.COMPLETED)
    coupon = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=django_tz.now)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["subscriber", "occurred_at"], name="order_person_time")]

    def __str__(self) -> str:
        return f"Order {self.order_id}"

    @property
    def net_total(self) -> Decimal:
        return self.total - self.refunded


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sku = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=300, blank=True)
    category = models.CharField(max_length=300, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [models.Index(fields=["product", "order"], name="order_item_product")]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.name or self.sku}"
