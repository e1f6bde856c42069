"""Store what we send and why: deliveries, their tracking events, per-message totals, captured mail."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class CapturedEmail(models.Model):
    """One message the local capture backend kept instead of sending it."""

    from_email = models.CharField(max_length=320)
    to = models.TextField(help_text="Recipients, one per line.")
    subject = models.CharField(max_length=998)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "captured email"

    def __str__(self) -> str:
        return self.subject


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SKIPPED = "skipped", "Skipped"
    SENT = "sent", "Sent"
    SOFT_BOUNCED = "soft_bounced", "Soft-bounced"
    DELIVERED = "delivered", "Delivered"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected by the ESP"
    BOUNCED = "bounced", "Bounced (hard)"
    COMPLAINED = "complained", "Complained (spam)"


# A delivery's status only moves up this ladder, so events arriving out of
# order (an open before its "delivered", a retry of an old event) never
# undo a later, more telling outcome.
STATUS_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SKIPPED: 5,
    DeliveryStatus.SENT: 10,
    DeliveryStatus.SOFT_BOUNCED: 15,
    DeliveryStatus.DELIVERED: 20,
    DeliveryStatus.OPENED: 30,
    DeliveryStatus.CLICKED: 40,
    DeliveryStatus.UNSUBSCRIBED: 50,
    DeliveryStatus.FAILED: 55,
    DeliveryStatus.REJECTED: 55,
    DeliveryStatus.BOUNCED: 60,
    DeliveryStatus.COMPLAINED: 70,
}


class BounceType(models.TextChoices):
    HARD = "hard", "Hard (permanent)"
    SOFT = "soft", "Soft (temporary)"


class Delivery(models.Model):
    """One message to one person: the fact that it was (or was not) sent, and what became of it.

    Exactly one per message and person: the unique (message_key, subscriber)
    makes every send step idempotent.
    """

    # Looked up by person through delivery_subscriber_recent (subscriber, -created_at).
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.CASCADE, related_name="deliveries",
                                   db_index=False)
    message_key = models.CharField(
        max_length=100, help_text='What was sent, e.g. "campaign:12:variant:2" or "journey:3:step:5".'
    )
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    esp_name = models.CharField("ESP", max_length=40, blank=True)
    esp_message_id = models.CharField(
        "ESP message id", max_length=255, blank=True, db_index=True,
        help_text="Anymail's message_id; shared by all recipients of one Mailgun batch send.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    first_opened_at = models.DateTimeField(null=True, blank=True, help_text="First human open.")
    first_clicked_at = models.DateTimeField(null=True, blank=True, help_text="First human click.")
    open_count = models.PositiveIntegerField(default=0, help_text="All opens, machine opens included.")
    machine_open_count = models.PositiveIntegerField(
        default=0, help_text="Opens by privacy proxies and scanners; not human engagement."
    )
    click_count = models.PositiveIntegerField(default=0, help_text="All clicks, machine clicks included.")
    machine_click_count = models.PositiveIntegerField(default=0)
    bounce_type = models.CharField(max_length=4, choices=BounceType.choices, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was skipped, failed or bounced.")
    why = models.JSONField(
        default=dict,
        blank=True,
        help_text='Why this person got it, for the preference center\'s "why am I getting this?"',
    )

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["message_key", "subscriber"], name="delivery_one_per_message_and_person"),
        ]
        indexes = [
            models.Index(fields=["subscriber", "-created_at"], name="delivery_subscriber_recent"),
            models.Index(fields=["status"], name="delivery_status"),
        ]

    def __str__(self) -> str:
        return f"{self.message_key} → {self.subscriber_id}"


class EventKind(models.TextChoices):
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred"
    BOUNCED = "bounced", "Bounced (hard)"
    SOFT_BOUNCED = "soft_bounced", "Soft-bounced"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    COMPLAINED = "complained", "Complained"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    OTHER = "other", "Other"


class DeliveryEvent(models.Model):
    """One thing that happened to a delivery, as an ESP webhook or our own pixel/redirect reported it.

    ``esp_event_id`` is unique per delivery when set, so a retried webhook
    is recorded once. In anonymous tracking mode no open or click rows exist.
    """

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=40, help_text='The ESP\'s name, or "pixel" / "redirect" for our own tracking.')
    esp_event_id = models.CharField("ESP event id", max_length=255, blank=True)
    url = models.TextField("URL", blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    ip_address = models.GenericIPAddressField("IP address", null=True, blank=True)
    is_machine = models.BooleanField(default=False, help_text="A privacy proxy or scanner, not a person.")
    detail = models.TextField(blank=True, help_text="The ESP's description or the receiving server's response.")

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "esp_event_id"], condition=~Q(esp_event_id=""), name="delivery_event_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


# Counters of MessageStats, in the order the admin shows them.
STATS_FIELDS = (
    "sent", "delivered", "opens", "human_opens", "unique_opens", "clicks", "human_clicks", "unique_clicks",
    "bounces", "soft_bounces", "complaints", "unsubscribes", "failed",
)


class MessageStats(models.Model):
    """Keep running totals per message, so reports never count events and anonymous mode still has totals.

    opens/clicks count every event; human_* leave out machine ones; unique_*
    count people (deliveries) and stay 0 in anonymous mode, which keeps
    nothing per person. Keys starting "unmatched:" count webhook events for
    messages this app did not send (e.g. transactional mail on the same ESP account).
    """

    message_key = models.CharField(max_length=100, unique=True)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    opens = models.PositiveIntegerField(default=0)
    human_opens = models.PositiveIntegerField(default=0)
    unique_opens = models.PositiveIntegerField(default=0, help_text="People with a human open.")
    clicks = models.PositiveIntegerField(default=0)
    human_clicks = models.PositiveIntegerField(default=0)
    unique_clicks = models.PositiveIntegerField(default=0, help_text="People with a human click.")
    bounces = models.PositiveIntegerField(default=0, help_text="Hard bounces.")
    soft_bounces = models.PositiveIntegerField(default=0)
    complaints = models.PositiveIntegerField(default=0)
    unsubscribes = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Rejected by the ESP or failed to send.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "message stats"
        verbose_name_plural = "message stats"
        ordering = ["message_key"]

    def __str__(self) -> str:
        return self.message_key


from campaigns.content.models import (  # noqa: E402, F401 - the content package's models belong to this app
    Campaign,
    CampaignKind,
    CampaignSegment,
    CampaignStatus,
    ContentBlock,
    EmailLayout,
    Variant,
    VariantTranslation,
)
from campaigns.journeys.models import (  # noqa: E402, F401 - the journeys package's models belong to this app
    Enrollment,
    Journey,
    JourneyEmail,
    JourneyStep,
    JourneyStepStats,
)
from campaigns.segments.models import (  # noqa: E402, F401 - the segments package's models belong to this app
    Segment,
    SegmentDependency,
    SegmentMembership,
    SegmentMembershipChange,
    SegmentRefresh,
)
from campaigns.sending.models import (  # noqa: E402, F401 - the sending package's models belong to this app
    Recipient,
    RecipientGroup,
    RecipientStatus,
)
