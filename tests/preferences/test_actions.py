"""Preference actions: topics, sending preferences, signup double opt-in, expiry and erasure."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from preferences import actions
from preferences.models import Frequency, PreferenceChange, Signup, SubscriberPreferences, TopicSubscription
from subscribers.actions import ConsentEvidence, erase_subscriber
from subscribers.api import export_personal_data
from subscribers.models import ConsentMethod, ConsentPurpose, ConsentRecord, Subscriber, SubscriberStatus

pytestmark = pytest.mark.django_db

FORM = ConsentEvidence(method=ConsentMethod.FORM, notice_version="signup-v3", ip_address="203.0.113.9",
                       user_agent="Browser/1.0")


def ledger(subscriber, purpose=None):
    rows = ConsentRecord.objects.filter(subscriber=subscriber).order_by("occurred_at", "id")
    if purpose:
        rows = rows.filter(purpose=purpose)
    return list(rows.values_list("purpose", "topic__slug", "granted", "method"))


# --- Preferences rows and tokens --------------------------------------------------


def test_ensure_preferences_creates_a_random_token_once(make_subscriber):
    person = make_subscriber()
    first = actions.ensure_preferences(person)
    again = actions.ensure_preferences(person)
    assert first.token == again.token and len(first.token) == 24
    assert first.token != str(person.pk)
    assert first.frequency == Frequency.EVERY and first.paused_until is None


def test_ensure_preferences_for_many_creates_only_the_missing(make_subscriber, django_assert_max_num_queries):
    people = [make_subscriber() for _ in range(5)]
    known = actions.ensure_preferences(people[0]).token
    with django_assert_max_num_queries(3):
        tokens = actions.ensure_preferences_for(subscriber_ids=[p.pk for p in people])
    assert set(tokens) == {p.pk for p in people}
    assert tokens[people[0].pk] == known
    assert len(set(tokens.values())) == 5


def test_rotating_the_token_changes_it(make_subscriber):
    person = make_subscriber()
    old = actions.ensure_preferences(person).token
    assert actions.rotate_preference_token(person).token != old


# --- Sending preferences ----------------------------------------------------------------


def test_frequency_pause_and_language_are_history_not_consent(make_subscriber, pc_evidence):
    person = make_subscriber(language="en")
    assert actions.set_frequency(person, frequency=Frequency.WEEKLY, evidence=pc_evidence)
    assert not actions.set_frequency(person, frequency=Frequency.WEEKLY, evidence=pc_evidence)
    until = actions.pause_emails(person, days=60, evidence=pc_evidence)
    assert dt.timedelta(days=59) < until - timezone.now() <= dt.timedelta(days=60)
    assert actions.set_language(person, language="lv", evidence=pc_evidence)
    assert actions.resume_emails(person, evidence=pc_evidence)
    assert not actions.resume_emails(person, evidence=pc_evidence)
    prefs = SubscriberPreferences.objects.get(subscriber=person)
    assert prefs.frequency == Frequency.WEEKLY and prefs.paused_until is None
    assert Subscriber.objects.get(pk=person.pk).language == "lv"
    history = list(PreferenceChange.objects.filter(subscriber=person).order_by("id")
                   .values_list("field", "old_value", "new_value", "method"))
    assert [h[0] for h in history] == ["frequency", "pause", "language", "pause"]
    assert history[0][1:] == ("every", "weekly", "preference_center")
    assert history[2][1:3] == ("en", "lv")
    assert ConsentRecord.objects.filter(subscriber=person).count() == 0


@pytest.mark.parametrize("days", [0, 7, 45, 365])
def test_a_pause_is_30_60_or_90_days(make_subscriber, pc_evidence, days):
    with pytest.raises(ValidationError):
        actions.pause_emails(make_subscriber(), days=days, evidence=pc_evidence)


def test_unknown_frequency_and_language_are_refused(make_subscriber, pc_evidence):
    person = make_subscriber()
    with pytest.raises(ValidationError):
        actions.set_frequency(person, frequency="daily", evidence=pc_evidence)
    with pytest.raises(ValidationError):
        actions.set_language(person, language="fr", evidence=pc_evidence)


def test_personalization_opt_out_and_back_is_in_the_ledger(make_subscriber, pc_evidence):
    person = make_subscriber()
    assert actions.personalization_allowed(person.pk)  # nobody opted out yet
    assert not actions.set_personalization(person, allowed=True, evidence=pc_evidence)
    assert actions.set_personalization(person, allowed=False, evidence=pc_evidence)
    assert not actions.personalization_allowed(person.pk)
    assert actions.set_personalization(person, allowed=True, evidence=pc_evidence)
    assert ledger(person) == [("personalization", None, False, "preference_center"),
                              ("personalization", None, True, "preference_center")]


def test_save_preferences_writes_only_what_changed(make_subscriber, topics, pc_evidence):
    newsletter, offers, news = topics
    person = make_subscriber()
    actions.set_topic_subscription(person, topic=newsletter, subscribed=True, evidence=pc_evidence)
    before = ConsentRecord.objects.count()
    unchanged = actions.PreferenceChoices(topics={newsletter.pk: True, offers.pk: False, news.pk: False},
                                          frequency="every", language="", pause="", personalization=True)
    assert actions.save_preferences(person, choices=unchanged, evidence=pc_evidence) == []
    assert ConsentRecord.objects.count() == before

    wanted = actions.PreferenceChoices(topics={newsletter.pk: False, offers.pk: True, news.pk: False},
                                       frequency="monthly", language="pl", pause="30", personalization=False)
    changed = actions.save_preferences(person, choices=wanted, evidence=pc_evidence)
    assert changed == ["topics", "frequency", "pause", "personalization", "language"]
    assert dict(TopicSubscription.objects.filter(subscriber=person).values_list("topic__slug", "subscribed")) == {
        "newsletter": False, "offers": True}
    assert ledger(person)[-3:] == [("topic", "newsletter", False, "preference_center"),
                                   ("topic", "offers", True, "preference_center"),
                                   ("personalization", None, False, "preference_center")]
    record = ConsentRecord.objects.filter(subscriber=person).first()
    assert record.ip_address == "198.51.100.7" and record.user_agent == "pytest"


def test_inactive_topics_are_not_changed(make_subscriber, topics, pc_evidence):
    newsletter, *_ = topics
    newsletter.is_active = False
    newsletter.save()
    person = make_subscriber()
    actions.save_preferences(person, choices=actions.PreferenceChoices(topics={newsletter.pk: True}),
                             evidence=pc_evidence)
    assert not TopicSubscription.objects.filter(subscriber=person).exists()


# --- Unsubscribe and undo ------------------------------------------------------------------


def test_unsubscribe_and_resubscribe_keep_topics_and_write_the_ledger(make_subscriber, topics, pc_evidence):
    person = make_subscriber()
    actions.set_topic_subscription(person, topic=topics[1], subscribed=True, evidence=pc_evidence)
    actions.unsubscribe(person, evidence=pc_evidence)
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.UNSUBSCRIBED
    actions.resubscribe(person, evidence=pc_evidence)
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.SUBSCRIBED
    assert ledger(person, ConsentPurpose.EMAIL_MARKETING) == [
        ("email_marketing", None, False, "preference_center"), ("email_marketing", None, True, "preference_center")]
    assert TopicSubscription.objects.get(subscriber=person).subscribed


@pytest.mark.parametrize("status", [SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED, SubscriberStatus.CONTACT,
                                    SubscriberStatus.PENDING])
def test_resubscribe_is_only_for_people_who_unsubscribed(make_subscriber, pc_evidence, status):
    person = make_subscriber(status=status)
    with pytest.raises(ValidationError):
        actions.resubscribe(person, evidence=pc_evidence)


def test_resubscribe_needs_preference_center_evidence(make_subscriber):
    person = make_subscriber(status=SubscriberStatus.UNSUBSCRIBED)
    with pytest.raises(ValidationError):
        actions.resubscribe(person, evidence=ConsentEvidence(method=ConsentMethod.ADMIN))


# --- Signup with double opt-in ---------------------------------------------------------


def test_a_new_address_is_not_a_subscriber_until_confirmed(topics, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        signup = actions.request_signup(email="New.Person@Example.COM", first_name="Ada", language="lv",
                                        topic_ids=[topics[1].pk], evidence=FORM)
    assert signup is not None and signup.email == "New.Person@example.com"
    assert not Subscriber.objects.exists()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["New.Person@example.com"]
    signup.refresh_from_db()
    assert signup.email_sent_at is not None

    confirm = ConsentEvidence(method=ConsentMethod.FORM, ip_address="203.0.113.50", user_agent="Phone/2")
    person = actions.confirm_signup(signup, evidence=confirm)
    assert person.status == SubscriberStatus.SUBSCRIBED and person.confirmed_at is not None
    assert person.first_name == "Ada" and person.language == "lv" and person.source == "signup form"
    assert ledger(person) == [("email_marketing", None, True, "form"), ("topic", "offers", True, "form")]
    record = ConsentRecord.objects.filter(subscriber=person).first()
    assert (record.ip_address, record.user_agent, record.notice_version) == ("203.0.113.50", "Phone/2", "signup-v3")
    assert SubscriberPreferences.objects.filter(subscriber=person).exists()
    # Confirming twice changes nothing.
    assert actions.confirm_signup(signup, evidence=confirm) == person
    assert ConsentRecord.objects.filter(subscriber=person).count() == 2


def test_signup_without_topics_gets_the_default_topics(topics):
    signup = actions.request_signup(email="d@example.com", topic_ids=None, evidence=FORM)
    assert signup.topic_ids == [topics[0].pk]
    signup = actions.request_signup(email="e@example.com", topic_ids=[], evidence=FORM)
    assert signup.topic_ids == []


def test_a_shop_contact_becomes_pending_then_subscribed(make_subscriber, topics):
    contact = make_subscriber(email="shopper@example.com", status=SubscriberStatus.CONTACT)
    signup = actions.request_signup(email="SHOPPER@example.com", topic_ids=[], evidence=FORM)
    contact.refresh_from_db()
    assert contact.status == SubscriberStatus.PENDING and signup.previous_status == "contact"
    actions.confirm_signup(signup, evidence=FORM)
    contact.refresh_from_db()
    assert contact.status == SubscriberStatus.SUBSCRIBED
    assert ledger(contact) == [("email_marketing", None, True, "form")]


def test_an_unsubscribed_person_stays_unsubscribed_until_they_confirm(make_subscriber):
    person = make_subscriber(email="left@example.com", status=SubscriberStatus.UNSUBSCRIBED)
    signup = actions.request_signup(email="left@example.com", evidence=FORM)
    person.refresh_from_db()
    assert person.status == SubscriberStatus.UNSUBSCRIBED
    actions.confirm_signup(signup, evidence=FORM)
    person.refresh_from_db()
    assert person.status == SubscriberStatus.SUBSCRIBED


def test_signup_of_an_erased_address_stores_nothing(make_subscriber, django_capture_on_commit_callbacks):
    person = make_subscriber(email="gone@example.com")
    erase_subscriber(person, evidence=ConsentEvidence(method=ConsentMethod.PREFERENCE_CENTER))
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.request_signup(email="Gone@Example.com", evidence=FORM) is None
    assert not Signup.objects.exists() and mail.outbox == []


def test_repeated_signups_within_the_cooldown_send_one_email(settings, django_capture_on_commit_callbacks):
    settings.SIGNUP_RESEND_MINUTES = 10
    with django_capture_on_commit_callbacks(execute=True):
        first = actions.request_signup(email="twice@example.com", evidence=FORM)
        assert actions.request_signup(email="twice@example.com", evidence=FORM) is None
    assert len(mail.outbox) == 1
    Signup.objects.filter(pk=first.pk).update(created_at=timezone.now() - dt.timedelta(minutes=11))
    second = actions.request_signup(email="twice@example.com", evidence=FORM)
    assert list(Signup.objects.values_list("pk", flat=True)) == [second.pk]  # the old link was replaced


def test_an_expired_link_cannot_confirm(topics):
    signup = actions.request_signup(email="late@example.com", evidence=FORM)
    Signup.objects.filter(pk=signup.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(actions.SignupExpired):
        actions.confirm_signup(signup, evidence=FORM)
    assert not Subscriber.objects.exists()


def test_confirming_after_the_address_was_erased_does_nothing(make_subscriber):
    person = make_subscriber(email="both@example.com", status=SubscriberStatus.UNSUBSCRIBED)
    signup = actions.request_signup(email="both@example.com", evidence=FORM)
    erase_subscriber(person, evidence=ConsentEvidence(method=ConsentMethod.ADMIN))
    assert not Signup.objects.exists()  # erasure removed the pending signup too
    signup.pk = None
    signup.token = "another-token"
    signup.save()
    assert actions.confirm_signup(signup, evidence=FORM) is None


def test_expiry_deletes_old_signups_and_gives_contacts_back_their_status(make_subscriber):
    contact = make_subscriber(email="c@example.com", status=SubscriberStatus.CONTACT)
    actions.request_signup(email="c@example.com", evidence=FORM)
    actions.request_signup(email="new@example.com", evidence=FORM)
    fresh = actions.request_signup(email="fresh@example.com", evidence=FORM)
    later = timezone.now() + dt.timedelta(days=8)
    Signup.objects.filter(pk=fresh.pk).update(expires_at=later + dt.timedelta(days=1))
    assert actions.expire_signups(now=later, batch_size=1) == 2
    assert list(Signup.objects.values_list("pk", flat=True)) == [fresh.pk]
    contact.refresh_from_db()
    assert contact.status == SubscriberStatus.CONTACT
    assert actions.expire_signups(now=later) == 0


def test_the_confirmation_email_goes_out_once(topics):
    signup = actions.request_signup(email="once@example.com", language="pl", evidence=FORM)
    assert actions.send_signup_confirmation(signup_id=signup.pk)
    assert not actions.send_signup_confirmation(signup_id=signup.pk)
    assert not actions.send_signup_confirmation(signup_id=999999)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert "/signup/confirm/" in message.body and signup.token in message.body
    assert message.alternatives and "/signup/confirm/" in message.alternatives[0][0]
    assert "once@example.com" not in message.body


# --- Privacy rights -------------------------------------------------------------------


def test_export_includes_the_preferences_section(make_subscriber, pc_evidence):
    person = make_subscriber()
    actions.set_frequency(person, frequency=Frequency.MONTHLY, evidence=pc_evidence)
    actions.set_personalization(person, allowed=False, evidence=pc_evidence)
    data = actions.export_my_data(person, evidence=pc_evidence)
    section = data["preferences"]
    assert section["frequency"] == "monthly" and section["personalization_allowed"] is False
    assert section["changes"][0]["field"] == "frequency"
    assert export_personal_data(subscriber_id=person.pk)["preferences"]["frequency"] == "monthly"


def test_erasure_removes_preferences_history_signups_and_the_token(make_subscriber, pc_evidence):
    person = make_subscriber(email="erase.me@example.com", status=SubscriberStatus.UNSUBSCRIBED)
    actions.set_frequency(person, frequency=Frequency.WEEKLY, evidence=pc_evidence)
    actions.request_signup(email="erase.me@example.com", evidence=FORM)
    actions.erase_my_data(person, evidence=pc_evidence)
    assert not SubscriberPreferences.objects.filter(subscriber=person).exists()
    assert not PreferenceChange.objects.filter(subscriber=person).exists()
    assert not Signup.objects.exists()
    person.refresh_from_db()
    assert person.status == SubscriberStatus.ERASED


def test_unsubscribe_keeps_a_bounce_or_complaint_but_records_the_withdrawal(db):
    from preferences.actions import unsubscribe
    from subscribers.actions import ConsentEvidence
    from subscribers.models import Subscriber

    for status in ("bounced", "complained"):
        s = Subscriber(email=f"{status}@example.com", status=status)
        s.save()
        unsubscribe(s, evidence=ConsentEvidence(method="preference_center"))
        s.refresh_from_db()
        assert s.status == status
        assert list(s.consent_records.values_list("granted", flat=True)) == [False]
