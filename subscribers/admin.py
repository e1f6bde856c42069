"""Admin screens for people: subscribers, attributes, consent ledger, CSV imports."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.dateformat import format as date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django_countries.filters import CountryFilter
from import_export.admin import ExportActionMixin
from import_export.formats.base_formats import CSV

from marketing.admin import ReadOnlyAdmin, ReadOnlyInline
from preferences import actions as preference_actions
from preferences.models import Topic, TopicSubscription
from subscribers import actions
from subscribers.importing.columns import target_label
from subscribers.models import (
    AttributeDefinition,
    ConsentMethod,
    ConsentRecord,
    Event,
    ImportJob,
    ImportMode,
    Order,
    OrderItem,
    PrivacyRequest,
    Product,
    Subscriber,
    SubscriberStatus,
    SuppressedAddress,
    WriteKey,
)
from subscribers.resources import SubscriberExportResource

STATUS_COLOURS = {
    SubscriberStatus.CONTACT: "#6e7781",
    SubscriberStatus.PENDING: "#8a6d00",
    SubscriberStatus.SUBSCRIBED: "#1a7f37",
    SubscriberStatus.UNSUBSCRIBED: "#57606a",
    SubscriberStatus.BOUNCED: "#b35900",
    SubscriberStatus.COMPLAINED: "#cf222e",
    SubscriberStatus.ERASED: "#6e7781",
}


def status_badge(status: str, label: str) -> str:
    return format_html(
        '<span class="mk-badge" style="background:{}">{}</span>', STATUS_COLOURS.get(status, "#57606a"), label
    )


def admin_evidence(request: HttpRequest, note: str = "") -> actions.ConsentEvidence:
    return actions.ConsentEvidence(
        method=ConsentMethod.ADMIN,
        notice_version=note,
        ip_address=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        actor_id=request.user.pk,
    )


class TopicListFilter(admin.SimpleListFilter):
    title = "topic"
    parameter_name = "topic"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(t.pk), t.name) for t in Topic.objects.all()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(topic_subscriptions__topic_id=self.value(), topic_subscriptions__subscribed=True)
        return queryset


class SourceListFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        sources = (
            Subscriber.objects.exclude(source="").order_by().values_list("source", flat=True).distinct()[:50]
        )
        return [(s, s) for s in sorted(sources)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(source=self.value()) if self.value() else queryset


class ConsentRecordInline(ReadOnlyInline):
    model = ConsentRecord
    verbose_name = "consent entry"
    verbose_name_plural = "Consent history (append-only ledger)"
    fields = ("occurred_at", "purpose_display", "granted_display", "method", "notice_version", "ip_address", "actor")
    ordering = ("-occurred_at", "-id")

    @admin.display(description="purpose")
    def purpose_display(self, obj: ConsentRecord) -> str:
        return obj.purpose_label

    @admin.display(description="consent")
    def granted_display(self, obj: ConsentRecord) -> str:
        return status_badge("subscribed" if obj.granted else "complained", "granted" if obj.granted else "withdrawn")


class TopicSubscriptionInline(ReadOnlyInline):
    model = TopicSubscription
    verbose_name_plural = "Topics"
    fields = ("topic", "subscribed", "changed_at")


class PrivacyRequestInline(ReadOnlyInline):
    model = PrivacyRequest
    verbose_name_plural = "Privacy requests (exports and erasure)"
    fields = ("occurred_at", "kind", "method", "actor")


class AddToTopicForm(forms.Form):
    topic = forms.ModelChoiceField(queryset=Topic.objects.filter(is_active=True), empty_label=None)


class TagsField(forms.CharField):
    """Edit a list of tags as one comma-separated line."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(value)
        if isinstance(value, str) and value.startswith("["):
            import json

            try:
                return ", ".join(json.loads(value))
            except ValueError:
                return value
        return value or ""

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        return list(dict.fromkeys(t.strip()[:100] for t in text.split(",") if t.strip()))


class SubscriberChangeForm(forms.ModelForm):
    tags = TagsField(required=False, help_text="Comma-separated, e.g. vip, runner.",
                     widget=forms.TextInput(attrs={"class": "vLargeTextField", "style": "height:auto"}))

    class Meta:
        model = Subscriber
        fields = "__all__"


