"""Describe the subscriber export (django-import-export); cells are formula-escaped by settings."""

from typing import Any

from import_export import fields, resources

from marketing.spreadsheets import escape_formula
from subscribers.models import Subscriber


class SubscriberExportResource(resources.ModelResource):
    country = fields.Field(attribute="country__code", column_name="country")
    topics = fields.Field(column_name="topics")

    class Meta:
        model = Subscriber
        fields = (
            "email", "first_name", "last_name", "phone", "language", "country", "region", "city", "timezone",
            "birth_date", "gender", "company", "job_title", "industry", "source", "external_id", "tags",
            "attributes", "status", "created_at", "confirmed_at", "topics",
        )
        export_order = fields

    def export_field(self, field: fields.Field, instance: Subscriber, **kwargs: Any) -> Any:
        return escape_formula(super().export_field(field, instance, **kwargs))

    def dehydrate_tags(self, subscriber: Subscriber) -> str:
        return ", ".join(subscriber.tags or [])

    def dehydrate_topics(self, subscriber: Subscriber) -> str:
        return ", ".join(
            ts.topic.slug for ts in subscriber.topic_subscriptions.all() if ts.subscribed
        )

    def filter_export(self, queryset, **kwargs):  # type: ignore[no-untyped-def]
        return queryset.prefetch_related("topic_subscriptions__topic")
