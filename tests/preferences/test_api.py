"""preferences.api: links and headers for emails, and what the sending policy gate reads."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from preferences import actions, api
from preferences.models import Frequency, SubscriberPreferences
from subscribers.actions import ConsentEvidence
from subscribers.models import ConsentMethod

pytestmark = pytest.mark.django_db
PC = ConsentEvidence(method=ConsentMethod.PREFERENCE_CENTER)


def test_links_are_stable_absolute_and_create_the_row_once(settings, make_subscriber):
    settings.PREFERENCE_CENTER_BASE_URL = "https://mail.example.com"
    person = make_subscriber()
    first = api.preference_url(person)
    assert first == api.preference_url(person)
    assert first.startswith("https://mail.example.com/preferences/") and first.endswith("/")
    assert api.unsubscribe_url(person).startswith("https://mail.example.com/unsubscribe/")
    assert SubscriberPreferences.objects.filter(subscriber=person).count() == 1


def test_rotation_and_erasure_end_old_links(client, make_subscriber):
    person = make_subscriber()
    old = api.preference_url(person).replace("http://localhost:8000", "")
    actions.rotate_preference_token(person)
    assert client.get(old).status_code == 404
    new = api.preference_url(person).replace("http://localhost:8000", "")
    assert client.get(new).status_code == 200
    actions.erase_my_data(person, evidence=PC)
    assert client.get(new).status_code == 404


def test_preference_links_for_a_send_chunk(make_subscriber, django_assert_max_num_queries):
    people = [make_subscriber() for _ in range(4)]
    with django_assert_max_num_queries(3):
        links = api.preference_links(subscriber_ids=[p.pk for p in people])
    assert set(links) == {p.pk for p in people}
    one = links[people[0].pk]
    assert one.preference_url == api.preference_url(people[0])
    assert one.headers == api.list_unsubscribe_headers(people[0])


def test_preference_links_reuse_the_tokens_the_sending_preferences_read(make_subscriber, django_assert_num_queries):
    known = [make_subscriber() for _ in range(3)]
    for person in known:
        api.preference_url(person)  # their preferences rows (and tokens) exist
    new = make_subscriber()
    ids = [p.pk for p in [*known, new]]
    prefs = api.sending_preferences_for(subscriber_ids=ids)
    assert prefs[new.pk].token == "" and all(prefs[p.pk].token for p in known)
    assert "token" not in repr(prefs[known[0].pk])
    with django_assert_num_queries(3):  # the one person without a row: look up, create, read back
        links = api.preference_links(subscriber_ids=ids, preferences=prefs)
    assert {pk: link.unsubscribe_url for pk, link in links.items()} == {
        p.pk: api.unsubscribe_url(p) for p in [*known, new]}
    prefs = api.sending_preferences_for(subscriber_ids=ids)
    with django_assert_num_queries(0):
        assert api.preference_links(subscriber_ids=ids, preferences=prefs).keys() == set(ids)


def test_sending_preferences_defaults_and_changes(make_subscriber, django_assert_num_queries):
    plain = make_subscriber(language="")
    chosen = make_subscriber(language="pl-PL")
    actions.set_frequency(chosen, frequency=Frequency.MONTHLY, evidence=PC)
    actions.pause_emails(chosen, days=90, evidence=PC)
    actions.set_personalization(chosen, allowed=False, evidence=PC)
    with django_assert_num_queries(1):
        prefs = api.sending_preferences_for(subscriber_ids=[plain.pk, chosen.pk, 999999])
    assert set(prefs) == {plain.pk, chosen.pk}
    a, b = prefs[plain.pk], prefs[chosen.pk]
    assert (a.frequency, a.min_interval, a.paused_until, a.personalization_allowed, a.language) == (
        "every", None, None, True, "")
    assert b.frequency == "monthly" and b.min_interval == dt.timedelta(days=30)
    assert b.is_paused() and not b.is_paused(timezone.now() + dt.timedelta(days=91))
    assert not b.personalization_allowed and b.language == "pl"
    actions.set_personalization(chosen, allowed=True, evidence=PC)
    actions.resume_emails(chosen, evidence=PC)
    now = api.sending_preferences(subscriber_id=chosen.pk)
    assert now.personalization_allowed and not now.is_paused()
    assert api.sending_preferences(subscriber_id=999999) is None


def test_subscribed_topic_ids(make_subscriber, topics):
    person = make_subscriber()
    actions.set_topic_subscription(person, topic=topics[0], subscribed=True, evidence=PC)
    actions.set_topic_subscription(person, topic=topics[1], subscribed=False, evidence=PC)
    assert api.subscribed_topic_ids(subscriber_id=person.pk) == {topics[0].pk}
