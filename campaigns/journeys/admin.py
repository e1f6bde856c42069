"""Admin screens for journeys: the builder with its steps, the diagram with results, the simulator, enrollments.

Every change goes through ``campaigns.journeys.actions``: the step inline is
checked as one graph in its formset's ``clean()`` and the journey and its
steps are written together by ``save_journey``; the Turn on / Pause / Resume /
Archive buttons call the matching actions.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from campaigns.content.admin import VariantInline, _find_subscriber
from campaigns.content.models import Campaign
from campaigns.journeys import actions, graph
from campaigns.journeys.models import (
    Engagement,
    Enrollment,
    EnrollmentState,
    EntryRule,
    Journey,
    JourneyEmail,
    JourneyStatus,
    JourneyStep,
    JourneyStepStats,
    StepKind,
    TriggerKind,
    UpdateAction,
)
from campaigns.journeys.simulator import simulate
from campaigns.models import MessageStats
from campaigns.segments import actions as segment_actions
from campaigns.segments.widgets import SegmentRulesWidget
from marketing.admin import ReadOnlyAdmin

JOURNEY_MEDIA_JS = ("campaigns/journey_builder.js",)
JOURNEY_MEDIA_CSS = {"all": ("campaigns/journey_builder.css",)}
SMALL_JSON = forms.Textarea(attrs={"rows": 2, "cols": 60, "class": "vLargeTextField mk-code",
                                   "placeholder": '{"property": "value"}'})

# Which fields each trigger and each step kind uses; the rest are hidden (journey_builder.js) and cleared here.
TRIGGER_FIELDS = {
    TriggerKind.SIGNUP: (),
    TriggerKind.EVENT: ("trigger_event", "trigger_filters"),
    TriggerKind.SEGMENT_ENTRY: ("trigger_segment",),
    TriggerKind.DATE: ("trigger_date_field", "trigger_time"),
    TriggerKind.INACTIVITY: ("inactivity_days",),
}
STEP_FIELDS = {
    StepKind.SEND_EMAIL: ("email", "next_step"),
    StepKind.WAIT: ("wait_amount", "wait_unit", "next_step"),
    StepKind.WAIT_UNTIL: ("until_time", "until_weekday", "until_date_field", "until_offset_days", "next_step"),
    StepKind.WAIT_EVENT: ("event_name", "event_filters", "wait_amount", "wait_unit", "next_step", "else_step"),
    StepKind.BRANCH: ("condition", "engagement_step", "engagement", "next_step", "else_step"),
    StepKind.SPLIT: ("split_percent", "next_step", "else_step"),
    StepKind.UPDATE_PROFILE: ("update_action", "update_key", "update_value", "update_topic", "next_step"),
    StepKind.EXIT: (),
}
UPDATE_FIELDS = {
    UpdateAction.ADD_TAG: ("update_key",), UpdateAction.REMOVE_TAG: ("update_key",),
    UpdateAction.SET_ATTRIBUTE: ("update_key", "update_value"),
    UpdateAction.SUBSCRIBE_TOPIC: ("update_topic",), UpdateAction.UNSUBSCRIBE_TOPIC: ("update_topic",),
    UpdateAction.STOP_MARKETING: (),
}
KIND_ICONS = {
    # Symbols common system fonts carry (DejaVu, Segoe UI Symbol, Apple Symbols): no emoji font needed.
    StepKind.SEND_EMAIL: "✉", StepKind.WAIT: "◷", StepKind.WAIT_UNTIL: "◴", StepKind.WAIT_EVENT: "⚑",
    StepKind.BRANCH: "⋔", StepKind.SPLIT: "⚖", StepKind.UPDATE_PROFILE: "✎", StepKind.EXIT: "■",
}
STATUS_COLOURS = {JourneyStatus.DRAFT: "#57606a", JourneyStatus.ACTIVE: "#1a7f37", JourneyStatus.PAUSED: "#8a6d00",
                  JourneyStatus.ARCHIVED: "#6e7781"}
EMAIL_STATS = ("sent", "delivered", "unique_opens", "unique_clicks", "unsubscribes", "bounces", "complaints")


def _clear(instance: Any, names: list[str]) -> None:
    """Reset fields the chosen kind does not use to their defaults, so hidden leftovers are not saved."""
    for name in names:
        field = instance._meta.get_field(name)
        setattr(instance, field.attname, field.get_default())


class FiltersField(forms.JSONField):
    """Event property filters as JSON; no filters show as an empty box, not as “{}” or “null”."""

    default_error_messages = {
        "invalid": "Write the filters as JSON: property names and values in double quotes, e.g. "
                   "{\"category\": \"shoes\", \"total\": 50}. Leave the box empty for no filters.",
    }

    def prepare_value(self, value: Any) -> Any:
        return "" if value in ({}, None) else super().prepare_value(value)

    def clean(self, value: Any) -> Any:
        return super().clean(value) or {}


# --- The journey form and its steps -----------------------------------------------------------


class JourneyForm(forms.ModelForm):
    class Meta:
        model = Journey
        fields = ("name", "description", "topic", "group", "trigger", "trigger_event", "trigger_filters",
                  "trigger_segment", "trigger_date_field", "trigger_time", "inactivity_days", "entry_rule",
                  "reentry_days", "exit_event", "exit_filters")
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 60}), "trigger_filters": SMALL_JSON,
                   "exit_filters": SMALL_JSON, "trigger_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M")}
        field_classes = {"trigger_filters": FiltersField, "exit_filters": FiltersField}

    class Media:
        js = JOURNEY_MEDIA_JS
        css = JOURNEY_MEDIA_CSS

    def _post_clean(self) -> None:
        super()._post_clean()
        journey = self.instance
        used = TRIGGER_FIELDS.get(journey.trigger, ())
        _clear(journey, [n for names in TRIGGER_FIELDS.values() for n in names if n not in used])
        if journey.entry_rule != EntryRule.ONCE_PER_PERIOD:
            journey.reentry_days = None


class StepRulesWidget(SegmentRulesWidget):
    """The segment rule builder for a branch's condition.

    In the inline's blank template the builder is marked as not to be started
    on page load (a copy of a started builder would be dead); journey_builder.js
    starts it when the template becomes a new step.
    """

    def format_value(self, value: Any) -> str:
        # The form field hands over JSON text: "null" for a step without a condition.
        return super().format_value(None if value in (None, "", "null") else value)

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        html = super().render(name, value, attrs, renderer)
        if "__prefix__" in name:
            # Only the widget's own, already escaped markup changes here.
            html = mark_safe(html.replace('<div class="segment-builder"',  # noqa: S308
                                          '<div class="segment-builder" data-started="later"', 1))
        return html


class StepForm(forms.ModelForm):
    condition = forms.JSONField(
        required=False, widget=StepRulesWidget,
        help_text="People these rules match right then take the “yes” path.")

    class Meta:
        model = JourneyStep
        fields = ("position", "key", "kind", "label", "email", "wait_amount", "wait_unit", "until_time",
                  "until_weekday", "until_date_field", "until_offset_days", "event_name", "event_filters",
                  "condition", "engagement_step", "engagement", "split_percent", "update_action", "update_key",
                  "update_value", "update_topic", "next_step", "else_step")
        widgets = {"position": forms.NumberInput(attrs={"class": "vIntegerField mk-position", "min": 0}),
                   "key": forms.TextInput(attrs={"class": "mk-step-key", "size": 16}),
                   "label": forms.TextInput(attrs={"size": 50}),
                   "event_filters": SMALL_JSON,
                   "until_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
                   "next_step": forms.TextInput(attrs={"class": "mk-step-ref", "size": 16,
                                                       "list": "journey-step-keys"}),
                   "else_step": forms.TextInput(attrs={"class": "mk-step-ref", "size": 16,
                                                       "list": "journey-step-keys"}),
                   "engagement_step": forms.TextInput(attrs={"class": "mk-step-ref", "size": 16,
                                                             "list": "journey-step-keys"})}
        field_classes = {"event_filters": FiltersField}
        labels = {"wait_amount": "Wait (or time limit)", "email": "Email", "next_step": "Then go to",
                  "else_step": "Second path goes to", "until_weekday": "Weekday", "until_time": "Local time"}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        email = self.fields["email"]
        email.queryset = JourneyEmail.objects.order_by("name")
        email.help_text = "Write journey emails under Campaigns → Journey emails."

    def clean_condition(self) -> Any:
        rules = self.cleaned_data.get("condition")
        if not rules or (isinstance(rules, dict) and not rules.get("rules")):
            return None  # an empty rule group is “no condition”, not “everyone”
        errors = segment_actions.validate_rules(rules)
        if errors:
            raise forms.ValidationError(errors)
        return rules

    def _post_clean(self) -> None:
        super()._post_clean()
        step = self.instance
        used = set(STEP_FIELDS.get(step.kind, ()))
        if step.kind == StepKind.UPDATE_PROFILE and step.update_action in UPDATE_FIELDS:
            used = {n for n in used if not n.startswith("update_")} | {"update_action"} \
                | set(UPDATE_FIELDS[step.update_action])
        _clear(step, sorted({n for names in STEP_FIELDS.values() for n in names} - used))


class StepFormSet(BaseInlineFormSet):
    """Check the steps as one graph (and, for a journey that is on, everything it needs to run)."""

    def kept_steps(self) -> list[JourneyStep]:
        """Return the steps the form keeps: every step not marked for deletion, new ones only if filled in."""
        steps = []
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or self._should_delete_form(form):
                continue
            if form.instance.pk is None and not form.has_changed():
                continue
            steps.append(form.instance)
        return steps

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return  # field errors first; the graph is checked once every step reads well
        steps = self.kept_steps()
        journey = self.instance
        if journey.status == JourneyStatus.ACTIVE:
            problems = actions.journey_problems(journey, steps, activating=True)
        else:
            problems = graph.graph_problems(steps)
        if problems:
            raise forms.ValidationError(problems)


class StepInline(admin.StackedInline):
    model = JourneyStep
    form = StepForm
    formset = StepFormSet
    extra = 0
    classes = ("mk-journey-steps",)
    verbose_name = "step"
    verbose_name_plural = "Steps (top to bottom, unless a step says where to go)"
    fieldsets = (
        (None, {"fields": (("position", "key", "kind"), "label")}),
        (None, {"fields": (
            "email",
            ("wait_amount", "wait_unit"),
            ("until_time", "until_weekday"),
            ("until_date_field", "until_offset_days"),
            "event_name", "event_filters",
            "condition",
            ("engagement_step", "engagement"),
            "split_percent",
            "update_action", ("update_key", "update_value"), "update_topic",
            ("next_step", "else_step"),
        )}),
    )

    def get_extra(self, request: HttpRequest, obj: Journey | None = None, **kwargs: Any) -> int:
        return 1 if obj is None else 0

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name != "email":
            return super().formfield_for_dbfield(db_field, request, **kwargs)
        # The add / edit / view links open the journey email screen, not the campaign one (which lists campaigns
        # only): the relation is presented as pointing at the JourneyEmail proxy.
        field = db_field.formfield(queryset=JourneyEmail.objects.order_by("name"))
        rel = copy.copy(db_field.remote_field)
        rel.model = JourneyEmail
        email_admin = self.admin_site._registry.get(JourneyEmail)
        if email_admin is None:
            return field
        field.widget = RelatedFieldWidgetWrapper(
            field.widget, rel, self.admin_site, can_add_related=email_admin.has_add_permission(request),
            can_change_related=email_admin.has_change_permission(request),
            can_delete_related=False, can_view_related=email_admin.has_view_permission(request))
        return field


# --- The journey admin ------------------------------------------------------------------------


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    form = JourneyForm
    list_display = ("name", "status_badge", "trigger_summary", "topic", "in_journey", "completed", "left_early")
    list_filter = ("status", "trigger")
    search_fields = ("name", "description")
    autocomplete_fields = ("trigger_segment",)
    inlines = [StepInline]
    change_form_template = "admin/campaigns/journey/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "description", "topic", "group")}),
        ("Trigger: who enters", {"fields": ("trigger", ("trigger_event", "trigger_filters"), "trigger_segment",
                                            ("trigger_date_field", "trigger_time"), "inactivity_days"),
                                 "classes": ("mk-journey-trigger",)}),
        ("Entry", {"fields": ("entry_rule", "reentry_days")}),
        ("Goal: who leaves early", {"fields": ("exit_event", "exit_filters")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        open_ = Q(enrollments__state__in=actions.OPEN_STATES)
        return super().get_queryset(request).select_related("topic", "trigger_segment").annotate(
            open_count=Count("enrollments", filter=open_),
            completed_count=Count("enrollments", filter=Q(enrollments__state=EnrollmentState.COMPLETED)),
            exited_count=Count("enrollments", filter=Q(enrollments__state=EnrollmentState.EXITED)))

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Journey) -> str:
        return format_html('<span class="mk-badge" style="background:{}">{}</span>',
                           STATUS_COLOURS.get(obj.status, "#57606a"), obj.get_status_display())

    @admin.display(description="trigger", ordering="trigger")
    def trigger_summary(self, obj: Journey) -> str:
        return trigger_in_words(obj)

    @admin.display(description="in it now", ordering="open_count")
    def in_journey(self, obj: Journey) -> str:
        return self._enrollments_link(obj, obj.open_count, state__in="active,sending")

    @admin.display(description="completed", ordering="completed_count")
    def completed(self, obj: Journey) -> str:
        return self._enrollments_link(obj, obj.completed_count, state__exact=EnrollmentState.COMPLETED)

    @admin.display(description="left early", ordering="exited_count")
    def left_early(self, obj: Journey) -> str:
        return self._enrollments_link(obj, obj.exited_count, state__exact=EnrollmentState.EXITED)

    @staticmethod
    def _enrollments_link(obj: Journey, count: int, **filters: str) -> str:
        if not count:
            return "0"
        return format_html('<a href="{}">{}</a>', enrollments_url(obj.pk, **filters), f"{count:,}")

    # Saving: the journey and its steps in one action, after the formset checked the graph.

    def save_model(self, request: HttpRequest, obj: Journey, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        # Written with its steps in save_related, so a journey is never saved without them.

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        steps_formset = next(f for f in formsets if isinstance(f, StepFormSet))
        steps_formset.save(commit=False)  # collects new, changed and deleted steps for the change message
        # The formset ran the same checks; JourneyInvalid here means a concurrent edit, and save_journey
        # rolls back whole, so nothing is half-written.
        actions.save_journey(form.instance, steps_formset.kept_steps(), deleted=steps_formset.deleted_objects)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> HttpResponse:
        journey = self.get_object(request, unquote(object_id))  # None for an id that is no number
        extra = dict(extra_context or {})
        if journey is not None:
            extra["diagram"] = diagram(journey)
            extra["can_control"] = self.has_change_permission(request, journey)
            extra["enrollments_url"] = enrollments_url(journey.pk)
        return super().change_view(request, object_id, form_url, extra)

    # Extra screens.

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/control/<str:command>/", wrap(self.control_view), name="campaigns_journey_control"),
            path("<int:pk>/simulate/", wrap(self.simulate_view), name="campaigns_journey_simulate"),
        ] + super().get_urls()

    def control_view(self, request: HttpRequest, pk: int, command: str) -> HttpResponse:
        """Turn a journey on, pause, resume or archive it (POST only), reporting every problem that stops it."""
        if request.method != "POST":
            return HttpResponse(status=405)
        journey = get_object_or_404(Journey, pk=pk)
        if not self.has_change_permission(request, journey):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:campaigns_journey_change", args=[pk]))
        if command in ("activate", "resume") and journey.status == JourneyStatus.ARCHIVED:
            # activate_journey would turn an archived journey on again; archiving is meant to be for good.
            self.message_user(request, "An archived journey stays off; copy its steps into a new journey instead.",
                              messages.WARNING)
        elif command in ("activate", "resume"):
            try:
                actions.activate_journey(journey)
            except actions.JourneyInvalid as exc:
                for problem in exc.problems:
                    self.message_user(request, problem, messages.ERROR)
                return back
            self.message_user(request, "Resumed: people continue where they were." if command == "resume" else
                              "Turned on: people who meet the trigger from now on enter the journey.",
                              messages.SUCCESS)
        elif command == "pause":
            done = actions.pause_journey(journey)
            self.message_user(request, "Paused: nobody enters or moves on until you resume; people keep their "
                                       "place." if done else "Only a journey that is on can be paused.",
                              messages.SUCCESS if done else messages.WARNING)
        elif command == "archive":
            left = actions.archive_journey(journey)
            self.message_user(request, f"Archived; {left:,} {'person' if left == 1 else 'people'} in it left.",
                              messages.SUCCESS)
        else:
            return HttpResponse(status=404)
        return back

    def simulate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Show what the journey would do to one person, step by step, without doing any of it."""
        journey = get_object_or_404(Journey, pk=pk)
        if not self.has_view_permission(request, journey):
            raise PermissionDenied
        query = request.GET.get("q", "").strip()
        start_text = request.GET.get("start", "").strip()
        person, lines, error = None, [], ""
        start = None
        if start_text:
            try:
                start = dt.datetime.fromisoformat(start_text)
            except ValueError:
                error = "Write the start time as YYYY-MM-DD HH:MM (UTC)."
            else:
                start = start.replace(tzinfo=dt.UTC) if timezone.is_naive(start) else start
        if query and not error:
            person = _find_subscriber(query)
            if person is None:
                error = f"No subscriber “{query}”: search by email address or id."
            else:
                lines = simulate(journey, subscriber_id=person.pk, start=start)
        return TemplateResponse(request, "admin/campaigns/journey/simulate.html", {
            **self.admin_site.each_context(request),
            "title": f"Simulate “{journey}” for a person", "opts": self.model._meta, "original": journey,
            "journey": journey, "query": query, "start": start_text, "person": person, "lines": lines,
            "error": error, "start_at": start if not error else None,
        })


