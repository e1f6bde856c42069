"""Admin screens for topics."""

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from preferences.models import Topic


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "subscriber_count", "default_opt_in", "is_active", "position")
    list_editable = ("position",)
    list_filter = ("is_active", "default_opt_in")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            _subscribers=Count("subscriptions", filter=Q(subscriptions__subscribed=True))
        )

    @admin.display(description="subscribers", ordering="_subscribers")
    def subscriber_count(self, obj: Any) -> int:
        return obj._subscribers
