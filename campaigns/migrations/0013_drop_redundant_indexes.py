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

from marketing.schema import drop_indexes

APP = "campaigns"
FK_INDEXES = (
    ('delivery', 'subscriber'), ('recipient', 'campaign'), ('segmentmembership', 'segment'),
    ('segmentmembership', 'subscriber'),
)
LIKE_INDEXED = (('delivery', 'esp_message_id'),)


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
            database_operations=[drop_indexes(APP, FK_INDEXES, LIKE_INDEXED)],
        ),
    ]