def trigger_in_words(journey: Journey) -> str:
    """Say in a few words what starts the journey."""
    trigger = journey.trigger
    if trigger == TriggerKind.EVENT:
        filters = ", ".join(f"{k} = {v}" for k, v in (journey.trigger_filters or {}).items())
        return f"Does “{journey.trigger_event or '?'}”" + (f" ({filters})" if filters else "")
    if trigger == TriggerKind.SEGMENT_ENTRY:
        return f"Enters “{journey.trigger_segment or '?'}”"
    if trigger == TriggerKind.DATE:
        at = f" at {journey.trigger_time:%H:%M} local time" if journey.trigger_time else ""
        return f"Anniversary of {journey.trigger_date_field or '?'}{at}"
    if trigger == TriggerKind.INACTIVITY:
        return f"Inactive for {journey.inactivity_days or '?'} days"
    return "Subscribes"


def enrollments_url(journey_id: int, **filters: str) -> str:
    query = urlencode({"journey__id__exact": journey_id, **filters})
    return f"{reverse('admin:campaigns_enrollment_changelist')}?{query}"


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def diagram(journey: Journey) -> dict[str, Any]:
    """Return the journey's steps in order with where each leads and its counts, in four queries.

    Waiting people come from enrollments, passed / left / second-path counts
    from the step totals, and an email step's results from the message totals
    of its deliveries (one row per step and trip number).
    """
    steps = list(journey.steps.select_related("email", "update_topic"))
    by_state: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for row in (Enrollment.objects.filter(journey=journey).values("state", "step_key")
                .annotate(n=Count("id")).order_by()):
        by_state[row["state"]] += row["n"]
        if row["state"] in actions.OPEN_STATES:
            waiting[row["step_key"]] += row["n"]
    stats = {s.step_key: s for s in JourneyStepStats.objects.filter(journey=journey)}
    prefixes = {actions.message_prefix(journey.pk, s.key): s.key for s in steps if s.kind == StepKind.SEND_EMAIL}
    email_totals: dict[str, Counter[str]] = defaultdict(Counter)
    for row in (MessageStats.objects.filter(message_key__startswith=f"journey:{journey.pk}:step:")
                .values("message_key", *EMAIL_STATS)):
        key = prefixes.get(row["message_key"].rsplit(":", 1)[0] + ":")
        if key is not None:
            email_totals[key].update({name: row[name] for name in EMAIL_STATS})
    keys = {s.key for s in steps}
    boxes = []
    for step in steps:
        counts = stats.get(step.key)
        passed, exited, took_else = (counts.passed, counts.exited, counts.took_else) if counts else (0, 0, 0)
        paths = []
        for index, edge in enumerate(graph.edges(step, steps)):
            paths.append({
                "label": edge.label, "target": edge.target if edge.target in keys else None,
                "below": not (step.next_step if index == 0 else step.else_step),
                "count": (passed - took_else if index == 0 else took_else) if step.kind in graph.FORKING_KINDS
                else None,
            })
        box = {"step": step, "key": step.key, "kind": step.get_kind_display(), "kind_code": step.kind,
               "icon": KIND_ICONS.get(step.kind, "•"), "summary": step_in_words(step),
               "waiting": waiting.get(step.key, 0), "passed": passed, "exited": exited, "took_else": took_else,
               "paths": paths, "forks": step.kind in graph.FORKING_KINDS,
               "waiting_url": enrollments_url(journey.pk, step_key__exact=step.key, state__in="active,sending"),
               "exited_url": enrollments_url(journey.pk, step_key__exact=step.key,
                                             state__exact=EnrollmentState.EXITED)}
        if step.kind == StepKind.SEND_EMAIL:
            totals = email_totals.get(step.key, Counter())
            base = totals["delivered"] or totals["sent"]
            box["email"] = {**{name: totals[name] for name in EMAIL_STATS},
                            "open_rate": _rate(totals["unique_opens"], base),
                            "click_rate": _rate(totals["unique_clicks"], base),
                            "skipped": counts.skipped if counts else 0}
        boxes.append(box)
    return {"boxes": boxes, "starting": waiting.get(actions.NOT_STARTED, 0),
            "open": sum(waiting.values()), "completed": by_state[EnrollmentState.COMPLETED],
            "exited": by_state[EnrollmentState.EXITED], "trigger": trigger_in_words(journey),
            "goal": journey.exit_event, "first": steps[0].key if steps else None}


