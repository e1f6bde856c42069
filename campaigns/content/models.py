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


class Campaign(models.Model):
    """One mailing to an audience (include and exclude segments) about one preference topic."""

    name = models.CharField(max_length=200)
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
    html = models.TextField(help_text="Content; merge tags like {{ first_name|default:\"there\" }}.")
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
    html = models.TextField()
    text = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["variant", "language"], name="variant_language_once")]

    def __str__(self) -> str:
        return f"{self.variant} ({self.language})"
