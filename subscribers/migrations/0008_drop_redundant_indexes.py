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

APP = "subscribers"
FK_INDEXES = (('consentrecord', 'subscriber'),)
LIKE_INDEXED = (('subscriber', 'email_key'), ('subscriber', 'external_id'), ('subscriber', 'status'))


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
        ("subscribers", "0007_consent_method_automation"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="consentrecord",
                    name="subscriber",
                    field=models.ForeignKey(
                        db_index=False, on_delete=models.deletion.CASCADE, related_name="consent_records",
                        to="subscribers.subscriber",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes, elidable=True)],
        ),
    ]
