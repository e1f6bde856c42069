from django.db import migrations


def create(apps, schema_editor):
    from campaigns.journeys.prebuilt import create_prebuilt_journeys

    create_prebuilt_journeys(apps.get_model("campaigns", "Journey"), apps.get_model("campaigns", "JourneyStep"),
                             apps.get_model("campaigns", "Campaign"), apps.get_model("campaigns", "Variant"),
                             apps.get_model("campaigns", "Segment"))


class Migration(migrations.Migration):
    # 0004 made the prebuilt segments (Win-back starts on "Lapsed customers"), 0006 the default layout.
    dependencies = [("campaigns", "0004_prebuilt_segments"), ("campaigns", "0006_starter_content"),
                    ("campaigns", "0011_journey_email")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
