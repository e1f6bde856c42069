import datetime as dt

from campaigns import actions
from campaigns.models import EventKind
from campaigns.tracking import TrackingEvent

AT = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)


def test_delivery_list_filters_and_searches(admin_client, make_subscriber, make_delivery):
    make_delivery(make_subscriber(email="ann@example.com"), message_key="campaign:12:variant:2")
    make_delivery(make_subscriber(email="bob@example.com"), message_key="journey:3:step:5", esp_name="Postmark")
    page = admin_client.get("/admin/campaigns/delivery/", {"q": "ann@"}).content.decode()
    assert "campaign:12:variant:2" in page and "journey:3:step:5" not in page
    page = admin_client.get("/admin/campaigns/delivery/", {"esp_name": "Postmark"}).content.decode()
    assert "journey:3:step:5" in page and "campaign:12:variant:2" not in page
    page = admin_client.get("/admin/campaigns/delivery/", {"q": "journey:3:step:5"}).content.decode()
    assert "bob@example.com" in page
    assert admin_client.get("/admin/campaigns/delivery/", {"status__exact": "sent"}).status_code == 200


def test_delivery_page_is_read_only_and_shows_its_events(admin_client, make_delivery):
    delivery = make_delivery(why={"segment": "Bought shoes in 2025"})
    actions.record_tracking_events([TrackingEvent(kind=EventKind.CLICKED, occurred_at=AT, source="SendGrid",
                                                  delivery_id=delivery.pk, url="https://shop.example.com/shoes",
                                                  user_agent="Firefox")])
    response = admin_client.get(f"/admin/campaigns/delivery/{delivery.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "https://shop.example.com/shoes" in page and "Bought shoes in 2025" in page
    assert 'name="_save"' not in page
    assert admin_client.get("/admin/campaigns/delivery/add/").status_code == 403
    assert admin_client.post(f"/admin/campaigns/delivery/{delivery.pk}/change/", {"status": "bounced"}).status_code \
        == 403
    changelist = admin_client.get("/admin/campaigns/delivery/").content.decode()
    assert "delete_selected" not in changelist


def test_message_stats_list_shows_rates(admin_client, make_delivery):
    delivery = make_delivery(message_key="campaign:4")
    actions.record_tracking_events([
        TrackingEvent(kind=EventKind.DELIVERED, occurred_at=AT, source="SendGrid", delivery_id=delivery.pk),
        TrackingEvent(kind=EventKind.OPENED, occurred_at=AT + dt.timedelta(hours=1), source="SendGrid",
                      delivery_id=delivery.pk, user_agent="Firefox"),
    ])
    page = admin_client.get("/admin/campaigns/messagestats/").content.decode()
    assert "campaign:4" in page and "100.0%" in page
    assert admin_client.get("/admin/campaigns/messagestats/add/").status_code == 403


def test_message_stats_name_each_message(admin_client, make_delivery, db, django_assert_max_num_queries):
    from campaigns.admin import message_names
    from campaigns.content.models import Campaign, Variant
    from campaigns.journeys.models import Journey
    from campaigns.models import MessageStats

    campaign = Campaign.objects.create(name="Winter sale")
    variant = Variant.objects.create(campaign=campaign, label="B", subject="s", html="h")
    journey = Journey.objects.create(name="Test onboarding series")
    keys = [f"campaign:{campaign.pk}:variant:{variant.pk}", f"journey:{journey.pk}:step:welcome:1",
            "campaign:999:variant:1", "odd-key"]
    with django_assert_max_num_queries(3):
        names = message_names(keys)
    assert names == {keys[0]: "Winter sale, variant B", keys[1]: "Test onboarding series, step welcome"}
    for key in keys:
        MessageStats.objects.create(message_key=key, sent=1)
    page = admin_client.get("/admin/campaigns/messagestats/").content.decode()
    assert "Winter sale, variant B" in page and "Test onboarding series, step welcome" in page and "odd-key" in page
