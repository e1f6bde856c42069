"""Drop the single-column indexes of TopicSubscription's foreign keys.

topic_subscription_unique (subscriber, topic) starts with the subscriber and
topic_subscription_members (topic, subscribed) with the topic; both serve
every lookup the single-column indexes did.
"""

from django.db import migrations, models

from marketing.schema import drop_indexes

APP = "preferences"
FK_INDEXES = (('topicsubscription', 'subscriber'), ('topicsubscription', 'topic'))
LIKE_INDEXED = ()


class Migration(migrations.Migration):

    dependencies = [
        ("preferences", "0003_preferences_tokens_history_and_signups"),
        ("subscribers", "0008_drop_redundant_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="topicsubscription",
                    name="subscriber",
                    field=models.ForeignKey(
                        db_index=False, on_delete=models.deletion.CASCADE, related_name="topic_subscriptions",
                        to="subscribers.subscriber",
                    ),
                ),
                migrations.AlterField(
                    model_name="topicsubscription",
                    name="topic",
                    field=models.ForeignKey(
                        db_index=False, on_delete=models.deletion.CASCADE, related_name="subscriptions",
                        to="preferences.topic",
                    ),
                ),
            ],
            database_operations=[drop_indexes(APP, FK_INDEXES, LIKE_INDEXED)],
        ),
    ]
