import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from preferences import actions as preference_actions
from preferences.models import TopicSubscription
from subscribers import actions
from subscribers.api import current_consent, has_consent
from subscribers.models import (
    ConsentMethod,
    ConsentPurpose,
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SuppressedAddress,
    email_hash,
)

FORM = actions.ConsentEvidence(method=ConsentMethod.FORM, notice_version="v3", ip_address="198.51.100.7",
                               user_agent="Firefox")
ADMIN = actions.ConsentEvidence(method=ConsentMethod.ADMIN, notice_version="paper form")


def test_create_subscriber_records_consent_with_evidence(db):
    s = actions.create_subscriber(email="Ann@Example.com", profile={"first_name": "Ann"},
                                  status=SubscriberStatus.SUBSCRIBED, evidence=FORM)
    record = s.consent_records.get()
    assert (record.purpose, record.granted, record.method) == ("email_marketing", True, "form")
    assert (record.notice_version, record.ip_address, record.user_agent) == ("v3", "198.51.100.7", "Firefox")
    assert s.email == "Ann@example.com" and s.confirmed_at is not None


def test_create_subscribed_without_evidence_is_refused(db):
    with pytest.raises(ValidationError, match="consent"):
        actions.create_subscriber(email="a@example.com", status=SubscriberStatus.SUBSCRIBED)
    assert not Subscriber.objects.exists()


def test_create_refuses_duplicate_and_erased_addresses(db, make_subscriber):
    make_subscriber(email="taken@example.com")
    with pytest.raises(ValidationError, match="already exists"):
        actions.create_subscriber(email="TAKEN@example.com")
    SuppressedAddress.objects.create(email_hash=email_hash("gone@example.com"))
    with pytest.raises(ValidationError, match="erased"):
        actions.create_subscriber(email="Gone@Example.com")


def test_current_consent_is_the_latest_record_per_purpose(make_subscriber, topic):
    s = make_subscriber()
    t0 = timezone.now() - dt.timedelta(days=3)
    for days, granted in ((0, True), (1, False), (2, True)):
        evidence = actions.ConsentEvidence(method=ConsentMethod.FORM, occurred_at=t0 + dt.timedelta(days=days))
        actions.record_consent(s, purpose=ConsentPurpose.EMAIL_MARKETING, granted=granted, evidence=evidence)
    actions.record_consent(s, purpose=ConsentPurpose.PERSONALIZATION, granted=False, evidence=FORM)
    actions.record_consent(s, purpose=ConsentPurpose.TOPIC, topic_id=topic.pk, granted=True, evidence=FORM)
    states = current_consent(subscriber_id=s.pk)
    assert states[("email_marketing", None)].granted is True
    assert states[("personalization", None)].granted is False
    assert states[("topic", topic.pk)].granted is True
    assert has_consent(subscriber_id=s.pk) is True
    assert has_consent(subscriber_id=s.pk, purpose="personalization") is False
    assert ConsentRecord.objects.filter(subscriber=s).count() == 5


def test_no_record_means_no_consent(make_subscriber):
    assert has_consent(subscriber_id=make_subscriber().pk) is False


def test_unsubscribe_withdraws_consent_and_is_idempotent(make_subscriber):
    s = make_subscriber()
    preference_actions.unsubscribe(s, evidence=ADMIN)
    preference_actions.unsubscribe(s, evidence=ADMIN)
    s.refresh_from_db()
    assert s.status == "unsubscribed"
    assert list(s.consent_records.values_list("granted", "method")) == [(False, "admin")]


def test_staff_cannot_resubscribe_someone_who_unsubscribed(make_subscriber):
    s = make_subscriber(status=SubscriberStatus.UNSUBSCRIBED)
    with pytest.raises(ValidationError, match="only the person"):
        actions.change_status(s, status=SubscriberStatus.SUBSCRIBED, evidence=ADMIN)
    actions.change_status(s, status=SubscriberStatus.SUBSCRIBED, evidence=FORM)
    s.refresh_from_db()
    assert s.status == "subscribed"


