"""Admin screens for content: campaigns with audience and variants, translations, layouts, blocks, preview."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AdminIntegerFieldWidget
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns.content import actions
from campaigns.content.models import (
    Campaign,
    CampaignKind,
    CampaignSegment,
    CampaignStatus,
    ContentBlock,
    EmailLayout,
    Variant,
    VariantTranslation,
)
from campaigns.content.rendering import CONTENT_SLOT, ContentError, check_syntax, compile_message, insert_blocks
from marketing.admin import ReadOnlyInline
from subscribers.models import Subscriber

PART_FIELDS = {"Subject": "subject", "Preheader": "preheader", "HTML": "html", "Text": "text"}
CODE = forms.Textarea(attrs={"rows": 14, "class": "vLargeTextField mk-code", "spellcheck": "false"})


class ContentForm(forms.ModelForm):
    """Reject content that does not compile, naming the field, the line and the problem."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            compile_message(subject=data.get("subject", ""), preheader=data.get("preheader", ""),
                            html=data.get("html", ""), text=data.get("text", ""), blocks=actions.content_blocks())
        except ContentError as exc:
            line = f"Line {exc.line}: " if exc.line else ""
            self.add_error(PART_FIELDS.get(exc.part, "html"), f"{line}{exc.message}")
        return data


