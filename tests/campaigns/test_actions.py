import datetime as dt

import pytest
from django.db import connection

from campaigns import actions
from campaigns.api import message_stats
from campaigns.models import Delivery, DeliveryEvent, DeliveryStatus, EventKind, MessageStats
from campaigns.tracking import TrackingEvent
from subscribers.models import ConsentRecord, SubscriberStatus

from .conftest import SENT_AT

LATER = SENT_AT + dt.timedelta(minutes=1)
HUMAN_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def event(delivery, kind, *, at=None, **extra) -> TrackingEvent:
    return TrackingEvent(kind=kind, occurred_at=at or LATER, source="SendGrid", delivery_id=delivery.pk, **extra)


def reload(obj):
    obj.refresh_from_db()
    return obj


# --- sending -----------------------------------------------------------------


def test_create_delivery_is_one_per_message_and_person(make_subscriber):
    person = make_subscriber()
    first = actions.create_delivery(subscriber_id=person.pk, message_key="campaign:12:variant:2",
                                    why={"segment": "Bought shoes"})
    again = actions.create_delivery(subscriber_id=person.pk, message_key="campaign:12:variant:2", why={"other": 1})
    assert first.pk == again.pk and Delivery.objects.count() == 1
    assert again.why == {"segment": "Bought shoes"} and again.status == DeliveryStatus.QUEUED


def test_record_sent_counts_once_and_keeps_the_esp_message_id(make_delivery):
    delivery = make_delivery(sent_at=None)
    actions.record_sent(delivery_id=delivery.pk, esp_name="Postmark", esp_message_id="pm-1", sent_at=SENT_AT)
    actions.record_sent(delivery_id=delivery.pk, esp_name="Postmark", esp_message_id="pm-1")
    delivery = reload(delivery)
    assert (delivery.status, delivery.esp_name, delivery.esp_message_id, delivery.sent_at) == (
        "sent", "Postmark", "pm-1", SENT_AT)
    assert message_stats(message_key="campaign:1")["sent"] == 1


def test_skipped_and_failed_deliveries_keep_their_reason(make_delivery):
    skipped = make_delivery(sent_at=None, message_key="campaign:2")
    actions.record_skipped(delivery_id=skipped.pk, reason="quiet hours in Europe/Riga")
    assert (reload(skipped).status, skipped.reason) == ("skipped", "quiet hours in Europe/Riga")
    failed = make_delivery(sent_at=None, message_key="campaign:3")
    actions.record_send_failed(delivery_id=failed.pk, reason="ESP refused: invalid address", rejected=True)
    actions.record_send_failed(delivery_id=failed.pk, reason="ESP refused: invalid address", rejected=True)
    assert reload(failed).status == "rejected"
    assert message_stats(message_key="campaign:3")["failed"] == 1


# --- tracking ----------------------------------------------------------------


def test_delivered_counts_once_and_adds_to_emails_received(make_delivery):
    delivery = make_delivery()
    actions.record_tracking_events([event(delivery, EventKind.DELIVERED, esp_event_id="e1")])
    actions.record_tracking_events([event(delivery, EventKind.DELIVERED, esp_event_id="e2")])
    delivery = reload(delivery)
    assert (delivery.status, delivery.delivered_at) == ("delivered", LATER)
    assert message_stats(message_key="campaign:1")["delivered"] == 1
    assert reload(delivery.subscriber).emails_received == 1