def test_topic_subscription_writes_the_ledger(make_subscriber, topic):
    s = make_subscriber()
    preference_actions.set_topic_subscription(s, topic=topic, subscribed=True, evidence=FORM)
    preference_actions.set_topic_subscription(s, topic=topic, subscribed=True, evidence=FORM)
    preference_actions.set_topic_subscription(s, topic=topic, subscribed=False, evidence=FORM)
    assert TopicSubscription.objects.get(subscriber=s, topic=topic).subscribed is False
    assert list(s.consent_records.order_by("id").values_list("purpose", "granted")) == [
        ("topic", True), ("topic", False)]


def test_bulk_add_to_topic_respects_opt_outs_and_blocked_people(make_subscriber, topic):
    keen = make_subscriber()
    opted_out = make_subscriber()
    preference_actions.set_topic_subscription(opted_out, topic=topic, subscribed=False, evidence=FORM)
    bounced = make_subscriber(status=SubscriberStatus.BOUNCED)
    added, skipped = preference_actions.add_to_topic([keen, opted_out, bounced], topic=topic, evidence=ADMIN)
    assert (added, skipped) == (1, 2)
    assert set(TopicSubscription.objects.filter(topic=topic, subscribed=True).values_list("subscriber", flat=True)) == {
        keen.pk}


def test_update_profile_validates_and_refuses_status(make_subscriber, attribute):
    attribute("shoe_size", "number")
    s = make_subscriber()
    actions.update_subscriber_profile(s, changes={"city": "Rīga", "attributes": {"shoe_size": "42"}})
    s.refresh_from_db()
    assert (s.city, s.attributes) == ("Rīga", {"shoe_size": 42})
    with pytest.raises(ValidationError):
        actions.update_subscriber_profile(s, changes={"timezone": "Nowhere/City"})
    with pytest.raises(ValueError):
        actions.update_subscriber_profile(s, changes={"status": "subscribed"})


def test_purge_import_files_removes_old_uploads(db, tmp_path, settings):
    from django.core.files.base import ContentFile

    from subscribers.models import ImportJob

    settings.MEDIA_ROOT = str(tmp_path)
    old = ImportJob(original_name="old.csv", created_at=timezone.now() - dt.timedelta(days=40))
    old.file.save("old.csv", ContentFile(b"Email\na@example.com\n"))
    fresh = ImportJob(original_name="new.csv")
    fresh.file.save("new.csv", ContentFile(b"Email\nb@example.com\n"))
    path = old.file.path
    assert actions.purge_import_files(older_than_days=30) == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert not old.file and fresh.file
    import os

    assert not os.path.exists(path)


def test_engagement_metrics_move_forward_only(make_subscriber):
    s = make_subscriber()
    t1 = timezone.now() - dt.timedelta(days=2)
    t2 = t1 + dt.timedelta(days=1)
    actions.record_email_engagement(subscriber_id=s.pk, kind="delivered", at=t1)
    actions.record_email_engagement(subscriber_id=s.pk, kind="delivered", at=t2)
    actions.record_email_engagement(subscriber_id=s.pk, kind="click", at=t2)
    actions.record_email_engagement(subscriber_id=s.pk, kind="open", at=t1)
    s.refresh_from_db()
    assert s.emails_received == 2
    assert s.last_open_at == t2 and s.last_click_at == t2
    with pytest.raises(ValueError):
        actions.record_email_engagement(subscriber_id=s.pk, kind="machine_open", at=t1)


def test_suppress_subscriber_on_bounce_and_complaint(make_subscriber):
    evidence = actions.ConsentEvidence(method=ConsentMethod.API, notice_version="esp:sendgrid")
    s = make_subscriber()
    actions.suppress_subscriber(subscriber_id=s.pk, status="bounced", evidence=evidence)
    s.refresh_from_db()
    assert s.status == "bounced"
    actions.suppress_subscriber(subscriber_id=s.pk, status="complained", evidence=evidence)
    s.refresh_from_db()
    assert s.status == "complained"
    assert list(s.consent_records.values_list("granted", flat=True)) == [False]
    with pytest.raises(ValueError):
        actions.suppress_subscriber(subscriber_id=s.pk, status="unsubscribed", evidence=evidence)


