"""A campaign sent through real Celery workers on PostgreSQL and Redis to a mock ESP that fails on purpose."""

import datetime as dt
import time

import pytest

from campaigns.content.models import Campaign, CampaignSegment, CampaignStatus, Variant
from campaigns.models import Delivery, DeliveryStatus
from campaigns.segments.models import Segment
from campaigns.sending import actions
from campaigns.sending.models import Recipient, RecipientStatus
from campaigns.sending.tasks import dispatch_campaigns_task
from preferences.models import Topic, TopicSubscription
from subscribers.models import ConsentRecord, Subscriber
from tests.mock_esp import MockESP, anymail_settings

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_campaign_through_real_workers_with_transient_and_permanent_esp_failures(worker, settings):
    topic = Topic.objects.create(name="News", slug="news")
    people = []
    for i in range(12):
        person = Subscriber(email=f"reader{i}@example.com", first_name=f"Reader{i}", status="subscribed",
                            timezone="UTC")
        person.save()
        ConsentRecord.objects.create(subscriber=person, purpose="email_marketing", granted=True, method="form",
                                     occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        TopicSubscription.objects.create(subscriber=person, topic=topic)
        people.append(person)
    unconsented = Subscriber(email="nobody@example.com", status="subscribed")
    unconsented.save()
    everyone = Segment.objects.create(name="Everyone", rules={"match": "all", "rules": []})
    campaign = Campaign.objects.create(name="Real stack", topic=topic, from_email="news@example.com")
    CampaignSegment.objects.create(campaign=campaign, segment=everyone)
    Variant.objects.create(campaign=campaign, label="A", subject='Hello {{ first_name|default:"reader" }}',
                           # The links are in the content: transactional tests flush the starter layout.
                           html='<p>Hi {{ first_name|default:"there" }}</p>'
                                '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
                                '<a href="{{ preferences_url }}">Preferences</a>')
    settings.QUIET_HOURS = ""
    settings.OWN_TRACKING = False
    settings.SEND_CHUNK_SIZE = 4
    settings.SEND_RETRY_SECONDS = 0
    settings.SEND_PAUSE_AFTER_FAILED_CHUNKS = 100
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    refused = people[3].email
    with MockESP(fail_first=3, refuse={refused}) as esp:
        settings.ANYMAIL = anymail_settings(esp.url)
        actions.schedule_campaign(campaign)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            campaign.refresh_from_db()
            if campaign.status == CampaignStatus.SENT:
                break
            dispatch_campaigns_task.delay()  # what Beat does every minute
            time.sleep(1)
        assert campaign.status == CampaignStatus.SENT, campaign.status_note
        assert esp.failed_calls == 3
        assert esp.duplicates == 0
        accepted = {int(k) for k in esp.accepted}
    sent = Delivery.objects.filter(status=DeliveryStatus.SENT)
    assert set(sent.values_list("pk", flat=True)) == accepted and sent.count() == 11
    assert sent.exclude(esp_message_id="").count() == 11 and set(sent.values_list("esp_name", flat=True)) == {
        "postmark"}
    assert Delivery.objects.get(subscriber__email=refused).status == DeliveryStatus.REJECTED
    statuses = dict(Recipient.objects.values_list("subscriber__email", "status"))
    assert statuses[refused] == RecipientStatus.FAILED
    assert statuses["nobody@example.com"] == RecipientStatus.SKIPPED
    assert sum(1 for s in statuses.values() if s == RecipientStatus.SENT) == 11
