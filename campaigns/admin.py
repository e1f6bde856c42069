"""Admin screens for what we send: deliveries and their events, per-message totals, captured mail.

Deliveries, events and totals are facts reported by the ESP or our tracking:
the admin shows them and changes none of them.
"""

from typing import Any

from django.contrib import admin
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


@admin.register(MessageStats)
class MessageStatsAdmin(ReadOnlyAdmin):
    list_display = ("message_key", "sent", "delivered", "delivery_rate", "unique_opens", "human_opens", "opens",
                    "open_rate", "unique_clicks", "human_clicks", "click_rate", "bounces", "soft_bounces",
                    "complaints", "unsubscribes", "failed", "updated_at")
    search_fields = ("message_key",)
    fields = ("message_key", *STATS_FIELDS, "updated_at")
    readonly_fields = fields

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
