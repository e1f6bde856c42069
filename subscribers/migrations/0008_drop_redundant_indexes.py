"""Drop indexes that other indexes already provide.

- ConsentRecord.subscriber: consent_latest (subscriber, purpose, -occurred_at)
  starts with the same column.
- On PostgreSQL, the ``varchar_pattern_ops`` ("_like") indexes Django adds
  beside the indexes of Subscriber.email_key, external_id and status. They
  serve only case-sensitive LIKE 'prefix%' lookups (``startswith``); the app
  matches these columns exactly or case-insensitively (``iexact``,
  ``icontains``, ``istartswith`` compare UPPER(column), which no plain index
  serves either). The plain and unique indexes stay.

Every index costs a write per imported row; the CSV import writes a million.
"""

from django.db import migrations, models

LIKE_INDEXED = ("email_key", "external_id", "status")


def _like_indexes(apps, schema_editor):
    subscriber = apps.get_model("subscribers", "Subscriber")
    table = subscriber._meta.db_table
    for name in LIKE_INDEXED:
        field = subscriber._meta.get_field(name)
        yield subscriber, field, schema_editor._create_index_name(table, [field.column], suffix="_like")


def drop_like_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _model, _field, index in _like_indexes(apps, schema_editor):
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(index)}")


def create_like_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for model, field, _index in _like_indexes(apps, schema_editor):
        schema_editor.execute(schema_editor._create_like_index_sql(model, field))


class Migration(migrations.Migration):

    dependencies = [
        ("subscribers", "0007_consent_method_automation"),
    ]

    operations = [
        migrations.AlterField(
            model_name="consentrecord",
            name="subscriber",
            field=models.ForeignKey(
                db_index=False, on_delete=models.deletion.CASCADE, related_name="consent_records",
                to="subscribers.subscriber",
            ),
        ),
        migrations.RunPython(drop_like_indexes, create_like_indexes, elidable=True),
    ]
