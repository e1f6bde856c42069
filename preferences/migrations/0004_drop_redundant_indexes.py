"""Drop the single-column indexes of TopicSubscription's foreign keys.

topic_subscription_unique (subscriber, topic) starts with the subscriber and
topic_subscription_members (topic, subscribed) with the topic; both serve
every lookup the single-column indexes did.
"""

from django.db import migrations, models

APP = "preferences"
FK_INDEXES = (('topicsubscription', 'subscriber'), ('topicsubscription', 'topic'))
LIKE_INDEXED = ()


def _fk_indexes(apps, schema_editor):
    for model_name, field_name in FK_INDEXES:
        model = apps.get_model(APP, model_name)
        field = model._meta.get_field(field_name)
        yield model, field, schema_editor._create_index_name(model._meta.db_table, [field.column])


def _like_indexes(apps, schema_editor):
    for model_name, field_name in LIKE_INDEXED:
        model = apps.get_model(APP, model_name)
        field = model._meta.get_field(field_name)
        yield model, field, schema_editor._create_index_name(model._meta.db_table, [field.column], suffix="_like")


def drop_indexes(apps, schema_editor):
    # Only the indexes: Django's AlterField would also drop each foreign key and add it back, checking every
    # row of the table while holding its lock.
    indexes = list(_fk_indexes(apps, schema_editor))
    if schema_editor.connection.vendor == "postgresql":
        indexes += _like_indexes(apps, schema_editor)
    for _model, _field, index in indexes:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(index)}")


def create_indexes(apps, schema_editor):
    for model, field, _index in _fk_indexes(apps, schema_editor):
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))
    if schema_editor.connection.vendor == "postgresql":
        for model, field, _index in _like_indexes(apps, schema_editor):
            schema_editor.execute(schema_editor._create_like_index_sql(model, field))


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
            database_operations=[migrations.RunPython(drop_indexes, create_indexes, elidable=True)],
        ),
    ]
