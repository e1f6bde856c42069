from django.db import migrations


def create(apps, schema_editor):
    from campaigns.content.starter import create_starter_content

    create_starter_content(apps.get_model("campaigns", "EmailLayout"), apps.get_model("campaigns", "ContentBlock"))


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0005_campaigns_content")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
