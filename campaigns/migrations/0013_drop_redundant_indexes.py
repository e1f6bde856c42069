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


def _like_index(apps, schema_editor):
    delivery = apps.get_model("campaigns", "Delivery")
    field = delivery._meta.get_field("esp_message_id")
    return delivery, field, schema_editor._create_index_name(delivery._meta.db_table, [field.column], suffix="_like")


def drop_like_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(_like_index(apps, schema_editor)[2])}")


def create_like_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        model, field, _ = _like_index(apps, schema_editor)
        schema_editor.execute(schema_editor._create_like_index_sql(model, field))


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0012_prebuilt_journeys'),
        ('subscribers', '0008_drop_redundant_indexes'),
    ]

    operations = [
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
        migrations.RunPython(drop_like_index, create_like_index, elidable=True),
    ]
