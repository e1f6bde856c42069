"""Store a campaign's recipients: materialized at send time, one row per campaign and person."""

from __future__ import annotations

from django.db import models


class RecipientGroup(models.TextChoices):
    ALL = "all", "Everyone"
    TEST = "test", "Test sample"
    REST = "rest", "The rest (gets the winner)"
    HOLDOUT = "holdout", "Hold-out (gets nothing)"


class RecipientStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    SENDING = "sending", "Handed to the ESP"
    SENT = "sent", "Sent"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    HELD_OUT = "held_out", "Held out"


class Recipient(models.Model):
    """One person a campaign is for, with their group, variant, when they are due and what happened.

    The unique (campaign, subscriber) makes materializing idempotent; the
    delivery it leads to is unique per (message, subscriber) as well, so a
    re-run send step never mails anyone twice.
    """

    # Looked up by campaign through recipient_once, recipient_due and recipient_next, which start with it.
    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="recipients",
                                 db_index=False)
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey("campaigns.Variant", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    group = models.CharField(max_length=8, choices=RecipientGroup.choices, default=RecipientGroup.ALL)
    status = models.CharField(max_length=8, choices=RecipientStatus.choices, default=RecipientStatus.PENDING)
    due_at = models.DateTimeField(null=True, blank=True, help_text="Not before this time.")
    queued_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    reason = models.CharField(max_length=300, blank=True, help_text="The policy gate's answer, or the error.")
    delivery = models.ForeignKey("campaigns.Delivery", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "subscriber"], name="recipient_once")]
        indexes = [
            models.Index(fields=["campaign", "status", "due_at"], name="recipient_due"),
            # The next due recipients in id order, for queueing chunks (ORDER BY id LIMIT n).
            models.Index(fields=["campaign", "status", "id"], name="recipient_next"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber_id} in campaign {self.campaign_id}"


class SendChunk(models.Model):
    """A range of a campaign's recipients handed to a worker as one task, until that task has run.

    Queueing writes this one row, not each recipient's: the task claims the
    range's due recipients itself. Open chunks say which ranges are taken;
    one whose task never ran is dropped after a while, and its recipients,
    still waiting, are queued again.
    """

    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="+")
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    size = models.PositiveIntegerField(help_text="How many due recipients the range held when it was queued.")
    queued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"recipients {self.first_id}–{self.last_id} of campaign {self.campaign_id}"