def _duration(step: JourneyStep) -> str:
    """“1 hour”, “3 days”; “? days” while the amount is missing."""
    unit = step.get_wait_unit_display()
    return f"1 {unit.removesuffix('s')}" if step.wait_amount == 1 else f"{step.wait_amount or '?'} {unit}"


def step_in_words(step: JourneyStep) -> str:
    """Say what one step does, for the diagram."""
    kind = step.kind
    if kind == StepKind.SEND_EMAIL:
        return f"Send “{step.email}”" if step.email_id else "Send an email (none chosen)"
    if kind == StepKind.WAIT:
        return f"Wait {_duration(step)}"
    if kind == StepKind.WAIT_UNTIL:
        parts = []
        if step.until_date_field:
            days = "day" if abs(step.until_offset_days or 0) == 1 else "days"
            offset = f" {step.until_offset_days:+d} {days}" if step.until_offset_days else ""
            parts.append(f"their {step.until_date_field}{offset}")
        if step.until_weekday is not None:
            parts.append(f"next {step.get_until_weekday_display()}")
        if step.until_time is not None:
            parts.append(f"{step.until_time:%H:%M} local time")
        return "Wait until " + (", ".join(parts) or "?")
    if kind == StepKind.WAIT_EVENT:
        return f"Wait up to {_duration(step)} for “{step.event_name}”"
    if kind == StepKind.BRANCH:
        if step.engagement_step:
            verb = "click in" if step.engagement == Engagement.CLICKED else "open"
            return f"Did they {verb} “{step.engagement_step}”?"
        return f"Do they match: {segment_actions.summarize(step.condition)}?" if step.condition else "Branch"
    if kind == StepKind.SPLIT:
        share = step.split_percent or 0
        return f"Random split: {share}% A, {100 - share}% B"
    if kind == StepKind.UPDATE_PROFILE:
        what = step.update_key or (str(step.update_topic) if step.update_topic_id else "")
        value = f" = {step.update_value}" if step.update_action == UpdateAction.SET_ATTRIBUTE else ""
        return f"{step.get_update_action_display() or 'Update the profile'}: {what}{value}".rstrip(": ")
    return "Leave the journey"


