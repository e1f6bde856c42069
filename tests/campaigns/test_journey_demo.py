"""Demo journeys: the prebuilt journeys turned on for demo data, with a replayed history."""

from __future__ import annotations

from django.core import mail
from django.core.management import call_command

from campaigns.journeys.models import Enrollment, Journey, JourneyStatus
from campaigns.models import Delivery, DeliveryStatus


def test_demo_journeys_turn_on_the_prebuilt_ones_and_replay_real_sends(db, settings):
    settings.QUIET_HOURS = "21-8"
    call_command("seed_demo", "--subscribers", "300", "--seed", "3", verbosity=0)
    call_command("demo_journeys", "--days", "3", verbosity=0)
    prebuilt = Journey.objects.filter(prebuilt_key__isnull=False)
    assert set(prebuilt.values_list("status", flat=True)) == {JourneyStatus.ACTIVE}
    assert all(j.topic_id for j in prebuilt)
    assert Enrollment.objects.exists()
    sent = Delivery.objects.filter(message_key__startswith="journey:", status__in=[
        DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.OPENED, DeliveryStatus.CLICKED])
    assert sent.count() == len(mail.outbox) > 0
    assert Delivery.objects.filter(message_key__startswith="journey:", first_opened_at__isnull=False).exists()
    # Every email went out in the person's daytime (the gate's quiet hours held during the replay).
    for delivery in sent.select_related("subscriber")[:50]:
        from campaigns.sending.policy import end_of_quiet_hours

        assert end_of_quiet_hours(delivery.sent_at, delivery.subscriber.timezone) is None
    before = Enrollment.objects.count()
    call_command("demo_journeys", verbosity=0)
    assert Enrollment.objects.count() == before