class SubscriberAddForm(SubscriberChangeForm):
    status = forms.ChoiceField(
        choices=[(SubscriberStatus.PENDING, "Pending confirmation"), (SubscriberStatus.SUBSCRIBED, "Subscribed")],
        help_text="Choose Subscribed only if the person agreed to receive marketing mail.",
    )
    consent_note = forms.CharField(
        required=False,
        max_length=200,
        help_text="How the person agreed (e.g. “signed up at the Riga fair, paper form 2026-03”); kept in the ledger.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("status") == SubscriberStatus.SUBSCRIBED and not data.get("consent_note"):
            self.add_error("consent_note", "Say how the person agreed; it is recorded in the consent ledger.")
        return data


@admin.register(Subscriber)
class SubscriberAdmin(ExportActionMixin, admin.ModelAdmin):
    form = SubscriberChangeForm
    resource_classes = [SubscriberExportResource]
    formats = [CSV]
    list_display = ("email", "full_name", "status_display", "country", "language", "source", "created")
    list_display_links = ("email",)
    list_filter = ("status", ("country", CountryFilter), "language", TopicListFilter, SourceListFilter, "created_at")
    search_fields = ("email", "first_name", "last_name")
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = ("status_display", "created_at", "updated_at", "confirmed_at", "status_changed_at",
                       "attributes_display", "consent_summary", "order_count", "total_spent", "average_order_value",
                       "first_order_at", "last_order_at", "last_seen_at", "last_open_at", "last_click_at",
                       "emails_received", "lifecycle_display", "segments_display", "journeys_display")
    inlines = [TopicSubscriptionInline, ConsentRecordInline, PrivacyRequestInline]
    actions = ["add_to_topic", "unsubscribe_selected", "erase_selected"]
    change_form_template = "admin/subscribers/subscriber/change_form.html"
    change_list_template = "admin/subscribers/subscriber/change_list.html"  # adds "Import CSV"

    def get_fieldsets(self, request: HttpRequest, obj: Subscriber | None = None) -> Any:
        status_fields = ("status", "consent_note") if obj is None else ("status_display", "consent_summary")
        return [
            (None, {"fields": ("email", ("first_name", "last_name"), "phone")}),
            ("Status and consent", {"fields": status_fields}),
            ("Location and language", {"fields": (("country", "region", "city"), ("language", "timezone"))}),
            ("About", {"fields": (("birth_date", "gender"), ("company", "job_title", "industry"))}),
            ("Origin", {"fields": ("source", "external_id", "tags")}),
            ("Custom attributes", {"fields": ("attributes_display", "attributes")}),
            ("Lifecycle, segments and journeys", {"fields": ("lifecycle_display", "segments_display",
                                                             "journeys_display")}),
            ("Activity", {"fields": (("order_count", "total_spent", "average_order_value"),
                                     ("first_order_at", "last_order_at"), ("last_seen_at", "last_open_at",
                                                                           "last_click_at"), "emails_received")}),
            ("Dates", {"fields": (("created_at", "updated_at"), ("confirmed_at", "status_changed_at"))}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Subscriber | None = None) -> Any:
        return self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = SubscriberAddForm if obj is None else SubscriberChangeForm
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="name")
    def full_name(self, obj: Subscriber) -> str:
        return obj.full_name

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Subscriber) -> str:
        """The day only (“2 Dec 2026”): the list stays within the page; the time is on the person's page."""
        return date_format(localtime(obj.created_at), "j M Y")

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Subscriber) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="custom attribute values")
    def attributes_display(self, obj: Subscriber) -> str:
        if not obj.attributes:
            return "—"
        labels = dict(AttributeDefinition.objects.values_list("key", "label"))
        return format_html(
            '<table class="mk-kv">{}</table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>",
                             ((labels.get(k, k), v) for k, v in sorted(obj.attributes.items()))),
        )

    @admin.display(description="lifecycle stage")
    def lifecycle_display(self, obj: Subscriber) -> str:
        from campaigns.api import lifecycle_stage

        if obj.pk is None:
            return "—"
        stage, label = lifecycle_stage(subscriber_id=obj.pk)
        return format_html('<span class="mk-stage mk-stage-{}">{}</span>', stage, label)

    @admin.display(description="segment membership")
    def segments_display(self, obj: Subscriber) -> str:
        from campaigns.api import segment_history

        if obj.pk is None:
            return "—"
        rows = segment_history(subscriber_id=obj.pk)
        if not rows:
            return "In no tracked segment, and no entries or exits recorded."
        lines = []
        for row in rows:
            if "member_since" in row:
                lines.append((row["segment"], "member since", row["member_since"].strftime("%Y-%m-%d %H:%M")))
            else:
                lines.append((row["segment"], "entered" if row["entered"] else "left",
                              row["at"].strftime("%Y-%m-%d %H:%M")))
        return format_html('<table class="mk-kv">{}</table>',
                           format_html_join("", "<tr><th>{}</th><td>{} {}</td></tr>", lines))

    @admin.display(description="journeys")
    def journeys_display(self, obj: Subscriber) -> str:
        from campaigns.api import journey_history

        rows = journey_history(subscriber_id=obj.pk) if obj.pk else []
        if not rows:
            return "Not in any journey yet."
        lines = []
        for row in rows:
            when = f"entered {row['entered_at']:%Y-%m-%d %H:%M}"
            if row["finished_at"]:
                detail = f"{row['state_label'].lower()} {row['finished_at']:%Y-%m-%d %H:%M}: {row['note']}"
            elif row["next_run_at"]:
                detail = f"at step “{row['step'] or 'start'}”, next {row['next_run_at']:%Y-%m-%d %H:%M} UTC"
            else:
                detail = f"at step “{row['step']}”"
            trip = f" (trip {row['entry']})" if row["entry"] > 1 else ""
            lines.append((f"{row['journey']}{trip}", when, detail))
        return format_html('<table class="mk-kv">{}</table>',
                           format_html_join("", "<tr><th>{}</th><td>{}; {}</td></tr>", lines))

    @admin.display(description="current consent")
    def consent_summary(self, obj: Subscriber) -> str:
        from subscribers.api import current_consent

        states = current_consent(subscriber_id=obj.pk)
        if not states:
            return "No consent recorded."
        topics = dict(Topic.objects.values_list("pk", "name"))
        rows = []
        for (purpose, topic_id), state in sorted(states.items(), key=lambda i: (i[0][0], i[0][1] or 0)):
            if topic_id:
                label = f"Topic: {topics.get(topic_id, topic_id)}"
            else:
                label = ConsentRecord(purpose=purpose).get_purpose_display()
            rows.append((label, status_badge("subscribed" if state.granted else "complained",
                                             "granted" if state.granted else "withdrawn"),
                         state.occurred_at.strftime("%Y-%m-%d %H:%M"), ConsentMethod(state.method).label))
        return format_html('<table class="mk-kv">{}</table>',
                           format_html_join("", "<tr><th>{}</th><td>{} since {} ({})</td></tr>", rows))

    def save_model(self, request: HttpRequest, obj: Subscriber, form: Any, change: bool) -> None:
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name in actions.PROFILE_FIELDS}
            fresh = Subscriber.objects.get(pk=obj.pk)
            actions.update_subscriber_profile(fresh, changes=changes)
            return
        profile = {name: form.cleaned_data[name] for name in form.cleaned_data
                   if name in actions.PROFILE_FIELDS and name != "email"}
        status = form.cleaned_data["status"]
        evidence = admin_evidence(request, form.cleaned_data.get("consent_note", ""))
        created = actions.create_subscriber(
            email=form.cleaned_data["email"], profile=profile, status=status,
            evidence=evidence if status == SubscriberStatus.SUBSCRIBED else None,
        )
        obj.pk = created.pk
        obj._state.adding = False

    def get_inlines(self, request: HttpRequest, obj: Subscriber | None) -> Any:
        # Topics and consent are shown read-only; they change only through actions.
        return self.inlines if obj is not None else []

    @admin.action(description="Add selected to a topic", permissions=["change"])
    def add_to_topic(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if "apply" in request.POST:
            form = AddToTopicForm(request.POST)
            if form.is_valid():
                topic = form.cleaned_data["topic"]
                added, skipped = preference_actions.add_to_topic(
                    queryset.iterator(), topic=topic, evidence=admin_evidence(request, "added by staff")
                )
                self.message_user(request, f"Added {added} people to “{topic}”.", messages.SUCCESS)
                if skipped:
                    self.message_user(
                        request,
                        f"Skipped {skipped}: they opted out of this topic, or cannot receive marketing mail.",
                        messages.WARNING,
                    )
                return None
        else:
            form = AddToTopicForm()
        count = queryset.count()
        return render(request, "admin/add_to_topic.html", {
            **self.admin_site.each_context(request),
            "title": "Add to a topic",
            "heading": f"Add {count} selected subscriber{'s' if count != 1 else ''} to a topic",
            "who_note": "",
            "action": "add_to_topic",
            "changelist_url": reverse("admin:subscribers_subscriber_changelist"),
            "form": form,
            "queryset": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        })

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/personal-data/", wrap(self.personal_data_view), name="subscribers_subscriber_personal_data"),
        ] + super().get_urls()

    def personal_data_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Download everything held about one person as JSON (needs the export permission)."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        subscriber = get_object_or_404(Subscriber, pk=pk)
        data = actions.export_subscriber_data(subscriber, evidence=admin_evidence(request))
        response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
        response["Content-Disposition"] = f'attachment; filename="personal-data-{pk}.json"'
        return response

    @admin.action(description="Erase personal data of selected people (cannot be undone)", permissions=["delete"])
    def erase_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if "apply" in request.POST:
            erased = 0
            for subscriber in queryset.exclude(status=SubscriberStatus.ERASED).iterator():
                actions.erase_subscriber(subscriber, evidence=admin_evidence(request))
                erased += 1
            who = "1 person. Their address is" if erased == 1 else f"{erased} people. Their addresses are"
            self.message_user(request, f"Erased the personal data of {who} kept only as a hash, so they cannot be "
                                       "added again by mistake.", messages.SUCCESS)
            return None
        return render(request, "admin/subscribers/subscriber/erase_confirm.html", {
            **self.admin_site.each_context(request),
            "title": "Erase personal data",
            "queryset": queryset,
            "count": queryset.count(),
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        })

    @admin.action(description="Unsubscribe selected from all marketing mail", permissions=["change"])
    def unsubscribe_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for subscriber in queryset.iterator():
            before = subscriber.status
            preference_actions.unsubscribe(subscriber, evidence=admin_evidence(request, "unsubscribed by staff"))
            done += before != subscriber.status
        self.message_user(request, f"Unsubscribed {done} people; the consent ledger records who did it.",
                          messages.SUCCESS)