# --- Enrollments ------------------------------------------------------------------------------


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdmin):
    list_display = ("subscriber", "journey", "entry", "state", "step_key", "entered_at", "next_run_at", "note")
    list_filter = ("journey", "state", "step_key")
    search_fields = ("subscriber__email",)
    list_select_related = ("subscriber", "journey")
    show_full_result_count = False
    fields = ("journey", "subscriber", "entry", "state", "step_key", "note", "entered_at", "step_entered_at",
              "next_run_at", "due_at", "finished_at", "attempts", "trigger_data", "path_display")
    readonly_fields = fields

    @admin.display(description="path")
    def path_display(self, obj: Enrollment) -> str:
        if not obj.path:
            return "Not at a step yet."
        return format_html('<ol class="mk-path">{}</ol>', format_html_join("", "<li><code>{}</code> {} <span "
                                                                                 'class="mk-note">{}</span></li>', (
            (entry.get("step", ""), entry.get("outcome", ""), _when(entry.get("at", "")))
            for entry in obj.path)))


def _when(text: str) -> str:
    try:
        return f"{dt.datetime.fromisoformat(text):%Y-%m-%d %H:%M} UTC"
    except ValueError:
        return text


# --- Journey emails ---------------------------------------------------------------------------


class JourneyEmailForm(forms.ModelForm):
    class Meta:
        model = JourneyEmail
        fields = ("name", "from_name", "from_email", "reply_to", "layout", "sensitive_justification")
        widgets = {"sensitive_justification": forms.Textarea(attrs={"rows": 2})}


