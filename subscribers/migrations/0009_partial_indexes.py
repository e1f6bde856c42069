"""Make three indexes partial: most consent records name no topic and no staff user, and most people
have never ordered, so the CSV import stops writing about a million index entries per million rows.

Built so a big installation keeps working while it runs (``atomic = False``):
on PostgreSQL the new indexes are created CONCURRENTLY before the old ones
are dropped CONCURRENTLY, and the foreign keys are left alone (``AlterField``
with ``db_index=False`` would drop and re-add them, checking every row of the
consent ledger under lock).
"""

from django.conf import settings
from django.db import migrations, models

from marketing.schema import AddIndexConcurrently, RemoveIndexConcurrently, drop_indexes


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('preferences', '0004_drop_redundant_indexes'),
        ('subscribers', '0008_drop_redundant_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='consentrecord',
            index=models.Index(condition=models.Q(('topic__isnull', False)), fields=['topic'], name='consent_topic'),
        ),
        AddIndexConcurrently(
            model_name='consentrecord',
            index=models.Index(condition=models.Q(('actor__isnull', False)), fields=['actor'], name='consent_actor'),
        ),
        AddIndexConcurrently(
            model_name='subscriber',
            index=models.Index(condition=models.Q(('last_order_at__isnull', False)), fields=['last_order_at'],
                               name='subscriber_last_order_at'),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='consentrecord',
                    name='actor',
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=models.deletion.SET_NULL, related_name='+',
                                            to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='consentrecord',
                    name='topic',
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=models.deletion.PROTECT, to='preferences.topic'),
                ),
            ],
            database_operations=[
                drop_indexes('subscribers', (('consentrecord', 'actor'), ('consentrecord', 'topic')),
                             concurrently=True),
            ],
        ),
        RemoveIndexConcurrently(
            model_name='subscriber',
            name='subscriber_last_order',
        ),
    ]
