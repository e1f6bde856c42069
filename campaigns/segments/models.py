"""Store segments: their rule trees, what they depend on, and membership snapshots with history."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


def empty_rules() -> dict:
    return {"match": "all", "rules": []}


class Segment(models.Model):
    """A set of people described by rules, compiled to one SQL query (``campaigns.segments.compiler``).

    Segments stay current by themselves: every count, preview and send runs
    the rules again. Segments with ``track_membership`` (and those journeys
    use) are also materialized on a Beat schedule, so entering and leaving
    them become membership changes that journeys trigger on.
    """

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=empty_rules, help_text="Built with the rule builder; validated on save.")
    track_membership = models.BooleanField(
        default=False,
        help_text="Keep a membership snapshot and record who enters and leaves (for journeys and history).",
    )
    system_key = models.CharField(
        max_length=40, null=True, blank=True, unique=True, editable=False,
        help_text="Set on prebuilt segments that lifecycle stages are derived from.",
    )
    member_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    counted_at = models.DateTimeField(null=True, blank=True, editable=False)
    count_seconds = models.FloatField(null=True, blank=True, editable=False)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False,
                                        help_text="When the membership snapshot was last refreshed.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [("explain_segment", "Can see a segment's SQL and query plan")]

    def __str__(self) -> str:
        return self.name


class SegmentDependency(models.Model):
    """Say that one segment's rules use another ("in segment X"); the used one cannot be deleted."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="dependencies")
    depends_on = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="dependents")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "depends_on"], name="segment_dependency_once")]

    def __str__(self) -> str:
        return f"{self.segment} uses {self.depends_on}"


class SegmentMembership(models.Model):
    """One person in a materialized segment, since when. Written only by the snapshot refresh."""

    # Indexed by segment_member_once (segment, subscriber) and segment_member_person (subscriber).
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.CASCADE,
                                   related_name="segment_memberships", db_index=False)
    since = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "subscriber"], name="segment_member_once")]
        indexes = [models.Index(fields=["subscriber"], name="segment_member_person")]

    def __str__(self) -> str:
        return f"{self.subscriber_id} in {self.segment_id}"


class SegmentRefresh(models.Model):
    """One run of a membership snapshot: how many entered, left and stayed, and how long it took."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="refreshes")
    started_at = models.DateTimeField(default=timezone.now)
    seconds = models.FloatField(default=0)
    members = models.PositiveIntegerField(default=0)
    entered = models.PositiveIntegerField(default=0)
    left = models.PositiveIntegerField(default=0)
    initial = models.BooleanField(default=False, help_text="The first snapshot: its entries are the starting point.")

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = "started_at"

    def __str__(self) -> str:
        return f"{self.segment} at {self.started_at:%Y-%m-%d %H:%M}"


class SegmentMembershipChange(models.Model):
    """Append one entry to or exit from a tracked segment ("entered segment" / "left segment").

    Journeys trigger on these; the subscriber page shows them as membership history.
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="membership_changes")
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.CASCADE, related_name="+")
    entered = models.BooleanField(help_text="True: entered the segment; false: left it.")
    occurred_at = models.DateTimeField()
    refresh = models.ForeignKey(SegmentRefresh, on_delete=models.CASCADE, related_name="changes")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["subscriber", "-occurred_at"], name="segment_change_person"),
            models.Index(fields=["refresh", "entered"], name="segment_change_refresh"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber_id} {'entered' if self.entered else 'left'} {self.segment_id}"