class VariantForm(ContentForm):
    class Meta:
        model = Variant
        fields = ("label", "subject", "preheader", "from_name", "html", "text")
        widgets = {"html": CODE, "text": forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField mk-code"})}


class TranslationForm(ContentForm):
    class Meta:
        model = VariantTranslation
        fields = ("language", "subject", "preheader", "html", "text")
        widgets = {"html": CODE, "text": forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField mk-code"})}


class CampaignSegmentInline(admin.TabularInline):
    model = CampaignSegment
    extra = 1
    fields = ("segment", "exclude")
    autocomplete_fields = ("segment",)
    verbose_name_plural = "Audience (people in any included segment, minus those in an excluded one)"


class VariantInline(admin.StackedInline):
    model = Variant
    form = VariantForm
    extra = 0
    min_num = 1
    show_change_link = True
    verbose_name_plural = "Message (one variant, or several for an A/B test)"


class CampaignForm(forms.ModelForm):
    """Refuse what Schedule would refuse about the numbers, and a send time that has passed, when saving."""

    # 0 is refused rather than read as "no limit": an empty box says that, as the help text tells.
    throttle_per_minute = forms.IntegerField(
        required=False, min_value=1, widget=AdminIntegerFieldWidget,
        help_text=Campaign._meta.get_field("throttle_per_minute").help_text,
        error_messages={"min_value": "Enter 1 or more messages a minute, or leave the box empty for no limit."})

    class Meta:
        model = Campaign
        fields = ("name", "topic", "from_name", "from_email", "reply_to", "layout", "sensitive_justification",
                  "schedule_mode", "send_at", "send_on", "local_time", "throttle_per_minute", "test_percent",
                  "winner_metric", "test_hours", "winner_auto", "holdout_percent", "conversion_window_days")
        widgets = {"sensitive_justification": forms.Textarea(attrs={"rows": 2})}

    def clean(self) -> dict[str, Any]:
        from campaigns.sending import actions as sending

        data = super().clean()
        passed = sending.passed_send_time(data.get("schedule_mode", ""), data.get("send_at"), now=timezone.now())
        if passed:
            self.add_error("send_at", passed)
        if data.get("test_percent") is not None and data.get("holdout_percent") is not None:
            for problem in sending.share_problems(data["test_percent"], data["holdout_percent"]):
                self.add_error(None, problem)
        return data


SENDING_FIELDS = ("status", "status_note", "progress_display", "results_display", "started_at", "test_ends_at",
                  "winner", "finished_at")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ("name", "status", "topic", "audience_summary", "variant_count", "updated_at")
    list_filter = ("status", "topic")
    search_fields = ("name",)
    inlines = [CampaignSegmentInline, VariantInline]
    change_form_template = "admin/campaigns/campaign/change_form.html"

    def get_queryset(self, request: HttpRequest) -> Any:
        # Journey emails have their own screen (Journeys → Journey emails).
        return super().get_queryset(request).filter(kind=CampaignKind.CAMPAIGN)

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        fieldsets: list[Any] = [
            (None, {"fields": ("name", "status", "status_note", "topic")}),
            ("Sender", {"fields": (("from_name", "from_email"), "reply_to")}),
            ("Content", {"fields": ("layout", "sensitive_justification")}),
            ("When to send", {"fields": ("schedule_mode", "send_at", ("send_on", "local_time"),
                                         "throttle_per_minute")}),
            ("A/B test and hold-out", {"fields": (("test_percent", "test_hours"), ("winner_metric", "winner_auto"),
                                                  "holdout_percent", "conversion_window_days"),
                                       "classes": ("collapse",)}),
        ]
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            fieldsets.insert(1, ("Progress and results", {"fields": (
                "progress_display", "results_display", ("started_at", "test_ends_at", "winner", "finished_at"))}))
        return fieldsets

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> HttpResponse:
        # get_object answers None for an id that is no number (a mistyped URL such as 16/progress/), and
        # the change view then says the campaign does not exist, as Django's admin does.
        campaign = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if campaign is not None and campaign.status != CampaignStatus.DRAFT:
            # A scheduled or sent campaign changes only through its controls.
            extra.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False,
                         show_delete=False)
        return super().change_view(request, object_id, form_url, extra)

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            # Once scheduled, the campaign is a record of what was sent: only its controls change it.
            return [*CampaignForm.Meta.fields, *SENDING_FIELDS]
        return SENDING_FIELDS

    def get_inlines(self, request: HttpRequest, obj: Campaign | None) -> Any:
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            return [ReadOnlyAudienceInline, ReadOnlyVariantInline]
        return self.inlines

    @admin.display(description="progress")
    def progress_display(self, obj: Campaign) -> str:
        from django.template.loader import render_to_string

        from campaigns.sending.results import progress

        return render_to_string("admin/campaigns/campaign/progress.html", {"campaign": obj, "p": progress(obj)})

    @admin.display(description="results")
    def results_display(self, obj: Campaign) -> str:
        from django.template.loader import render_to_string

        from campaigns.sending.results import holdout_result, segment_results, variant_results

        return render_to_string("admin/campaigns/campaign/results.html", {
            "campaign": obj, "variants": variant_results(obj), "segments": segment_results(obj),
            "holdout": holdout_result(obj), "can_choose": obj.status == CampaignStatus.TESTING})

    @admin.display(description="audience")
    def audience_summary(self, obj: Campaign) -> str:
        uses = list(obj.audience.select_related("segment"))
        included = [u.segment.name for u in uses if not u.exclude]
        excluded = [u.segment.name for u in uses if u.exclude]
        text = ", ".join(included) or "—"
        return f"{text} (without {', '.join(excluded)})" if excluded else text

    @admin.display(description="variants")
    def variant_count(self, obj: Campaign) -> int:
        return obj.variants.count()

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/preview/", wrap(self.preview_view), name="campaigns_campaign_preview"),
            path("<int:pk>/control/<str:command>/", wrap(self.control_view), name="campaigns_campaign_control"),
            path("<int:pk>/progress.json", wrap(self.progress_json), name="campaigns_campaign_progress"),
        ] + super().get_urls()

    def control_view(self, request: HttpRequest, pk: int, command: str) -> HttpResponse:
        """Schedule, pause, resume or cancel a campaign, or choose its A/B winner (POST only)."""
        from campaigns.sending import actions as sending

        campaign = get_object_or_404(Campaign, pk=pk)
        if request.method != "POST":
            return HttpResponse(status=405)
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        if command == "schedule":
            try:
                sending.schedule_campaign(campaign)
            except sending.CampaignNotReady as exc:
                for problem in exc.problems:
                    self.message_user(request, problem, messages.ERROR)
                return back
            campaign.refresh_from_db()
            started = campaign.status != CampaignStatus.SCHEDULED
            self.message_user(request, "Scheduled and sending; this page shows the progress." if started else
                              "Scheduled. Sending starts at its time; this page shows the progress.", messages.SUCCESS)
        elif command == "pause":
            done = sending.pause_campaign(campaign)
            self.message_user(request, "Paused: no new messages go out until you resume." if done
                              else "Only a scheduled or sending campaign can be paused.",
                              messages.SUCCESS if done else messages.WARNING)
        elif command == "resume":
            done = sending.resume_campaign(campaign)
            self.message_user(request, "Resumed where it stopped." if done else "Only a paused campaign resumes.",
                              messages.SUCCESS if done else messages.WARNING)
        elif command == "cancel":
            left = sending.cancel_campaign(campaign)
            self.message_user(request, f"Cancelled; {left:,} people who had not been sent it will not get it.",
                              messages.SUCCESS)
        elif command == "winner":
            variant_id = request.POST.get("variant", "")
            if not variant_id.isdecimal():
                raise Http404("No such variant.")
            variant = get_object_or_404(Variant, pk=int(variant_id), campaign=campaign)
            sending.choose_winner(campaign, variant=variant)
            self.message_user(request, f"Variant {variant.label} goes to the rest of the audience now.",
                              messages.SUCCESS)
        else:
            return HttpResponse(status=404)
        return back

    def progress_json(self, request: HttpRequest, pk: int) -> HttpResponse:
        from django.http import JsonResponse

        from campaigns.sending.results import progress

        if not self.has_view_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=pk)
        data = progress(campaign)
        return JsonResponse({**data, "status": campaign.status, "status_label": campaign.get_status_display(),
                             "reasons": [list(r) for r in data["reasons"]],
                             "deferred": [list(r) for r in data["deferred"]]})

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Check the campaign, preview a variant as a chosen subscriber or with no data, and send a test."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=pk)
        variants = list(campaign.variants.all())
        if not variants:
            self.message_user(request, "Write the message first.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        params = request.POST if request.method == "POST" else request.GET
        variant = next((v for v in variants if str(v.pk) == params.get("variant")), variants[0])
        language = params.get("language", "")
        subscriber = _find_subscriber(params.get("subscriber", ""))
        if request.method == "POST":
            if not self.has_change_permission(request, campaign):
                raise PermissionDenied
            addresses = [a.strip() for a in params.get("to", "").replace(";", ",").split(",") if a.strip()]
            try:
                sent = actions.send_test(variant, to=addresses, subscriber_id=subscriber.pk if subscriber else None,
                                         language=language)
            except ContentError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Sent a test to {sent} address{'es' if sent != 1 else ''}.",
                                  messages.SUCCESS)
            from urllib.parse import urlencode

            # Post/redirect/get: reloading the preview never sends the test again.
            query = urlencode({"variant": variant.pk, "language": language, "subscriber": params.get("subscriber", ""),
                               "to": params.get("to", "")})
            return HttpResponseRedirect(f"{reverse('admin:campaigns_campaign_preview', args=[pk])}?{query}")
        problems = actions.check_campaign(campaign)
        try:
            preview = actions.preview_variant(variant, subscriber_id=subscriber.pk if subscriber else None,
                                              language=language)
            error = ""
        except ContentError as exc:
            preview, error = None, str(exc)
        return TemplateResponse(request, "admin/campaigns/campaign/preview.html", {
            **self.admin_site.each_context(request),
            "title": f"Check and preview: {campaign}",
            "opts": self.model._meta, "original": campaign, "campaign": campaign, "variants": variants,
            "variant": variant, "languages": actions.content_languages(variant), "language": language,
            "subscriber": subscriber, "subscriber_query": params.get("subscriber", ""),
            "preview": preview, "error": error,
            "errors": [p for p in problems if p.level == "error"],
            "warnings": [p for p in problems if p.level == "warning"],
            "test_to": params.get("to") or request.user.email,
            "can_send_test": self.has_change_permission(request, campaign),
        })


