"""Admin screens for what we send: deliveries and their events, per-message totals, captured mail.

Deliveries, events and totals are facts reported by the ESP or our tracking:
the admin shows them and changes none of them.
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.utils.html import format_html

from campaigns.models import STATS_FIELDS, CapturedEmail, Delivery, DeliveryEvent, MessageStats
from marketing.admin import ReadOnlyAdmin, ReadOnlyInline


@admin.register(CapturedEmail)
class CapturedEmailAdmin(ReadOnlyAdmin):
    list_display = ("subject", "to", "from_email", "created_at")
    search_fields = ("subject", "to")
    date_hierarchy = "created_at"
    fields = ("subject", "from_email", "to", "created_at", "preview", "text_body", "headers")
    readonly_fields = fields

    @admin.display(description="HTML")
    def preview(self, obj: CapturedEmail) -> str:
        if not obj.html_body:
            return "—"
        # srcdoc in a sandboxed frame: the mail's HTML cannot run script or reach the admin.
        return format_html(
            '<iframe sandbox srcdoc="{}" style="width:100%;min-height:480px;border:1px solid #ddd;'
            'background:#fff"></iframe>',
            obj.html_body,
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Captured mail is a local outbox, not a record: clearing it is fine.
        return admin.ModelAdmin.has_delete_permission(self, request, obj)


class DeliveryEventInline(ReadOnlyInline):
    model = DeliveryEvent
    fields = ("occurred_at", "kind", "is_machine", "source", "url", "user_agent", "ip_address", "detail")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("subscriber", "message_key", "status", "esp_name", "sent_at", "delivered_at", "first_opened_at",
                    "first_clicked_at", "open_count", "click_count")
    list_filter = ("status", "esp_name", "bounce_type")
    search_fields = ("subscriber__email", "=message_key", "=esp_message_id")
    list_select_related = ("subscriber",)
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("subscriber", "message_key", "status", "reason", "why")}),
        ("ESP", {"fields": ("esp_name", "esp_message_id", "bounce_type")}),
        ("Times", {"fields": ("created_at", "sent_at", "delivered_at", "first_opened_at", "first_clicked_at")}),
        ("Engagement", {"fields": ("open_count", "machine_open_count", "click_count", "machine_click_count")}),
    )
    readonly_fields = [f for _, options in fieldsets for f in options["fields"]]
    inlines = [DeliveryEventInline]


def message_names(keys: list[str]) -> dict[str, str]:
    """Name each message key as people know it, with three queries for any number of keys.

    ``campaign:<id>:variant:<id>`` → “Winter sale, variant A”;
    ``journey:<id>:step:<key>:<trip>`` → “Welcome series, step welcome”.
    A key whose campaign or journey is gone keeps its raw form.
    """
    from campaigns.content.models import Campaign, Variant
    from campaigns.journeys.models import Journey

    parsed = {key: key.split(":") for key in keys}
    ids = {kind: {int(p[1]) for p in parsed.values() if p[0] == kind and len(p) > 3 and p[1].isdecimal()}
           for kind in ("campaign", "journey")}
    variant_ids = {int(p[3]) for p in parsed.values() if p[0] == "campaign" and len(p) > 3 and p[3].isdecimal()}
    campaigns = dict(Campaign.objects.filter(pk__in=ids["campaign"]).values_list("pk", "name"))
    variants = dict(Variant.objects.filter(pk__in=variant_ids).values_list("pk", "label"))
    journeys = dict(Journey.objects.filter(pk__in=ids["journey"]).values_list("pk", "name"))
    names = {}
    for key, p in parsed.items():
        try:
            if p[0] == "campaign" and p[2] == "variant":
                names[key] = f"{campaigns[int(p[1])]}, variant {variants[int(p[3])]}"
            elif p[0] == "journey" and p[2] == "step":
                names[key] = f"{journeys[int(p[1])]}, step {p[3]}"
        except (IndexError, KeyError, ValueError):
            pass
    return names


class _NamedMessages(ChangeList):
    """The stats list, with each row's message named in one bulk lookup for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        names = message_names([row.message_key for row in self.result_list])
        for row in self.result_list:
            row.message_name = names.get(row.message_key, "")


@admin.register(MessageStats)
class MessageStatsAdmin(ReadOnlyAdmin):
    list_display = ("message", "sent", "delivered", "delivery_rate", "unique_opens", "human_opens", "opens",
                    "open_rate", "unique_clicks", "human_clicks", "click_rate", "bounces", "soft_bounces",
                    "complaints", "unsubscribes", "failed", "updated_at")
    search_fields = ("message_key",)
    fields = ("message_key", *STATS_FIELDS, "updated_at")
    readonly_fields = fields

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _NamedMessages

    @admin.display(description="message", ordering="message_key")
    def message(self, obj: MessageStats) -> str:
        name = getattr(obj, "message_name", "")
        return format_html("{}<br><small>{}</small>", name, obj.message_key) if name else obj.message_key

    @admin.display(description="delivered %")
    def delivery_rate(self, obj: MessageStats) -> str:
        return _percent(obj.delivered, obj.sent)

    @admin.display(description="open %")
    def open_rate(self, obj: MessageStats) -> str:
        return _percent(obj.unique_opens, obj.delivered)

    @admin.display(description="click %")
    def click_rate(self, obj: MessageStats) -> str:
        return _percent(obj.unique_clicks, obj.delivered)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


from campaigns.content import admin as content_admin  # noqa: E402, F401 - registers the content screens
from campaigns.journeys import admin as journeys_admin  # noqa: E402, F401 - registers the journey screens
from campaigns.segments import admin as segments_admin  # noqa: E402, F401 - registers the segment screens