def test_human_open_and_click_are_engagement(make_delivery):
    delivery = make_delivery()
    opened_at, clicked_at = LATER + dt.timedelta(hours=1), LATER + dt.timedelta(hours=2)
    result = actions.record_tracking_events([
        event(delivery, EventKind.DELIVERED, esp_event_id="d"),
        event(delivery, EventKind.OPENED, at=opened_at, esp_event_id="o", user_agent=HUMAN_UA,
              ip_address="203.0.113.9"),
        event(delivery, EventKind.CLICKED, at=clicked_at, esp_event_id="c", url="https://shop.example.com/sale",
              user_agent=HUMAN_UA),
    ])
    assert (result.recorded, result.duplicates, result.unmatched) == (3, 0, 0)
    delivery = reload(delivery)
    assert delivery.status == DeliveryStatus.CLICKED
    assert (delivery.first_opened_at, delivery.first_clicked_at) == (opened_at, clicked_at)
    assert (delivery.open_count, delivery.click_count, delivery.machine_open_count) == (1, 1, 0)
    person = reload(delivery.subscriber)
    assert (person.last_open_at, person.last_click_at) == (clicked_at, clicked_at)
    click = delivery.events.get(kind=EventKind.CLICKED)
    assert (click.url, click.user_agent, click.is_machine) == ("https://shop.example.com/sale", HUMAN_UA, False)
    assert delivery.events.get(kind=EventKind.OPENED).ip_address == "203.0.113.9"
    stats = message_stats(message_key="campaign:1")
    assert {k: stats[k] for k in ("opens", "human_opens", "unique_opens", "clicks", "human_clicks",
                                  "unique_clicks")} == dict.fromkeys(
        ("opens", "human_opens", "unique_opens", "clicks", "human_clicks", "unique_clicks"), 1)


@pytest.mark.parametrize(
    ("seconds_after_delivery", "user_agent", "hint"),
    [
        (1, HUMAN_UA, False),                                   # within TRACKING_MACHINE_SECONDS of delivery
        (600, "Mozilla/5.0", False),                            # Apple Mail Privacy Protection
        (600, "Mozilla/5.0 (compatible; BingPreview/1.0b)", False),  # link scanner
        (600, HUMAN_UA, True),                                  # the ESP says so (sg_machine_open, Mailgun bot)
    ],
)
def test_machine_opens_are_flagged_and_not_engagement(make_delivery, seconds_after_delivery, user_agent, hint):
    delivery = make_delivery()
    actions.record_tracking_events([event(delivery, EventKind.DELIVERED, at=LATER)])
    opened_at = LATER + dt.timedelta(seconds=seconds_after_delivery)
    actions.record_tracking_events([event(delivery, EventKind.OPENED, at=opened_at, user_agent=user_agent,
                                          machine_hint=hint)])
    delivery = reload(delivery)
    assert (delivery.status, delivery.first_opened_at) == ("delivered", None)
    assert (delivery.open_count, delivery.machine_open_count) == (1, 1)
    assert delivery.events.get(kind=EventKind.OPENED).is_machine is True
    assert reload(delivery.subscriber).last_open_at is None
    stats = message_stats(message_key="campaign:1")
    assert (stats["opens"], stats["human_opens"], stats["unique_opens"]) == (1, 0, 0)


def test_gmail_image_proxy_open_is_human(make_delivery):
    delivery = make_delivery()
    proxy = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    actions.record_tracking_events([event(delivery, EventKind.OPENED, user_agent=proxy)])
    assert reload(delivery).first_opened_at == LATER
    assert reload(delivery.subscriber).last_open_at == LATER


def test_machine_window_counts_from_sending_when_no_delivery_was_reported(make_delivery, settings):
    settings.TRACKING_MACHINE_SECONDS = 5
    delivery = make_delivery()
    actions.record_tracking_events([event(delivery, EventKind.OPENED, at=SENT_AT + dt.timedelta(seconds=4))])
    actions.record_tracking_events([event(delivery, EventKind.OPENED, at=SENT_AT + dt.timedelta(seconds=6))])
    assert list(reload(delivery).events.values_list("is_machine", flat=True)) == [True, False]


def test_machine_networks_setting(make_delivery, settings):
    settings.TRACKING_MACHINE_NETWORKS = ["198.51.100.0/24"]
    delivery = make_delivery()
    actions.record_tracking_events([event(delivery, EventKind.CLICKED, url="https://example.com/",
                                          ip_address="198.51.100.20", user_agent=HUMAN_UA)])
    delivery = reload(delivery)
    assert (delivery.click_count, delivery.machine_click_count, delivery.first_clicked_at) == (1, 1, None)
    assert reload(delivery.subscriber).last_click_at is None