def test_erasure_removes_personal_data_and_keeps_aggregates(make_subscriber, topic, write_csv):
    from subscribers.models import AnonymousVisitor, Event, Order

    s = make_subscriber(email="Ann@example.com", first_name="Ann", city="Riga", external_id="u-1",
                        tags=["vip"], attributes={}, phone="+371")
    preference_actions.set_topic_subscription(s, topic=topic, subscribed=True, evidence=FORM)
    Event.objects.create(subscriber=s, name="Page Viewed", occurred_at=timezone.now())
    AnonymousVisitor.objects.create(anonymous_id="anon", subscriber=s)
    order = Order.objects.create(order_id="o-1", subscriber=s, total=10, occurred_at=timezone.now())
    staff_evidence = actions.ConsentEvidence(method=ConsentMethod.ADMIN, actor_id=None)
    actions.erase_subscriber(s, evidence=staff_evidence)
    actions.erase_subscriber(s, evidence=staff_evidence)  # twice is harmless
    s.refresh_from_db()
    assert s.status == "erased" and s.email.endswith("@erased.invalid")
    assert (s.first_name, s.city, s.phone, s.external_id, s.tags) == ("", "", "", None, [])
    assert not Event.objects.filter(subscriber=s).exists() and not AnonymousVisitor.objects.exists()
    assert not TopicSubscription.objects.filter(subscriber=s).exists()
    order.refresh_from_db()
    assert order.subscriber is None and order.total == 10
    ledger = list(s.consent_records.values_list("granted", "notice_version", "ip_address"))
    assert ledger == [(False, "erasure", None)]
    assert SuppressedAddress.objects.filter(email_hash=email_hash("ann@EXAMPLE.com")).exists()
    from subscribers.actions import import_subscribers

    result = import_subscribers(write_csv("Email\nann@example.com\n"))
    assert result.counts["skipped"] == 1 and "erased" in result.issues[0]["reason"]
    with pytest.raises(ValidationError, match="erased"):
        actions.create_subscriber(email="ann@example.com")


def test_export_contains_profile_consent_topics_orders_and_events(make_subscriber, topic):
    import json

    from subscribers.api import export_personal_data
    from subscribers.models import Event, Order

    s = make_subscriber(email="ann@example.com", first_name="Ann", country="LV")
    preference_actions.set_topic_subscription(s, topic=topic, subscribed=True, evidence=FORM)
    Event.objects.create(subscriber=s, name="Product Viewed", properties={"sku": "1"}, occurred_at=timezone.now())
    Order.objects.create(order_id="o-1", subscriber=s, total=10, occurred_at=timezone.now())
    data = export_personal_data(subscriber_id=s.pk)
    json.dumps(data)  # plain JSON data
    assert data["profile"]["email"] == "ann@example.com" and data["profile"]["country"] == "LV"
    assert data["consent_history"][0]["ip_address"] == "198.51.100.7"
    assert data["topics"] == [{"topic": "Offers", "subscribed": True, "changed_at": data["topics"][0]["changed_at"]}]
    assert data["orders"][0]["order_id"] == "o-1" and data["events"][0]["name"] == "Product Viewed"


def test_engagement_batch_matches_single_updates(make_subscriber):
    a, b = make_subscriber(), make_subscriber()
    t1 = timezone.now() - dt.timedelta(days=3)
    t2 = t1 + dt.timedelta(days=1)
    actions.record_email_engagement(subscriber_id=a.pk, kind="open", at=t2)
    actions.record_email_engagement_batch([
        actions.EngagementChange(subscriber_id=a.pk, delivered=2, opened_at=t1),
        actions.EngagementChange(subscriber_id=b.pk, delivered=1, clicked_at=t1),
        actions.EngagementChange(subscriber_id=b.pk),  # nothing to do
    ])
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.emails_received, a.last_open_at, a.last_click_at) == (2, t2, None)
    assert (b.emails_received, b.last_open_at, b.last_click_at) == (1, t1, t1)
