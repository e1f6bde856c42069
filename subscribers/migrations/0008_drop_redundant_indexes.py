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

from marketing.schema import drop_indexes

APP = "subscribers"
FK_INDEXES = (('consentrecord', 'subscriber'),)
LIKE_INDEXED = (('subscriber', 'email_key'), ('subscriber', 'external_id'), ('subscriber', 'status'))


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
            database_operations=[drop_indexes(APP, FK_INDEXES, LIKE_INDEXED)],
        ),
    ]