def test_hard_bounce_suppresses_the_person_with_evidence(make_delivery):
    delivery = make_delivery()
    actions.record_tracking_events([event(delivery, EventKind.BOUNCED, detail="550 5.1.1 user unknown",
                                          bounce_type="hard")])
    delivery = reload(delivery)
    assert (delivery.status, delivery.bounce_type, delivery.reason) == ("bounced", "hard", "550 5.1.1 user unknown")
    person = reload(delivery.subscriber)
    assert person.status == SubscriberStatus.BOUNCED
    record = ConsentRecord.objects.get(subscriber=person)
    assert (record.granted, record.method, record.notice_version) == (False, "api", "SendGrid webhook: hard bounce")
    assert message_stats(message_key="campaign:1")["bounces"] == 1


def test_soft_bounce_does_not_suppress(make_delivery):
    delivery = make_delivery()
    actions.record_tracking_events([event(delivery, EventKind.SOFT_BOUNCED, detail="mailbox full",
                                          bounce_type="soft")])
    assert (reload(delivery).status, delivery.bounce_type) == ("soft_bounced", "soft")
    assert reload(delivery.subscriber).status == SubscriberStatus.SUBSCRIBED
    assert message_stats(message_key="campaign:1")["soft_bounces"] == 1


def test_complaint_suppresses_and_outranks_a_bounce_in_the_same_batch(make_delivery):
    delivery = make_delivery()
    actions.record_tracking_events([
        event(delivery, EventKind.BOUNCED, at=LATER, esp_event_id="b"),
        event(delivery, EventKind.COMPLAINED, at=LATER + dt.timedelta(hours=1), esp_event_id="c"),
    ])
    assert reload(delivery).status == DeliveryStatus.COMPLAINED
    assert reload(delivery.subscriber).status == SubscriberStatus.COMPLAINED
    stats = message_stats(message_key="campaign:1")
    assert (stats["bounces"], stats["complaints"]) == (1, 1)


def test_esp_unsubscribe_unsubscribes_through_preferences(make_delivery):
    delivery = make_delivery()
    actions.record_tracking_events([event(delivery, EventKind.UNSUBSCRIBED)])
    person = reload(delivery.subscriber)
    assert person.status == SubscriberStatus.UNSUBSCRIBED
    assert ConsentRecord.objects.get(subscriber=person).granted is False
    assert reload(delivery).status == DeliveryStatus.UNSUBSCRIBED
    assert message_stats(message_key="campaign:1")["unsubscribes"] == 1


def test_retried_events_are_recorded_once(make_delivery):
    delivery = make_delivery()
    batch = [event(delivery, EventKind.OPENED, esp_event_id="sg-1", user_agent=HUMAN_UA),
             event(delivery, EventKind.OPENED, esp_event_id="sg-1", user_agent=HUMAN_UA)]
    first = actions.record_tracking_events(batch)
    second = actions.record_tracking_events(batch)
    assert (first.recorded, first.duplicates, second.recorded, second.duplicates) == (1, 1, 0, 2)
    assert reload(delivery).open_count == 1
    assert message_stats(message_key="campaign:1")["opens"] == 1


def test_events_for_unknown_messages_are_counted_not_raised(db):
    result = actions.record_tracking_events([
        TrackingEvent(kind=EventKind.OPENED, occurred_at=LATER, source="Amazon SES", esp_message_id="nope"),
        TrackingEvent(kind=EventKind.DELIVERED, occurred_at=LATER, source="Amazon SES", delivery_id=999999),
    ])
    assert (result.recorded, result.unmatched) == (0, 2)
    stats = MessageStats.objects.get(message_key="unmatched:amazon_ses")
    assert (stats.opens, stats.delivered) == (1, 1)


