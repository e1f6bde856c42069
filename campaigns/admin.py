"""Admin screens for what we send; for now the locally captured mail."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from campaigns.models import CapturedEmail


@admin.register(CapturedEmail)
class CapturedEmailAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