def _find_subscriber(query: str) -> Subscriber | None:
    query = query.strip()
    if not query:
        return None
    if query.isdecimal():  # isdigit() would take "²", which int() refuses
        return Subscriber.objects.filter(pk=int(query)).first()
    return Subscriber.objects.filter(email_key=query.lower()).first()


class ReadOnlyAudienceInline(ReadOnlyInline):
    model = CampaignSegment
    fields = ("segment", "exclude")
    verbose_name_plural = "Audience"


class ReadOnlyVariantInline(ReadOnlyInline):
    model = Variant
    fields = ("label", "subject", "preheader", "from_name")
    show_change_link = False
    verbose_name_plural = "Variants (as sent)"


class TranslationInline(admin.StackedInline):
    model = VariantTranslation
    form = TranslationForm
    extra = 0
    verbose_name_plural = "Other languages (people get the version in their language, else the one above)"


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    form = VariantForm
    list_display = ("__str__", "subject", "languages")
    search_fields = ("campaign__name", "subject")
    inlines = [TranslationInline]

    @admin.display(description="languages")
    def languages(self, obj: Variant) -> str:
        return ", ".join(obj.translations.values_list("language", flat=True)) or "—"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return False  # edited from its campaign

    def save_model(self, request: HttpRequest, obj: Variant, form: Any, change: bool) -> None:
        actions.save_variant(obj)


def _compiles(html: str, part: str, *, source: str | None = None) -> str:
    """Return ``html`` if it (or ``source`` made from it) compiles, else raise a form error with line and problem."""
    try:
        check_syntax(html if source is None else source, part)
    except ContentError as exc:
        raise forms.ValidationError(str(exc)) from None
    return html


class LayoutForm(forms.ModelForm):
    class Meta:
        model = EmailLayout
        fields = ("name", "html", "is_default")
        widgets = {"html": forms.Textarea(attrs={"rows": 24, "class": "vLargeTextField mk-code"})}

    def clean_html(self) -> str:
        html = self.cleaned_data["html"]
        if CONTENT_SLOT not in html:
            raise forms.ValidationError("Put {{ content }} where the message goes.")
        return _compiles(html, "Layout", source=insert_blocks(html.replace(CONTENT_SLOT, ""),
                                                              actions.content_blocks(), part="Layout"))


@admin.register(EmailLayout)
class EmailLayoutAdmin(admin.ModelAdmin):
    form = LayoutForm
    list_display = ("name", "is_default", "updated_at")


class BlockForm(forms.ModelForm):
    class Meta:
        model = ContentBlock
        fields = ("key", "name", "html")
        widgets = {"html": CODE}

    def clean_html(self) -> str:
        return _compiles(self.cleaned_data["html"], "Block")


@admin.register(ContentBlock)
class ContentBlockAdmin(admin.ModelAdmin):
    form = BlockForm
    list_display = ("name", "key", "usage", "updated_at")
    prepopulated_fields = {"key": ("name",)}
    search_fields = ("name", "key")

    @admin.display(description="insert with")
    def usage(self, obj: ContentBlock) -> str:
        return format_html("<code>{{% block_content \"{}\" %}}</code>", obj.key)