@admin.register(AttributeDefinition)
class AttributeDefinitionAdmin(admin.ModelAdmin):
    list_display = ("label", "key", "type", "sensitive")
    list_filter = ("type", "sensitive")
    search_fields = ("key", "label")
    prepopulated_fields = {"key": ("label",)}


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "subscriber", "purpose", "topic", "granted", "method", "notice_version", "actor")
    list_filter = ("purpose", "granted", "method", "topic", "occurred_at")
    search_fields = ("subscriber__email", "notice_version")
    list_select_related = ("subscriber", "topic", "actor")
    date_hierarchy = "occurred_at"
    show_full_result_count = False


@admin.register(SuppressedAddress)
class SuppressedAddressAdmin(ReadOnlyAdmin):
    list_display = ("email_hash", "reason", "created_at")
    list_filter = ("reason",)
    search_fields = ("email_hash",)


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="An export from Mailchimp, Brevo, Klaviyo, a shop or a spreadsheet; "
                  "comma, semicolon or tab separated.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,.tsv,text/csv"}),
    )
    topic = forms.ModelChoiceField(
        queryset=Topic.objects.filter(is_active=True), required=False,
        help_text="Subscribe everyone in the file to this topic (people who opted out of it are left out).",
    )
    consent_notice = forms.CharField(
        max_length=200, required=False,
        help_text="The consent notice these people agreed to, e.g. “Newsletter signup v3, 2025”. Kept in the ledger.",
    )
    mode = forms.ChoiceField(choices=ImportMode.choices, initial=ImportMode.FILL_BLANKS, widget=forms.RadioSelect,
                             label="Existing subscribers")
    skip_bad_rows = forms.BooleanField(
        required=False, label="Skip bad rows",
        help_text="Import the good rows even when some rows have errors. Off: one bad row stops the whole import.",
    )


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("original_name", "status_display", "total_rows", "new_count", "updated_count", "skipped_count",
                    "error_count", "created_by", "created_at")
    list_filter = ("status", "created_at")
    search_fields = ("original_name",)
    list_select_related = ("created_by", "topic")

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: ImportJob) -> str:
        colour = {"done": "subscribed", "failed": "complained", "checked": "pending"}.get(obj.status, "unsubscribed")
        return status_badge(colour, obj.get_status_display())

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:job_id>/progress/", wrap(self.progress_view), name="subscribers_importjob_progress"),
            path("<int:job_id>/confirm/", wrap(self.confirm_view), name="subscribers_importjob_confirm"),
            path("<int:job_id>/cancel/", wrap(self.cancel_view), name="subscribers_importjob_cancel"),
            path("<int:job_id>/report/", wrap(self.report_view), name="subscribers_importjob_report"),
        ] + super().get_urls()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    job = actions.start_import(
                        uploaded=form.cleaned_data["file"],
                        created_by_id=request.user.pk,
                        topic_id=form.cleaned_data["topic"].pk if form.cleaned_data["topic"] else None,
                        consent_notice=form.cleaned_data["consent_notice"],
                        mode=form.cleaned_data["mode"],
                        skip_bad_rows=form.cleaned_data["skip_bad_rows"],
                    )
                except ValidationError as exc:
                    form.add_error("file", exc)
                else:
                    self.message_user(request, "The file is uploaded and being checked. Nothing is imported until "
                                               "you confirm.", messages.INFO)
                    return HttpResponseRedirect(reverse("admin:subscribers_importjob_change", args=[job.pk]))
        else:
            form = ImportUploadForm()
        return TemplateResponse(request, "admin/subscribers/importjob/upload.html", {
            **self.admin_site.each_context(request),
            "title": "Import subscribers from CSV",
            "form": form,
            "opts": self.model._meta,
            "aliases_help": True,
        })

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not str(object_id).isdecimal():  # a mistyped address such as 5/progress/
            raise Http404("No such import.")
        job = get_object_or_404(ImportJob.objects.select_related("topic", "created_by"), pk=int(object_id))
        summary = job.summary or {}
        attribute_labels = dict(AttributeDefinition.objects.values_list("key", "label"))
        return TemplateResponse(request, "admin/subscribers/importjob/detail.html", {
            **self.admin_site.each_context(request),
            "title": f"Import of {job.original_name}",
            "job": job,
            "opts": self.model._meta,
            "summary": summary,
            "columns": [(header, target_label(target, attribute_labels))
                        for header, target in (summary.get("mapped_columns") or {}).items()],
            "can_act": self.has_add_permission(request),
            "progress": _progress_payload(job),
        })

    def progress_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob, pk=job_id)
        return JsonResponse(_progress_payload(job))

    def confirm_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        return self._act(request, job_id, actions.confirm_import, "The import has started.")

    def cancel_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        return self._act(request, job_id, actions.cancel_import, "The import was cancelled; nothing was imported.")

    def _act(self, request: HttpRequest, job_id: int, action: Any, success: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        if not self.has_add_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob, pk=job_id)
        try:
            action(job)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:
            self.message_user(request, success, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:subscribers_importjob_change", args=[job_id]))

    def report_view(self, request: HttpRequest, job_id: int) -> FileResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob, pk=job_id)
        if not job.report:
            raise Http404("This import has no report yet.")
        return FileResponse(job.report.open("rb"), as_attachment=True, filename=job.report.name.rsplit("/", 1)[-1],
                            content_type="text/csv")