@admin.register(JourneyEmail)
class JourneyEmailAdmin(admin.ModelAdmin):
    form = JourneyEmailForm
    list_display = ("name", "used_by", "from_email", "updated_at")
    search_fields = ("name",)
    inlines = [VariantInline]
    readonly_fields = ("used_by",)
    change_form_template = "admin/campaigns/journeyemail/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "used_by")}),
        ("Sender", {"fields": (("from_name", "from_email"), "reply_to")}),
        ("Content", {"fields": ("layout", "sensitive_justification")}),
    )

    @admin.display(description="used by")
    def used_by(self, obj: JourneyEmail) -> str:
        if obj.pk is None:
            return "—"
        uses = list(JourneyStep.objects.filter(email_id=obj.pk).select_related("journey")
                    .order_by("journey__name", "position"))
        if not uses:
            return "No journey yet: choose it in a journey's “send an email” step."
        return format_html_join(", ", '<a href="{}">{}</a> (step “{}”)', (
            (reverse("admin:campaigns_journey_change", args=[s.journey_id]), s.journey.name, s.key) for s in uses))

    def save_model(self, request: HttpRequest, obj: JourneyEmail, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[Any]:
        return [path("<int:pk>/preview/", self.admin_site.admin_view(self.preview_view),
                     name="campaigns_journeyemail_preview")] + super().get_urls()

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Check, preview and test-send a journey email with the campaign preview, pointing back here."""
        get_object_or_404(JourneyEmail, pk=pk)
        campaign_admin = self.admin_site._registry[Campaign]
        response = campaign_admin.preview_view(request, pk)
        here = reverse("admin:campaigns_journeyemail_preview", args=[pk])
        if isinstance(response, HttpResponseRedirect):
            location = response["Location"]
            for theirs, ours in ((reverse("admin:campaigns_campaign_preview", args=[pk]), here),
                                 (reverse("admin:campaigns_campaign_change", args=[pk]),
                                  reverse("admin:campaigns_journeyemail_change", args=[pk]))):
                if location.startswith(theirs):
                    response["Location"] = ours + location[len(theirs):]
        elif isinstance(response, TemplateResponse):
            response.template_name = "admin/campaigns/journeyemail/preview.html"
            response.context_data["opts"] = self.model._meta
        return response
