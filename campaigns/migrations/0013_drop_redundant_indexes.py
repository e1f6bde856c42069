"""Drop indexes of the sending tables that other indexes already provide.

Every recipient is written three times and every delivery twice while a
campaign sends, and each write touches every index of the row's table.

- Delivery.subscriber: delivery_subscriber_recent (subscriber, -created_at)
  starts with it.
- Recipient.campaign: recipient_once, recipient_due and recipient_next start
  with it.
- SegmentMembership.segment: segment_member_once (segment, subscriber)
  starts with it; SegmentMembership.subscriber had two identical indexes,
  segment_member_person stays.
- On PostgreSQL, the ``varchar_pattern_ops`` ("_like") index beside
  Delivery.esp_message_id's: webhooks match ESP message ids exactly.
"""

from django.db import migrations, models

APP = "campaigns"
FK_INDEXES = (
    ('delivery', 'subscriber'), ('recipient', 'campaign'), ('segmentmembership', 'segment'),
    ('segmentmembership', 'subscriber'),
)
LIKE_INDEXED = (('delivery', 'esp_message_id'),)


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
        ('campaigns', '0012_prebuilt_journeys'),
        ('subscribers', '0008_drop_redundant_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='delivery',
                    name='subscriber',
                    field=models.ForeignKey(
                        db_index=False, on_delete=models.CASCADE, related_name='deliveries',
                        to='subscribers.subscriber',
                    ),
                ),
                migrations.AlterField(
                    model_name='recipient',
                    name='campaign',
                    field=models.ForeignKey(
                        db_index=False, on_delete=models.CASCADE, related_name='recipients',
                        to='campaigns.campaign',
                    ),
                ),
                migrations.AlterField(
                    model_name='segmentmembership',
                    name='segment',
                    field=models.ForeignKey(
                        db_index=False, on_delete=models.CASCADE, related_name='memberships',
                        to='campaigns.segment',
                    ),
                ),
                migrations.AlterField(
                    model_name='segmentmembership',
                    name='subscriber',
                    field=models.ForeignKey(
                        db_index=False, on_delete=models.CASCADE, related_name='segment_memberships',
                        to='subscribers.subscriber',
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes, elidable=True)],
        ),
    ]
