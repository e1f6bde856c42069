"""Create the Marketing manager, Marketer and Analyst groups (safe to re-run)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_staff_groups(apps, schema_editor):
    from subscribers.roles import sync_staff_groups

    # Permissions are normally created after all migrations; create them now
    # so the groups can hold them on a brand-new database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_staff_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("subscribers", "0001_initial"),
        ("preferences", "0002_topic_subscription_links"),
        ("campaigns", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_staff_groups, migrations.RunPython.noop)]