def _progress_payload(job: ImportJob) -> dict[str, Any]:
    from django.core.cache import cache

    live = cache.get(actions.progress_key(job.pk)) or {}
    running = job.is_running
    return {
        "status": job.status,
        "status_label": job.get_status_display(),
        "running": running,
        "phase": live.get("phase", "waiting for a worker") if running else "",
        "percent": live.get("percent", 0) if running else 100,
    }


class WriteKeyForm(forms.ModelForm):
    class Meta:
        model = WriteKey
        fields = ["name"]


@admin.register(WriteKey)
class WriteKeyAdmin(admin.ModelAdmin):
    form = WriteKeyForm
    list_display = ("name", "key_prefix", "active", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "key_prefix")
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("name", "key_prefix", "created_at", "created_by", "last_used_at", "revoked_at") if obj else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_readonly_fields(request, obj) if obj else ("name",)

    @admin.display(description="active", boolean=True)
    def active(self, obj: WriteKey) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: WriteKey, form: Any, change: bool) -> None:
        if change:
            return
        created, key = actions.create_write_key(name=form.cleaned_data["name"], created_by_id=request.user.pk)
        obj.pk = created.pk
        obj._state.adding = False
        self.message_user(
            request,
            format_html("Write key for “{}”: <code class=\"mk-secret\">{}</code> — copy it now; it is not shown "
                        "again. Send it as the HTTP Basic user name to /v1/track, /v1/identify, /v1/batch…",
                        created.name, key),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        for write_key in queryset:
            actions.revoke_write_key(write_key)
        self.message_user(request, f"Revoked {queryset.count()} keys; calls with them are refused from now on.",
                          messages.SUCCESS)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("name", "subscriber", "anonymous_id", "occurred_at", "source")
    list_filter = ("name", "occurred_at", "source")
    search_fields = ("name", "subscriber__email", "anonymous_id", "message_id")
    list_select_related = ("subscriber", "source")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    raw_id_fields = ("subscriber",)


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ("name", "product_id", "sku", "category", "price", "currency", "updated_at")
    list_filter = ("category",)
    search_fields = ("name", "product_id", "sku", "category")


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = ("name", "sku", "category", "price", "quantity", "product")

@admin.register(Order)


class OrderAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "subscriber", "total", "refunded", "currency", "status", "occurred_at")
    list_filter = ("status", "currency", "occurred_at")
    search_fields = ("order_id", "subscriber__email")
    list_select_related = ("subscriber",)
    date_hierarchy = "occurred_at"
    inlines = [OrderItemInline]
    raw_id_fields = ("subscriber",)
