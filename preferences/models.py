"""Store what people want: topics and each person's topic subscriptions."""

from django.db import models
from django.utils import timezone


class Topic(models.Model):
    """A kind of mail a person can choose to receive (newsletter, offers, product news...)."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, help_text="Shown on the preference center.")
    default_opt_in = models.BooleanField(
        default=False, help_text="New subscribers who give general consent get this topic unless they opt out."
    )
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on the preference center.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class TopicSubscription(models.Model):
    """The current choice of one person for one topic; its history is in the consent ledger.

    An explicit opt-out is kept as ``subscribed=False`` so that defaults and
    imports never add the topic back.
    """

    subscriber = models.ForeignKey(
        "subscribers.Subscriber", on_delete=models.CASCADE, related_name="topic_subscriptions"
    )
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    subscribed = models.BooleanField(default=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "topic"], name="topic_subscription_unique")
        ]
        indexes = [models.Index(fields=["topic", "subscribed"], name="topic_subscription_members")]

    def __str__(self) -> str:
        state = "subscribed to" if self.subscribed else "opted out of"
        return f"{self.subscriber_id} {state} {self.topic}"
