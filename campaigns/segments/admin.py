"""Admin screens for segments: the rule builder, live preview, counts, snapshots, member export."""

from __future__ import annotations

import csv
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from campaigns.segments import actions
from campaigns.segments.compiler import SegmentRuleError, catalogue
from campaigns.segments.models import Segment, SegmentRefresh
from campaigns.segments.widgets import SegmentRulesWidget
from preferences import actions as preference_actions
from preferences.models import Topic
from subscribers.admin import AddToTopicForm, admin_evidence
from subscribers.models import Event, Product
from subscribers.resources import SubscriberExportResource

EU = ("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
      "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE")
EEA = (*EU, "IS", "LI", "NO")


class SegmentForm(forms.ModelForm):
    rules = forms.JSONField(label="Rules", widget=SegmentRulesWidget, initial={"match": "all", "rules": []},
                            help_text="People who match these rules are in the segment; it stays current by itself.")

    class Meta:
        model = Segment
        fields = ("name", "description", "rules", "track_membership")
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["rules"].widget.segment_id = self.instance.pk

    def clean_rules(self) -> Any:
        rules = self.cleaned_data["rules"]
        errors = actions.validate_rules(rules, segment_id=self.instance.pk)
        if errors:
            raise forms.ValidationError(errors)
        return rules


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ("name", "members", "counted", "track_membership", "refreshed", "rules_summary")
    list_display_links = ("name",)
    list_filter = ("track_membership",)
    search_fields = ("name", "description")
    readonly_fields = ("members", "counted", "refreshed", "recent_snapshots", "where_used", "created_by",
                       "created_at", "updated_at")
    actions = ["recount_selected", "refresh_selected", "export_members", "add_members_to_topic"]
    change_form_template = "admin/campaigns/segment/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None) -> Any:
        fieldsets: list[Any] = [(None, {"fields": ("name", "description")}),
                                ("Rules", {"fields": ("rules",), "classes": ("segment-rules-fieldset",)}),
                                ("Membership", {"fields": ("track_membership",)})]
        if obj is not None:
            fieldsets[2] = ("Membership", {"fields": ("track_membership", ("members", "counted"), "refreshed",
                                                      "recent_snapshots", "where_used")})
            fieldsets.append(("History", {"fields": (("created_by", "created_at", "updated_at"),),
                                          "classes": ("collapse",)}))
        return fieldsets

    @admin.display(description="members", ordering="member_count")
    def members(self, obj: Segment) -> str:
        return "—" if obj.member_count is None else f"{obj.member_count:,}"

    @admin.display(description="counted", ordering="counted_at")
    def counted(self, obj: Segment) -> str:
        if obj.counted_at is None:
            return "not yet"
        took = f" in {obj.count_seconds:.2f} s" if obj.count_seconds is not None else ""
        return f"{timesince(obj.counted_at, timezone.now())} ago{took}"

    @admin.display(description="snapshot", ordering="refreshed_at")
    def refreshed(self, obj: Segment) -> str:
        if not obj.track_membership:
            return "—"
        return f"{timesince(obj.refreshed_at, timezone.now())} ago" if obj.refreshed_at else "waiting for the first"

    @admin.display(description="latest snapshots")
    def recent_snapshots(self, obj: Segment) -> str:
        rows = SegmentRefresh.objects.filter(segment=obj).order_by("-started_at", "-id")[:10]
        if not rows:
            return "None yet." if obj.track_membership else "Turn on “track membership” to keep snapshots."
        return format_html(
            '<table class="mk-kv"><tr><th>when</th><th>members</th><th>entered</th><th>left</th><th>took</th></tr>'
            "{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} s</td></tr>", (
                (f"{r.started_at:%Y-%m-%d %H:%M}" + (" (first)" if r.initial else ""), f"{r.members:,}",
                 f"{r.entered:,}", f"{r.left:,}", f"{r.seconds:.2f}") for r in rows)),
        )

    @admin.display(description="rules")
    def rules_summary(self, obj: Segment) -> str:
        return actions.summarize(obj.rules)

    @admin.display(description="used by")
    def where_used(self, obj: Segment) -> str:
        usages = actions.segment_usages(obj)
        return ", ".join(usages) if usages else "Nothing: it can be deleted."

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        actions.save_segment(obj, actor_id=request.user.pk)

    # Deleting: refused, naming where the segment is used.
    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        protected = [f"“{segment}” is used by {usage}" for segment in objs for usage in
                     actions.segment_usages(segment)]
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        actions.delete_segment(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for segment in queryset:
            actions.delete_segment(segment)

    # Bulk actions.
    @admin.action(description="Count members of selected segments now", permissions=["view"])
    def recount_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        for segment in queryset:
            try:
                total = actions.count_segment(segment)
            except SegmentRuleError as exc:
                self.message_user(request, f"“{segment}”: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"“{segment}”: {total:,} members ({segment.count_seconds:.2f} s).",
                                  messages.SUCCESS)

    @admin.action(description="Refresh membership snapshot of selected segments", permissions=["change"])
    def refresh_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        for segment in queryset:
            if not segment.track_membership:
                self.message_user(request, f"“{segment}” does not keep a snapshot; turn on “track membership”.",
                                  messages.WARNING)
                continue
            refresh = actions.refresh_membership(segment)
            self.message_user(request, f"“{segment}”: {refresh.members:,} members, {refresh.entered:,} entered, "
                                       f"{refresh.left:,} left ({refresh.seconds:.1f} s).", messages.SUCCESS)

    @admin.action(description="Export members of the selected segment as CSV", permissions=["export"])
    def export_members(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Choose one segment to export.", messages.WARNING)
            return None
        return self.members_csv(request, queryset.get())

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("subscribers.export_subscriber")

    @admin.action(description="Add members of selected segments to a topic", permissions=["change"])
    def add_members_to_topic(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if "apply" in request.POST:
            form = AddToTopicForm(request.POST)
            if form.is_valid():
                topic = form.cleaned_data["topic"]
                for segment in queryset:
                    added, skipped = preference_actions.add_to_topic(
                        actions.members(segment).iterator(chunk_size=2000), topic=topic,
                        evidence=admin_evidence(request, f"added by staff from segment “{segment}”"),
                    )
                    self.message_user(request, f"“{segment}”: added {added:,} people to “{topic}”; skipped "
                                               f"{skipped:,} who opted out of it or cannot receive marketing mail.",
                                      messages.SUCCESS)
                return None
        else:
            form = AddToTopicForm()
        return render(request, "admin/add_to_topic.html", {
            **self.admin_site.each_context(request), "title": "Add segment members to a topic",
            "heading": f"Add the members of {', '.join(str(s) for s in queryset)} to a topic",
            "who_note": "Members are the people who match the rules right now.", "action": "add_members_to_topic",
            "changelist_url": reverse("admin:campaigns_segment_changelist"), "form": form, "queryset": queryset,
            "opts": self.model._meta, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        })

    # Extra screens for the builder.
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("builder/catalogue/", wrap(self.catalogue_view), name="campaigns_segment_catalogue"),
            path("builder/preview/", wrap(self.preview_view), name="campaigns_segment_preview"),
            path("builder/suggest/", wrap(self.suggest_view), name="campaigns_segment_suggest"),
            path("<int:pk>/members.csv", wrap(self.members_csv_view), name="campaigns_segment_members_csv"),
        ] + super().get_urls()

    def catalogue_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse({
            "fields": catalogue(actions.build_context()),
            "topics": list(Topic.objects.values_list("pk", "name")),
            "segments": list(Segment.objects.values_list("pk", "name")),
            "presets": {"EU": list(EU), "EEA": list(EEA)},
            "can_explain": request.user.has_perm("campaigns.explain_segment"),
        })

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        if request.method != "POST":
            return JsonResponse({"errors": ["Send the rules with POST."]}, status=405)
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            body = json.loads(request.body or b"{}")
            rules = body["rules"]
            segment_id = int(body["segment_id"]) if body.get("segment_id") else None
        except (ValueError, KeyError, TypeError):
            return JsonResponse({"errors": ["The preview needs the rules as JSON."]}, status=400)
        preview = actions.preview_segment(rules, segment_id=segment_id,
                                          explain=request.user.has_perm("campaigns.explain_segment"))
        return JsonResponse(preview.as_dict())

    def suggest_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        kind, text = request.GET.get("kind", ""), request.GET.get("q", "").strip()
        return JsonResponse({"results": suggestions(kind, text, event=request.GET.get("event", ""))})

    def members_csv_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self.members_csv(request, get_object_or_404(Segment, pk=pk))

    def members_csv(self, request: HttpRequest, segment: Segment) -> HttpResponse:
        """Stream the members as CSV (the subscriber export's columns, formula-escaped); needs the export permission."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        resource = SubscriberExportResource()
        people = actions.members(segment).prefetch_related("topic_subscriptions__topic").order_by("pk")

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def rows() -> Any:
            yield "\ufeff" + writer.writerow(resource.get_export_headers())
            for person in people.iterator(chunk_size=2000):
                yield writer.writerow(resource.export_resource(person))

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        slug = "".join(c if c.isalnum() else "-" for c in segment.name.lower()).strip("-") or "segment"
        response["Content-Disposition"] = f'attachment; filename="segment-{slug}-{timezone.now():%Y%m%d}.csv"'
        return response

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().change_view(request, object_id, form_url, extra)


def suggestions(kind: str, text: str, *, event: str = "", limit: int = 20) -> list[list[str]]:
    """Return [value, label] pairs for the builder's autocompletes (event names, categories, products…)."""
    text_lower = text.lower()
    if kind == "event":
        names = [n for n in event_names() if text_lower in n.lower()]
        return [[n, n] for n in names[:limit]]
    if kind == "category":
        rows = (Product.objects.exclude(category="").filter(category__icontains=text).order_by("category")
                .values_list("category", flat=True).distinct()[:limit])
        return [[c, c] for c in rows]
    if kind == "product":
        rows = Product.objects.filter(name__icontains=text) | Product.objects.filter(product_id__icontains=text)
        return [[p, f"{n or p} ({p})"] for p, n in rows.order_by("name").values_list("product_id", "name")[:limit]]
    if kind == "sku":
        rows = (Product.objects.exclude(sku="").filter(sku__icontains=text).order_by("sku")
                .values_list("sku", "name")[:limit])
        return [[s, f"{s} — {n}" if n else s] for s, n in rows]
    if kind == "property":
        keys: set[str] = set()
        for properties in (Event.objects.filter(name=event).order_by("-occurred_at")
                           .values_list("properties", flat=True)[:200]):
            if isinstance(properties, dict):
                keys.update(properties)
        return [[k, k] for k in sorted(keys) if text_lower in k.lower()][:limit]
    if kind == "message":
        from campaigns.models import MessageStats

        rows = (MessageStats.objects.exclude(message_key__startswith="unmatched:")
                .filter(message_key__icontains=text).order_by("-updated_at").values_list("message_key", flat=True))
        return [[m, m] for m in rows[:limit]]
    return []


def event_names() -> list[str]:
    """Return the distinct event names, cached for a few minutes (a loose index scan on PostgreSQL)."""
    names = cache.get("segments:event-names")
    if names is None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Walks the (name, occurred_at) index one name at a time instead of reading every event.
                cursor.execute(
                    "WITH RECURSIVE t(name) AS (SELECT min(name) FROM subscribers_event UNION ALL "
                    "SELECT (SELECT min(name) FROM subscribers_event WHERE name > t.name) FROM t "
                    "WHERE t.name IS NOT NULL) SELECT name FROM t WHERE name IS NOT NULL LIMIT 500")
                names = [r[0] for r in cursor.fetchall()]
        else:
            names = list(Event.objects.order_by("name").values_list("name", flat=True).distinct()[:500])
        cache.set("segments:event-names", names, 300)
    return names

