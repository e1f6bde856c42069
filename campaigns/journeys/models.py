"""Store lifecycle journeys: a trigger, entry and exit rules, a graph of steps, and each person's enrollment."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from campaigns.content.models import Campaign


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", "Draft (off)"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class TriggerKind(models.TextChoices):
    SIGNUP = "signup", "Subscribes (confirmed signup)"
    EVENT = "event", "Does something (an event)"
    SEGMENT_ENTRY = "segment_entry", "Enters a segment"
    DATE = "date", "A date's anniversary (e.g. birthday)"
    INACTIVITY = "inactivity", "Has been inactive for some days"


class EntryRule(models.TextChoices):
    ONCE = "once", "Once ever"
    ONCE_PER_PERIOD = "once_per_period", "At most once every N days"
    EVERY_TIME = "every_time", "Every time the trigger fires (never twice at once)"


class Journey(models.Model):
    """One automated series: who enters (trigger and entry rule), what happens (steps), when they leave (goal)."""

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=JourneyStatus.choices, default=JourneyStatus.DRAFT)
    prebuilt_key = models.CharField(max_length=40, null=True, blank=True, unique=True, editable=False,
                                    help_text="Set on the journeys the app ships with.")
    topic = models.ForeignKey("preferences.Topic", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="journeys",
                              help_text="Which preference topic its emails belong to; required to turn it on.")
    group = models.CharField(
        max_length=60, blank=True,
        help_text="Journeys with the same group name never run for one person at the same time "
                  "(e.g. “promotions”).")
    # Trigger.
    trigger = models.CharField(max_length=20, choices=TriggerKind.choices, default=TriggerKind.SIGNUP)
    trigger_event = models.CharField(max_length=200, blank=True,
                                     help_text="For “does something”: the event name, e.g. Checkout Started.")
    trigger_filters = models.JSONField(
        default=dict, blank=True,
        help_text='Event properties that must match, e.g. {"category": "Shoes"}; empty: any.')
    trigger_segment = models.ForeignKey("campaigns.Segment", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="journey_triggers",
                                        help_text="For “enters a segment”.")
    trigger_date_field = models.CharField(
        max_length=80, blank=True,
        help_text="For a date's anniversary: “birthday”, or “attribute.<key>” of a date attribute.")
    trigger_time = models.TimeField(null=True, blank=True,
                                    help_text="For a date's anniversary: the local time of day to enter (e.g. 09:00).")
    inactivity_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="For “inactive”: days without an open, click, visit or order.")
    # Entry and exit.
    entry_rule = models.CharField(max_length=20, choices=EntryRule.choices, default=EntryRule.ONCE)
    reentry_days = models.PositiveIntegerField(null=True, blank=True,
                                               help_text="For “at most once every N days”: N.")
    exit_event = models.CharField(
        max_length=200, blank=True,
        help_text="Goal: people who do this (e.g. Order Completed) leave the journey; checked before every step.")
    exit_filters = models.JSONField(default=dict, blank=True, help_text="Event properties the goal must match.")
    # Where the engine is.
    version = models.PositiveIntegerField(default=1, editable=False, help_text="Raised by every saved edit.")
    segment_cursor = models.BigIntegerField(default=0, editable=False,
                                            help_text="The last segment membership change looked at.")
    swept_at = models.DateTimeField(null=True, blank=True, editable=False,
                                    help_text="When date and inactivity triggers last looked for people.")
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class StepKind(models.TextChoices):
    SEND_EMAIL = "send_email", "Send an email"
    WAIT = "wait", "Wait for a while"
    WAIT_UNTIL = "wait_until", "Wait until a time or date"
    WAIT_EVENT = "wait_event", "Wait for an event (yes / no)"
    BRANCH = "branch", "Branch on a condition (yes / no)"
    SPLIT = "split", "Random split (A / B)"
    UPDATE_PROFILE = "update_profile", "Update the profile"
    EXIT = "exit", "Exit"


class WaitUnit(models.TextChoices):
    MINUTES = "minutes", "minutes"
    HOURS = "hours", "hours"
    DAYS = "days", "days"
    WEEKS = "weeks", "weeks"


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class Engagement(models.TextChoices):
    OPENED = "opened", "opened it"
    CLICKED = "clicked", "clicked in it"


class UpdateAction(models.TextChoices):
    ADD_TAG = "add_tag", "Add a tag"
    REMOVE_TAG = "remove_tag", "Remove a tag"
    SET_ATTRIBUTE = "set_attribute", "Set a custom attribute"
    SUBSCRIBE_TOPIC = "subscribe_topic", "Subscribe to a topic"
    UNSUBSCRIBE_TOPIC = "unsubscribe_topic", "Unsubscribe from a topic"
    STOP_MARKETING = "stop_marketing", "Stop marketing mail (sunset: unsubscribe, they can come back)"


class JourneyStep(models.Model):
    """One step of a journey; ``key`` names it in the graph and in each enrollment's position.

    Steps follow each other by ``position`` unless ``next_step`` names
    another; waits for an event, branches and splits send their “no” (or B)
    path to ``else_step`` (empty: the person leaves). Only the fields of the
    step's kind are used.
    """

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="steps")
    key = models.SlugField(max_length=40, help_text="A short name other steps point to, e.g. “email-1”.")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=StepKind.choices)
    label = models.CharField(max_length=150, blank=True, help_text="What the step is for, shown in the diagram.")
    # Send an email.
    email = models.ForeignKey("campaigns.Campaign", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="journey_steps", limit_choices_to={"kind": "journey"},
                              help_text="The journey email to send (content, languages, dynamic blocks).")
    # Wait, and the timeout of "wait for an event".
    wait_amount = models.PositiveIntegerField(null=True, blank=True)
    wait_unit = models.CharField(max_length=10, choices=WaitUnit.choices, default=WaitUnit.DAYS)
    # Wait until.
    until_time = models.TimeField(null=True, blank=True, help_text="Local time of day in the person's time zone.")
    until_weekday = models.PositiveSmallIntegerField(choices=Weekday.choices, null=True, blank=True)
    until_date_field = models.CharField(max_length=80, blank=True,
                                        help_text="“birthday” or “attribute.<key>”: wait until that date (this year).")
    until_offset_days = models.IntegerField(default=0, help_text="Days before (negative) or after that date.")
    # Wait for an event.
    event_name = models.CharField(max_length=200, blank=True)
    event_filters = models.JSONField(default=dict, blank=True)
    # Branch.
    condition = models.JSONField(null=True, blank=True,
                                 help_text="A segment rule tree: people it matches take the “yes” path.")
    engagement_step = models.CharField(max_length=40, blank=True,
                                       help_text="Branch on an earlier email step of this journey (its key)…")
    engagement = models.CharField(max_length=10, choices=Engagement.choices, blank=True,
                                  help_text="…and whether the person opened or clicked it.")
    # Random split.
    split_percent = models.PositiveSmallIntegerField(null=True, blank=True,
                                                     help_text="Share of people taking path A (the rest take B).")
    # Update the profile.
    update_action = models.CharField(max_length=20, choices=UpdateAction.choices, blank=True)
    update_key = models.CharField(max_length=100, blank=True, help_text="The tag, or the attribute's key.")
    update_value = models.CharField(max_length=300, blank=True, help_text="The attribute's new value.")
    update_topic = models.ForeignKey("preferences.Topic", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    # Edges.
    next_step = models.CharField(max_length=40, blank=True,
                                 help_text="Where to go next (a step's key); empty: the step below.")
    else_step = models.CharField(max_length=40, blank=True,
                                 help_text="The “no” / B path (a step's key); empty: leave the journey.")

    class Meta:
        ordering = ["journey", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["journey", "key"], name="journey_step_key_once")]

    def __str__(self) -> str:
        return self.label or f"{self.get_kind_display()} ({self.key})"


class EnrollmentState(models.TextChoices):
    ACTIVE = "active", "In the journey"
    SENDING = "sending", "Email handed to the ESP"
    COMPLETED = "completed", "Completed"
    EXITED = "exited", "Left early"


class Enrollment(models.Model):
    """One person's trip through a journey: where they are and when the engine looks at them next.

    At most one open enrollment per journey and person (a partial unique
    index), and ``entry`` numbers a person's trips, so a re-entry gets its own
    deliveries (message keys carry it) while a retried step never sends twice.
    """

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments")
    subscriber = models.ForeignKey("subscribers.Subscriber", on_delete=models.CASCADE, related_name="+")
    entry = models.PositiveIntegerField(default=1, help_text="1 for the first trip, 2 for the second…")
    state = models.CharField(max_length=10, choices=EnrollmentState.choices, default=EnrollmentState.ACTIVE)
    step_key = models.CharField(max_length=40, blank=True, help_text="The step the person is at.")
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="When the engine looks at them next.")
    entered_at = models.DateTimeField(default=timezone.now)
    step_entered_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(null=True, blank=True, help_text="When the current step first became due.")
    finished_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, help_text="Why they wait, or why they left.")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Send tries at the current step.")
    trigger_data = models.JSONField(default=dict, blank=True,
                                    help_text="What started it (the event's properties), for the emails and “why”.")
    path = models.JSONField(default=list, blank=True, help_text="Steps passed, with when and how.")

    class Meta:
        ordering = ["-entered_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "subscriber", "entry"], name="enrollment_entry_once"),
            models.UniqueConstraint(fields=["journey", "subscriber"], condition=Q(state__in=["active", "sending"]),
                                    name="enrollment_open_once"),
        ]
        indexes = [
            models.Index(fields=["next_run_at"], condition=Q(state__in=["active", "sending"]),
                         name="enrollment_due"),
            models.Index(fields=["subscriber", "state"], name="enrollment_person"),
            models.Index(fields=["journey", "state", "step_key"], name="enrollment_step"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber_id} in {self.journey_id} (#{self.entry})"


class JourneyStepStats(models.Model):
    """Running totals per journey step (and split path): how many passed it and how many left there."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="step_stats")
    step_key = models.CharField(max_length=40)
    passed = models.PositiveIntegerField(default=0)
    exited = models.PositiveIntegerField(default=0)
    took_else = models.PositiveIntegerField(default=0, help_text="For yes/no and A/B steps: took the no / B path.")
    sent = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["journey", "step_key"], name="journey_step_stats_once")]
        verbose_name_plural = "journey step stats"

    def __str__(self) -> str:
        return f"{self.journey_id}:{self.step_key}"


class JourneyEmailManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(kind="journey")


class JourneyEmail(Campaign):
    """A journey email in the admin: campaign content (variants, languages, dynamic blocks) with no audience."""

    objects = JourneyEmailManager()

    class Meta:
        proxy = True
        verbose_name = "journey email"

    def save(self, *args: object, **kwargs: object) -> None:
        self.kind = "journey"
        super().save(*args, **kwargs)