def test_matched_by_esp_message_id_and_recipient(make_subscriber, make_delivery):
    ann, bob = make_subscriber(email="ann@example.com"), make_subscriber(email="Bob@Example.com")
    # Mailgun batch sends give every recipient the same message id.
    for_ann = make_delivery(ann, esp_name="Mailgun", esp_message_id="<batch@mg.example.com>")
    for_bob = make_delivery(bob, esp_name="Mailgun", esp_message_id="<batch@mg.example.com>")
    single = make_delivery(message_key="campaign:9", esp_message_id="<single@mg.example.com>")
    result = actions.record_tracking_events([
        TrackingEvent(kind=EventKind.DELIVERED, occurred_at=LATER, source="Mailgun",
                      esp_message_id="<batch@mg.example.com>", recipient="bob@example.com"),
        TrackingEvent(kind=EventKind.DELIVERED, occurred_at=LATER, source="Mailgun",
                      esp_message_id="<single@mg.example.com>"),  # no address: the message id alone
        TrackingEvent(kind=EventKind.DELIVERED, occurred_at=LATER, source="Mailgun",
                      esp_message_id="<batch@mg.example.com>", recipient="carol@example.com"),
        TrackingEvent(kind=EventKind.DELIVERED, occurred_at=LATER, source="Mailgun",
                      esp_message_id="<batch@mg.example.com>"),  # ambiguous without an address
    ])
    assert (result.recorded, result.unmatched) == (2, 2)
    assert (reload(for_ann).status, reload(for_bob).status, reload(single).status) == ("sent", "delivered",
                                                                                        "delivered")


def test_status_never_moves_down(make_delivery):
    delivery = make_delivery()
    actions.record_tracking_events([
        event(delivery, EventKind.CLICKED, at=LATER + dt.timedelta(hours=2), url="https://example.com",
              user_agent=HUMAN_UA),
        event(delivery, EventKind.DELIVERED, at=LATER + dt.timedelta(hours=3)),  # arrives late, out of order
    ])
    assert reload(delivery).status == DeliveryStatus.CLICKED


def test_anonymous_mode_keeps_only_totals(make_delivery, settings):
    settings.TRACKING_ANONYMOUS = True
    delivery = make_delivery()
    actions.record_tracking_events([
        event(delivery, EventKind.DELIVERED, esp_event_id="d"),
        event(delivery, EventKind.OPENED, at=LATER + dt.timedelta(hours=1), esp_event_id="o", user_agent=HUMAN_UA),
        event(delivery, EventKind.OPENED, at=LATER + dt.timedelta(hours=1), esp_event_id="m",
              user_agent="Mozilla/5.0"),
        event(delivery, EventKind.CLICKED, at=LATER + dt.timedelta(hours=2), esp_event_id="c",
              url="https://example.com", user_agent=HUMAN_UA),
    ])
    delivery = reload(delivery)
    assert delivery.status == DeliveryStatus.DELIVERED
    assert (delivery.first_opened_at, delivery.first_clicked_at, delivery.open_count, delivery.click_count) == (
        None, None, 0, 0)
    assert list(delivery.events.values_list("kind", flat=True)) == ["delivered"]
    person = reload(delivery.subscriber)
    assert (person.last_open_at, person.last_click_at, person.emails_received) == (None, None, 1)
    stats = message_stats(message_key="campaign:1")
    assert (stats["opens"], stats["human_opens"], stats["clicks"], stats["human_clicks"]) == (2, 1, 1, 1)
    assert (stats["unique_opens"], stats["unique_clicks"]) == (0, 0)


def test_erased_people_are_not_touched(make_subscriber, make_delivery):
    person = make_subscriber(status=SubscriberStatus.ERASED)
    delivery = make_delivery(person)
    actions.record_tracking_events([event(delivery, EventKind.COMPLAINED)])
    assert reload(person).status == SubscriberStatus.ERASED
    assert reload(delivery).status == DeliveryStatus.COMPLAINED


def test_a_batch_takes_a_fixed_number_of_queries(make_delivery, django_assert_max_num_queries):
    deliveries = [make_delivery(message_key="campaign:5") for _ in range(40)]
    batch = [event(d, EventKind.DELIVERED, esp_event_id=f"d{d.pk}") for d in deliveries]
    # lock + dedupe + statuses + insert + update + stats, savepoints, and one UPDATE per person.
    # PostgreSQL writes all deliveries in one UPDATE; SQLite one UPDATE per delivery.
    per_delivery = 1 if connection.vendor == "postgresql" else 2
    with django_assert_max_num_queries(12 + per_delivery * 40):
        result = actions.record_tracking_events(batch)
    assert result.recorded == 40
    assert DeliveryEvent.objects.count() == 40
    assert message_stats(message_key="campaign:5")["delivered"] == 40
