"""Admin screens for topics."""

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from marketing.admin import ReadOnlyAdmin
from preferences.models import PreferenceChange, Signup, SubscriberPreferences, Topic
from subscribers.models import ConsentMethod


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


@admin.register(SubscriberPreferences)
class SubscriberPreferencesAdmin(ReadOnlyAdmin):
    list_display = ("subscriber", "frequency", "paused_until", "updated_at")
    list_filter = ("frequency",)
    list_select_related = ("subscriber",)
    search_fields = ("subscriber__email_key",)
    exclude = ("token",)  # the secret behind the person's links is never shown
    show_full_result_count = False


class MethodFilter(admin.SimpleListFilter):
    """Filter by method, named as people say it."""

    title = "method"
    parameter_name = "method"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return ConsentMethod.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(method=self.value()) if self.value() else queryset


@admin.register(PreferenceChange)
class PreferenceChangeAdmin(ReadOnlyAdmin):
    """Frequency, pause, language and personalization changes; topic and consent changes are in the consent ledger."""

    list_display = ("subscriber", "field", "old_value", "new_value", "how", "occurred_at")
    list_filter = ("field", MethodFilter)
    list_select_related = ("subscriber",)
    search_fields = ("subscriber__email_key",)
    show_full_result_count = False

    @admin.display(description="method", ordering="method")
    def how(self, obj: PreferenceChange) -> str:
        """The method as people say it (“Preference center”), not its stored value."""
        try:
            return str(ConsentMethod(obj.method).label)
        except ValueError:
            return obj.method


@admin.register(Signup)
class SignupAdmin(ReadOnlyAdmin):
    list_display = ("email", "created_at", "email_sent_at", "confirmed_at", "expires_at")
    list_filter = ("confirmed_at",)
    search_fields = ("email_key",)
    exclude = ("token",)
    date_hierarchy = "created_at"
