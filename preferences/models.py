"""Store what people want: topics and each person's topic subscriptions."""

from django.db import models
from django.utils import timezone


class Topic(models.Model):
    """A kind of mail a person can choose to receive (newsletter, offers, product news...)."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, help_text="Shown on the preference center.")
    default_opt_in = models.BooleanField(
        default=False, help_text="New subscribers who give general consent get this topic unless they opt out."
    )
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on the preference center.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class TopicSubscription(models.Model):
    """The current choice of one person for one topic; its history is in the consent ledger.

    An explicit opt-out is kept as ``subscribed=False`` so that defaults and
    imports never add the topic back.
    """

    # No single-column indexes: topic_subscription_unique starts with the
    # subscriber and topic_subscription_members with the topic.
    subscriber = models.ForeignKey(
        "subscribers.Subscriber", on_delete=models.CASCADE, related_name="topic_subscriptions", db_index=False
    )
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions", db_index=False)
    subscribed = models.BooleanField(default=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "topic"], name="topic_subscription_unique")
        ]
        indexes = [models.Index(fields=["topic", "subscribed"], name="topic_subscription_members")]

    def __str__(self) -> str:
        state = "subscribed to" if self.subscribed else "opted out of"
        return f"{self.subscriber_id} {state} {self.topic}"


class Frequency(models.TextChoices):
    """How often a person wants marketing mail; the sending policy gate enforces it."""

    EVERY = "every", "Every email"
    WEEKLY = "weekly", "At most one a week"
    MONTHLY = "monthly", "At most one a month"


class SubscriberPreferences(models.Model):
    """Hold one person's sending preferences and the secret behind their preference-center links.

    A row is created the first time a link is made for the person
    (``preferences.actions.ensure_preferences``); a person without one has the
    defaults (every email, not paused). ``token`` is random, never derived from
    the id; links carry it signed (``preferences.links``). Erasure deletes the
    row, so every link ever sent stops working. Personalization consent is not
    stored here: the consent ledger is its single source of truth.
    """

    subscriber = models.OneToOneField(
        "subscribers.Subscriber", on_delete=models.CASCADE, primary_key=True, related_name="preferences"
    )
    token = models.CharField(max_length=32, editable=False)
    frequency = models.CharField(max_length=10, choices=Frequency.choices, default=Frequency.EVERY)
    paused_until = models.DateTimeField(null=True, blank=True, help_text="No marketing mail before this time.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "subscriber preferences"
        verbose_name_plural = "subscriber preferences"
        # A constraint rather than unique=True: on PostgreSQL that would add a
        # second (LIKE) index that exact lookups never use.
        constraints = [models.UniqueConstraint(fields=["token"], name="preferences_token_unique")]

    def __str__(self) -> str:
        return f"Preferences of subscriber {self.subscriber_id}"


class PreferenceField(models.TextChoices):
    FREQUENCY = "frequency", "Frequency"
    PAUSE = "pause", "Pause"
    LANGUAGE = "language", "Language"


class PreferenceChange(models.Model):
    """Append one change of a preference that is not consent (frequency, pause, language).

    Consent (email marketing, topics, personalization) goes to the consent
    ledger; these are conveniences, kept as a short history for support and
    for the person's data export, and deleted with the person on erasure.
    """

    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.CASCADE, related_name="+")
    field = models.CharField(max_length=20, choices=PreferenceField.choices)
    old_value = models.CharField(max_length=64, blank=True)
    new_value = models.CharField(max_length=64, blank=True)
    method = models.CharField(max_length=20, help_text="A subscribers.ConsentMethod value.")
    occurred_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["subscriber", "-occurred_at"], name="preference_change_person")]

    def __str__(self) -> str:
        return f"{self.get_field_display()}: {self.old_value or '—'} → {self.new_value or '—'}"


class Signup(models.Model):
    """Keep a signup from the public form until the person confirms it by email (double opt-in).

    Nothing about a new address enters the subscriber list before it is
    confirmed; an unconfirmed signup is deleted when it expires
    (``preferences.actions.expire_signups``, a Beat job). The confirmation link
    carries ``token`` signed. ``previous_status`` remembers that a shop contact
    was moved to pending, so expiry can move them back.
    """

    email = models.CharField(max_length=254)
    email_key = models.CharField(max_length=254, db_index=True)
    first_name = models.CharField(max_length=150, blank=True)
    language = models.CharField(max_length=10, blank=True)
    topic_ids = models.JSONField(default=list, blank=True, help_text="Topics chosen on the form.")
    notice_version = models.CharField(max_length=200, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    token = models.CharField(max_length=32, editable=False)
    subscriber = models.ForeignKey(
        "subscribers.Subscriber", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_status = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    email_sent_at = models.DateTimeField(null=True, blank=True, help_text="When the confirmation email went out.")
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "signup (double opt-in)"
        verbose_name_plural = "signups (double opt-in)"
        constraints = [models.UniqueConstraint(fields=["token"], name="signup_token_unique")]

    def __str__(self) -> str:
        state = "confirmed" if self.confirmed_at else "unconfirmed"
        return f"Signup {self.pk} ({state})"
