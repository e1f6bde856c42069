from django.db import migrations


def create(apps, schema_editor):
    from campaigns.segments.prebuilt import create_prebuilt_segments

    create_prebuilt_segments(apps.get_model("campaigns", "Segment"))


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0003_segments")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
