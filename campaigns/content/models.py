"""Store email content: layouts, reusable blocks, campaigns with their variants and language versions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class EmailLayout(models.Model):
    """The frame around content: head, styles, header and footer; ``{{ content }}`` marks where content goes."""

    name = models.CharField(max_length=100, unique=True)
    html = models.TextField(help_text="Full HTML with {{ content }} where the message goes; <style> rules are "
                                      "inlined when a campaign is compiled.")
    is_default = models.BooleanField(default=False, help_text="Used by campaigns that choose no layout.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ContentBlock(models.Model):
    """A reusable piece of content, inserted with ``{% block_content "key" %}``."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    html = models.TextField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    TESTING = "testing", "A/B test running"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"


class ScheduleMode(models.TextChoices):
    NOW = "now", "Now"
    AT = "at", "At a time"
    LOCAL_TIME = "local_time", "At a local time in each person's time zone"
    BEST_HOUR = "best_hour", "At each person's best hour"


class WinnerMetric(models.TextChoices):
    CLICK_RATE = "click_rate", "Click rate"
    OPEN_RATE = "open_rate", "Open rate (machine opens inflate it)"
    CONVERSION_RATE = "conversion_rate", "Conversion rate"
    REVENUE = "revenue", "Revenue per recipient"


class CampaignKind(models.TextChoices):
    CAMPAIGN = "campaign", "Campaign"
    JOURNEY = "journey", "Journey email"


class Campaign(models.Model):
    """One mailing to an audience (include and exclude segments) about one preference topic.

    A “journey email” (``kind`` journey) is content only: journeys send it
    step by step to the people they carry, so it has no audience or schedule.
    """

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=CampaignKind.choices, default=CampaignKind.CAMPAIGN,
                            editable=False)
    topic = models.ForeignKey("preferences.Topic", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="campaigns",
                              help_text="Which preference topic this mail belongs to; required to schedule.")
    from_name = models.CharField(max_length=100, blank=True)
    from_email = models.EmailField(blank=True, help_text="Empty: the default sender.")
    reply_to = models.EmailField(blank=True)
    layout = models.ForeignKey(EmailLayout, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                               help_text="Empty: the default layout.")
    status = models.CharField(max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    sensitive_justification = models.TextField(
        blank=True, help_text="Why this campaign may use sensitive attributes (required if its content does).")
    # When to send.
    schedule_mode = models.CharField(max_length=12, choices=ScheduleMode.choices, default=ScheduleMode.NOW)
    send_at = models.DateTimeField(null=True, blank=True, help_text="For “at a time”: when (UTC).")
    send_on = models.DateField(null=True, blank=True,
                               help_text="For “local time” and “best hour”: the day, in each person's time zone.")
    local_time = models.TimeField(null=True, blank=True, help_text="For “local time”: the time of day.")
    throttle_per_minute = models.PositiveIntegerField(null=True, blank=True,
                                                      help_text="At most this many messages a minute; empty: no limit.")
    # A/B/n test.
    test_percent = models.PositiveSmallIntegerField(
        default=0, help_text="Share of the audience that gets the variants first (0: no test, everyone gets "
                             "variant A, or the variants equally if there are several).")
    winner_metric = models.CharField(max_length=16, choices=WinnerMetric.choices, default=WinnerMetric.CLICK_RATE)
    test_hours = models.PositiveSmallIntegerField(default=4, help_text="How long the test runs before choosing.")
    winner_auto = models.BooleanField(default=True, help_text="Send the winner to the rest automatically.")
    holdout_percent = models.PositiveSmallIntegerField(
        default=0, help_text="Share of the audience that gets nothing, to measure the campaign's real lift.")
    conversion_window_days = models.PositiveSmallIntegerField(
        default=5, help_text="Orders within this many days after the email count as its conversions.")
    # What happened.
    started_at = models.DateTimeField(null=True, blank=True)
    test_ends_at = models.DateTimeField(null=True, blank=True)
    materializing_since = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set while the recipients are being written, batch by batch (refreshed after each).")
    winner = models.ForeignKey("campaigns.Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    finished_at = models.DateTimeField(null=True, blank=True)
    status_note = models.CharField(max_length=300, blank=True, help_text="Why it is paused, for example.")
    failed_chunks = models.PositiveIntegerField(default=0, editable=False,
                                                help_text="Send chunks in a row the ESP accepted nothing of.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class CampaignSegment(models.Model):
    """A segment a campaign sends to (or, with ``exclude``, leaves out); the segment cannot be deleted."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="audience")
    segment = models.ForeignKey("campaigns.Segment", on_delete=models.PROTECT, related_name="campaign_uses")
    exclude = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "segment"], name="campaign_segment_once")]
        verbose_name = "audience segment"

    def __str__(self) -> str:
        return f"{'without' if self.exclude else 'to'} {self.segment}"

    def usage_label(self) -> str:
        return f"campaign “{self.campaign}”"


class Variant(models.Model):
    """One version of a campaign's message (A, B…); the default language lives here, others in translations."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    label = models.CharField(max_length=20, default="A")
    subject = models.CharField(max_length=300)
    preheader = models.CharField(max_length=300, blank=True, help_text="The preview line inboxes show.")
    from_name = models.CharField(max_length=100, blank=True, help_text="Empty: the campaign's.")
    html = models.TextField("HTML", help_text="Content; merge tags like {{ first_name|default:\"there\" }}.")
    text = models.TextField(blank=True, help_text="Plain-text part; empty: derived from the HTML.")

    class Meta:
        ordering = ["campaign", "label"]
        constraints = [models.UniqueConstraint(fields=["campaign", "label"], name="variant_label_once")]

    def __str__(self) -> str:
        return f"{self.campaign} – {self.label}"


class VariantTranslation(models.Model):
    """A variant in another language; subscribers get the version of their language, else the variant's own."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=10, choices=settings.LANGUAGES)
    subject = models.CharField(max_length=300)
    preheader = models.CharField(max_length=300, blank=True)
    html = models.TextField("HTML")
    text = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["variant", "language"], name="variant_language_once")]

    def __str__(self) -> str:
        return f"{self.variant} ({self.language})"
