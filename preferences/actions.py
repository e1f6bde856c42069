"""Change what people want: topic subscriptions and unsubscribes, each written to the ledger."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from preferences.models import Topic, TopicSubscription
from subscribers.actions import ConsentEvidence, change_status, record_consent
from subscribers.models import ConsentPurpose, Subscriber, SubscriberStatus


@transaction.atomic
def set_topic_subscription(
    subscriber: Subscriber, *, topic: Topic, subscribed: bool, evidence: ConsentEvidence
) -> TopicSubscription:
    """Subscribe a person to a topic or opt them out, recording it in the consent ledger."""
    current = TopicSubscription.objects.select_for_update().filter(subscriber=subscriber, topic=topic).first()
    if current is not None and current.subscribed == subscribed:
        return current
    if current is None:
        current = TopicSubscription(subscriber=subscriber, topic=topic)
    current.subscribed = subscribed
    current.changed_at = timezone.now()
    current.save()
    record_consent(subscriber, purpose=ConsentPurpose.TOPIC, topic_id=topic.pk, granted=subscribed, evidence=evidence)
    return current


def add_to_topic(subscribers: Iterable[Subscriber], *, topic: Topic, evidence: ConsentEvidence) -> tuple[int, int]:
    """Subscribe many people to a topic; returns (added, skipped).

    Skipped are people who cannot receive marketing mail (unsubscribed,
    bounced, complained, erased) and people who opted out of this topic:
    staff cannot override a person's own choice.
    """
    added = skipped = 0
    for subscriber in subscribers:
        existing = TopicSubscription.objects.filter(subscriber=subscriber, topic=topic).first()
        blocked = subscriber.status not in {SubscriberStatus.SUBSCRIBED, SubscriberStatus.PENDING}
        if blocked or (existing is not None and not existing.subscribed):
            skipped += 1
            continue
        if existing is None:
            set_topic_subscription(subscriber, topic=topic, subscribed=True, evidence=evidence)
            added += 1
    return added, skipped


@transaction.atomic
def unsubscribe(subscriber: Subscriber, *, evidence: ConsentEvidence) -> Subscriber:
    """Stop all marketing mail to a person and record the withdrawal."""
    if subscriber.status in {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.ERASED}:
        return subscriber
    return change_status(subscriber, status=SubscriberStatus.UNSUBSCRIBED, evidence=evidence)
