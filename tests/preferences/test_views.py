"""Public pages: tokens, the preference center, RFC 8058 unsubscribe, signup, JSON API, privacy rights, limits."""

from __future__ import annotations

import json
import re

import pytest
from django.core import mail
from django.test import Client
from django.utils import translation

from campaigns import actions as campaign_actions
from preferences.models import Frequency, Signup, SubscriberPreferences, TopicSubscription
from subscribers.models import (
    ConsentRecord,
    PrivacyRequest,
    Subscriber,
    SubscriberStatus,
    SuppressedAddress,
)

pytestmark = pytest.mark.django_db


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def csrf_post(client: Client, url: str, data: dict | None = None, **extra):
    """POST like a browser: load the page first for the CSRF cookie, then send its token."""
    client.get(url if not url.endswith(("/confirm/", "/undo/", "/export/")) else "/signup/")
    token = client.cookies["csrftoken"].value
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)


# --- Tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "x", "-tampered"])
def test_tampered_or_unknown_tokens_get_a_friendly_404(client, make_subscriber, link_token, suffix,
                                                       django_assert_max_num_queries):
    token = link_token(make_subscriber())
    bad = (token[:-1] + ("A" if token[-1] != "A" else "B")) if not suffix else token + suffix
    for url in (f"/preferences/{bad}/", f"/unsubscribe/{bad}/", f"/preferences/{bad}/erase/"):
        with django_assert_max_num_queries(0):
            response = client.get(url)
        assert response.status_code == 404
        assert "This link does not work" in response.content.decode()


def test_a_valid_signature_over_an_unknown_token_is_a_404(client):
    from preferences.links import PREFERENCE_SALT, sign

    assert client.get(f"/preferences/{sign('not-a-real-token', salt=PREFERENCE_SALT)}/").status_code == 404


def test_links_do_not_contain_the_id_or_address(make_subscriber):
    from preferences import api

    person = make_subscriber(email="visible@example.com")
    url = api.preference_url(person)
    assert url.startswith("http://localhost:8000/preferences/")
    assert "visible" not in url and f"/{person.pk}/" not in url
    headers = api.list_unsubscribe_headers(person)
    assert headers["List-Unsubscribe"] == f"<{api.unsubscribe_url(person)}>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# --- Preference center --------------------------------------------------------------------


def test_the_page_shows_topics_and_choices_in_few_queries(client, make_subscriber, topics, link_token,
                                                          django_assert_max_num_queries):
    person = make_subscriber(first_name="Ilze", email="ilze.berzina@example.com", language="en")
    TopicSubscription.objects.create(subscriber=person, topic=topics[1])
    token = link_token(person)
    with django_assert_max_num_queries(3):
        response = client.get(f"/preferences/{token}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Hello Ilze" in html and "il•••a@example.com" in html and "ilze.berzina" not in html
    assert "Sales and discount codes" in html
    assert re.search(rf'<input type="checkbox" name="topic_{topics[1].pk}"[^>]*checked', html)
    assert not re.search(rf'<input type="checkbox" name="topic_{topics[2].pk}"[^>]*checked', html)
    assert f'aria-describedby="topic-{topics[1].pk}-desc"' in html and f'id="topic-{topics[1].pk}-desc"' in html
    assert re.search(r'<input type="radio" name="frequency" value="every"[^>]*checked', html)
    assert re.search(r'<input type="checkbox" name="personalization"[^>]*checked', html)
    assert response["Cache-Control"].startswith("no-store") and response["Referrer-Policy"] == "same-origin"
    assert "We have not sent you any email yet." in html


def test_saving_changes_the_database_and_ledger_at_once(make_subscriber, topics, link_token):
    person = make_subscriber(language="en")
    token = link_token(person)
    client = csrf_client()
    url = f"/preferences/{token}/"
    response = csrf_post(client, url, {
        f"topic_{topics[1].pk}": "on", f"topic_{topics[2].pk}": "on", "frequency": "weekly", "pause": "90",
        "language": "pl", "personalization": "",
    }, HTTP_USER_AGENT="Firefox/140", REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 302 and response["Location"] == url
    prefs = SubscriberPreferences.objects.get(subscriber=person)
    assert prefs.frequency == Frequency.WEEKLY and prefs.paused_until is not None
    assert Subscriber.objects.get(pk=person.pk).language == "pl"
    assert set(TopicSubscription.objects.filter(subscriber=person, subscribed=True)
               .values_list("topic__slug", flat=True)) == {"offers", "product-news"}
    rows = list(ConsentRecord.objects.filter(subscriber=person).values_list("purpose", "granted", "method",
                                                                             "ip_address", "user_agent"))
    assert ("personalization", False, "preference_center", "192.0.2.44", "Firefox/140") in rows
    assert len([r for r in rows if r[0] == "topic"]) == 2
    follow = client.get(url)
    html = follow.content.decode()
    assert '<html lang="pl"' in html  # now in the chosen language
    from preferences.api import sending_preferences

    gate = sending_preferences(subscriber_id=person.pk)
    assert gate.frequency == "weekly" and gate.is_paused() and not gate.personalization_allowed
    assert gate.language == "pl"


def test_the_page_is_in_the_subscribers_language(client, make_subscriber, link_token):
    person = make_subscriber(language="lv")
    response = client.get(f"/preferences/{link_token(person)}/", HTTP_ACCEPT_LANGUAGE="en")
    assert '<html lang="lv"' in response.content.decode()


def test_saving_needs_csrf(make_subscriber, link_token):
    token = link_token(make_subscriber())
    assert csrf_client().post(f"/preferences/{token}/", {"frequency": "monthly"}).status_code == 403


def test_why_am_i_getting_this_reads_the_latest_delivery(client, make_subscriber, topics, link_token):
    person = make_subscriber()
    old = campaign_actions.create_delivery(subscriber_id=person.pk, message_key="campaign:1",
                                           why={"segment": "Old segment"})
    campaign_actions.record_sent(delivery_id=old.pk, esp_name="test")
    new = campaign_actions.create_delivery(subscriber_id=person.pk, message_key="campaign:2",
                                           why={"topic": "Offers", "segment": "Shoe buyers", "reason": "Spring sale"})
    campaign_actions.record_sent(delivery_id=new.pk, esp_name="test")
    html = client.get(f"/preferences/{link_token(person)}/").content.decode()
    assert "You are subscribed to the topic “Offers”." in html
    assert "You are in the audience “Shoe buyers”." in html and "Spring sale" in html
    assert "Old segment" not in html


def test_why_says_what_started_a_journey_in_the_persons_language(client, make_subscriber, link_token):
    person = make_subscriber(language="lv")
    delivery = campaign_actions.create_delivery(
        subscriber_id=person.pk, message_key="journey:1:welcome:1",
        why={"journey": "Sveiciens", "reason": "You subscribed on 02 December 2026.",
             "trigger": {"kind": "signup", "on": "2026-12-02"}})
    campaign_actions.record_sent(delivery_id=delivery.pk, esp_name="test")
    html = client.get(f"/preferences/{link_token(person)}/").content.decode()
    # Latvian puts the date after a colon, where the nominative Django gives it is right.
    assert "Jūs pierakstījāties (datums: 2026. gada 2. decembris)." in html
    assert "You subscribed on" not in html  # the English sentence is for staff
    from preferences.explain import explain

    with translation.override("en"):
        why = explain(delivery={"why": {"trigger": {"kind": "event", "on": "2026-12-02", "event": "Cart Abandoned"}},
                                "sent_at": None}, status="subscribed", confirmed_at=None)
        assert why["reasons"] == ["You did “Cart Abandoned” on our site on Dec. 2, 2026."]
        unknown = explain(delivery={"why": {"trigger": {"kind": "?", "on": "bad"}, "reason": "Old words"}},
                          status="subscribed", confirmed_at=None)
        assert unknown["reasons"] == ["Old words"]


# --- Unsubscribe (RFC 8058) ----------------------------------------------------------------------


def test_get_never_unsubscribes(client, make_subscriber, link_token):
    person = make_subscriber()
    response = client.get(f"/unsubscribe/{link_token(person)}/")
    assert response.status_code == 200 and "Unsubscribe" in response.content.decode()
    client.head(f"/unsubscribe/{link_token(person)}/")
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.SUBSCRIBED
    assert not ConsentRecord.objects.filter(subscriber=person).exists()


def test_one_click_post_unsubscribes_without_csrf(make_subscriber, link_token):
    person = make_subscriber()
    response = csrf_client().post(f"/unsubscribe/{link_token(person)}/", "List-Unsubscribe=One-Click",
                                  content_type="application/x-www-form-urlencoded", HTTP_USER_AGENT="ESP/1")
    assert response.status_code == 200
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.UNSUBSCRIBED
    record = ConsentRecord.objects.get(subscriber=person)
    assert (record.purpose, record.granted, record.method) == ("email_marketing", False, "preference_center")


def test_post_without_the_one_click_body_changes_nothing(make_subscriber, link_token):
    person = make_subscriber()
    response = csrf_client().post(f"/unsubscribe/{link_token(person)}/", {"something": "else"})
    assert response.status_code == 200
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.SUBSCRIBED


def test_one_click_with_a_forged_token_is_refused(make_subscriber, link_token):
    token = link_token(make_subscriber())
    response = Client().post(f"/unsubscribe/{token[:-2]}zz/", "List-Unsubscribe=One-Click",
                             content_type="application/x-www-form-urlencoded")
    assert response.status_code == 404
    assert not Subscriber.objects.filter(status=SubscriberStatus.UNSUBSCRIBED).exists()


def test_confirmation_page_button_then_undo(make_subscriber, link_token):
    person = make_subscriber()
    token = link_token(person)
    client = csrf_client()
    client.get(f"/unsubscribe/{token}/")
    csrf = client.cookies["csrftoken"].value
    response = client.post(f"/unsubscribe/{token}/confirm/", {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 302 and response["Location"] == f"/unsubscribe/{token}/done/"
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.UNSUBSCRIBED
    done = client.get(f"/unsubscribe/{token}/done/").content.decode()
    assert "Undo" in done
    response = client.post(f"/unsubscribe/{token}/undo/", {"csrfmiddlewaretoken": csrf})
    assert response["Location"] == f"/preferences/{token}/"
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.SUBSCRIBED
    assert "Welcome back" in client.get(response["Location"]).content.decode()
    assert client.post(f"/unsubscribe/{token}/confirm/").status_code == 403  # no CSRF token


# --- Signup -----------------------------------------------------------------------------


def signup_form(client: Client, **data):
    page = client.get("/signup/")
    html = page.content.decode()
    stamp = html.split('name="t" value="')[1].split('"')[0]
    return client.post("/signup/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, "t": stamp, **data})


def backdate_form_time(monkeypatch):
    import preferences.forms

    monkeypatch.setattr(preferences.forms, "MIN_FILL_SECONDS", 0)


def test_signup_sends_a_confirmation_and_confirming_subscribes(monkeypatch, topics,
                                                                django_capture_on_commit_callbacks):
    backdate_form_time(monkeypatch)
    client = csrf_client()
    with django_capture_on_commit_callbacks(execute=True):
        response = signup_form(client, email="Reader@example.com", first_name="Rita", topics=["offers"], lang="tr")
    assert response.status_code == 302 and response["Location"] == "/signup/sent/?lang=tr"
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    link = next(word for word in body.split() if "/signup/confirm/" in word)
    path = link.replace("http://localhost:8000", "")
    confirm_page = client.get(path)
    assert confirm_page.status_code == 200 and not Subscriber.objects.exists()  # GET confirms nothing
    assert '<html lang="tr"' in confirm_page.content.decode()
    response = client.post(path, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value},
                           HTTP_USER_AGENT="Mail app", REMOTE_ADDR="192.0.2.8")
    assert response.status_code == 302
    person = Subscriber.objects.get()
    assert person.status == SubscriberStatus.SUBSCRIBED and person.language == "tr"
    record = ConsentRecord.objects.filter(subscriber=person, purpose="email_marketing").get()
    assert (record.method, record.ip_address, record.user_agent) == ("form", "192.0.2.8", "Mail app")
    assert record.notice_version == "default"
    done = client.get(path).content.decode()
    assert "/preferences/" in done  # a link to manage the new subscription


def test_the_answer_is_the_same_for_new_known_and_erased_addresses(monkeypatch, make_subscriber, topics):
    from subscribers.actions import ConsentEvidence, erase_subscriber

    backdate_form_time(monkeypatch)
    make_subscriber(email="known@example.com")
    erase_subscriber(make_subscriber(email="erased@example.com"), evidence=ConsentEvidence(method="admin"))
    answers = set()
    for email in ("new@example.com", "known@example.com", "erased@example.com"):
        client = csrf_client()
        response = signup_form(client, email=email)
        answers.add((response.status_code, response["Location"]))
        answers.add(client.get(response["Location"]).content.decode())
    assert len(answers) == 2  # one redirect, one page
    assert set(Signup.objects.values_list("email", flat=True)) == {"new@example.com", "known@example.com"}
    assert SuppressedAddress.objects.count() == 1


def test_the_honeypot_stores_nothing_and_a_fast_form_is_shown_again(monkeypatch, topics):
    client = csrf_client()
    # Faster than a person types (a bot, or a browser's autofill): shown again, filled in, nothing stored.
    response = signup_form(client, email="fast@example.com", first_name="Fay", topics=["offers"])
    html = response.content.decode()
    assert response.status_code == 200 and "press Subscribe to finish" in html
    assert 'value="fast@example.com"' in html and 'value="offers" id="topic-offers" checked' in html
    assert not Signup.objects.exists()
    # A person presses Subscribe again: the form has no fill-time stamp now, so an immediate click counts.
    again = client.post("/signup/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, "t": "",
                                     "email": "fast@example.com", "first_name": "Fay", "topics": ["offers"]})
    assert again.status_code == 302 and Signup.objects.get().email == "fast@example.com"
    backdate_form_time(monkeypatch)
    response = signup_form(client, email="bot@example.com", website="http://spam.example")
    assert response.status_code == 302
    response = signup_form(client, email="bot@example.com", t="forged-stamp")
    assert response.status_code == 302
    assert list(Signup.objects.values_list("email", flat=True)) == ["fast@example.com"]


def test_every_signup_field_says_what_is_wrong(monkeypatch, topics):
    backdate_form_time(monkeypatch)
    response = signup_form(csrf_client(), email="ok@example.com", first_name="x" * 151, topics=["no-such-topic"])
    html = response.content.decode()
    assert response.status_code == 200
    assert "Please keep your first name under 150 characters." in html
    assert "Please choose from the topics listed." in html
    assert not Signup.objects.exists()


def test_invalid_email_shows_an_error(monkeypatch, topics):
    backdate_form_time(monkeypatch)
    response = signup_form(csrf_client(), email="not-an-address")
    assert response.status_code == 200 and "Please enter a valid email address" in response.content.decode()


def test_a_cross_site_post_without_csrf_changes_nothing_and_asks_to_confirm(topics):
    response = csrf_client().post("/signup/", {"email": "embed@example.com", "topics": ["offers"]})
    html = response.content.decode()
    assert response.status_code == 200 and "press Subscribe to finish" in html
    assert 'value="embed@example.com"' in html and 'value="offers" id="topic-offers" checked' in html
    assert re.search(r'<input type="hidden" name="t"(?![^>]*value=)', html)  # an immediate click is not a bot
    assert not Signup.objects.exists()


def test_signup_is_rate_limited_per_ip(settings, monkeypatch, topics):
    settings.SIGNUP_RATE_LIMIT = "2/h"
    backdate_form_time(monkeypatch)
    client = csrf_client()
    assert signup_form(client, email="a@example.com").status_code == 302
    assert signup_form(client, email="b@example.com").status_code == 302
    response = signup_form(client, email="c@example.com")
    assert response.status_code == 429 and response["Retry-After"] == "3600"
    assert "Too many attempts" in response.content.decode()
    assert client.get("/signup/").status_code == 200  # reading the form is not limited


def test_preference_pages_are_rate_limited_but_one_click_is_not(settings, make_subscriber, link_token):
    settings.PREFERENCE_CENTER_RATE_LIMIT = "2/m"
    token = link_token(make_subscriber())
    client = Client()
    assert [client.get(f"/preferences/{token}/").status_code for _ in range(3)] == [200, 200, 429]
    for _ in range(3):
        response = client.post(f"/unsubscribe/{token}/", "List-Unsubscribe=One-Click",
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200


def test_expired_confirmation_link_is_friendly(client, topics):
    from preferences import actions
    from preferences.emails import confirmation_url
    from subscribers.actions import ConsentEvidence

    signup = actions.request_signup(email="old@example.com", evidence=ConsentEvidence(method="form"))
    path = confirmation_url(signup).replace("http://localhost:8000", "")
    Signup.objects.update(expires_at="2000-01-01T00:00:00Z")
    response = client.get(path)
    assert response.status_code == 404 and "Sign up again" in response.content.decode()


# --- JSON endpoint ---------------------------------------------------------------------


def test_json_signup_lists_topics_and_accepts_json(client, topics, django_capture_on_commit_callbacks):
    listing = client.get("/signup/api/").json()
    assert [t["slug"] for t in listing["topics"]] == ["newsletter", "offers", "product-news"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/signup/api/", json.dumps({"email": "api@example.com", "topics": ["product-news"],
                                                           "language": "bg"}), content_type="application/json")
    assert response.status_code == 202 and response.json()["status"] == "ok"
    signup = Signup.objects.get()
    assert signup.topic_ids == [topics[2].pk] and signup.language == "bg"
    assert len(mail.outbox) == 1 and "Потвърдете" in mail.outbox[0].subject


def test_json_signup_refuses_forms_bad_input_and_foreign_origins(client, settings, topics):
    assert client.post("/signup/api/", {"email": "x@example.com"}).status_code == 415
    assert client.post("/signup/api/", "[1]", content_type="application/json").status_code == 400
    bad = client.post("/signup/api/", json.dumps({"email": "nope"}), content_type="application/json")
    assert bad.status_code == 400 and "email" in bad.json()["errors"]
    foreign = client.post("/signup/api/", json.dumps({"email": "x@example.com"}), content_type="application/json",
                          HTTP_ORIGIN="https://evil.example")
    assert foreign.status_code == 403
    settings.SIGNUP_ALLOWED_ORIGINS = ["https://shop.example"]
    preflight = client.options("/signup/api/", HTTP_ORIGIN="https://shop.example")
    assert preflight.status_code == 204 and preflight["Access-Control-Allow-Origin"] == "https://shop.example"
    allowed = client.post("/signup/api/", json.dumps({"email": "x@example.com"}), content_type="application/json",
                          HTTP_ORIGIN="https://shop.example")
    assert allowed.status_code == 202 and allowed["Access-Control-Allow-Origin"] == "https://shop.example"


def test_json_signup_same_answer_for_erased_and_honeypot(client, make_subscriber, topics):
    from subscribers.actions import ConsentEvidence, erase_subscriber

    erase_subscriber(make_subscriber(email="e@example.com"), evidence=ConsentEvidence(method="admin"))
    answers = [client.post("/signup/api/", json.dumps(body), content_type="application/json").json()
               for body in ({"email": "e@example.com"}, {"email": "n@example.com", "website": "x"},
                            {"email": "ok@example.com"})]
    assert answers[0] == answers[1] == answers[2]
    assert list(Signup.objects.values_list("email", flat=True)) == ["ok@example.com"]


# --- Privacy rights -------------------------------------------------------------------------


def test_export_downloads_json_and_logs_the_request(make_subscriber, link_token):
    person = make_subscriber(email="mine@example.com")
    token = link_token(person)
    client = csrf_client()
    client.get(f"/preferences/{token}/")
    response = client.post(f"/preferences/{token}/export/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["profile"]["email"] == "mine@example.com" and "preferences" in data
    assert PrivacyRequest.objects.filter(subscriber=person, kind="export", method="preference_center").exists()
    assert Client().get(f"/preferences/{token}/export/").status_code == 405  # never on GET


def test_erase_needs_confirmation_then_kills_every_link(make_subscriber, link_token):
    person = make_subscriber(email="bye@example.com")
    token = link_token(person)
    client = csrf_client()
    page = client.get(f"/preferences/{token}/erase/")
    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    csrf = client.cookies["csrftoken"].value
    unconfirmed = client.post(f"/preferences/{token}/erase/", {"csrfmiddlewaretoken": csrf})
    assert unconfirmed.status_code == 200 and Subscriber.objects.get(pk=person.pk).status == "subscribed"
    response = client.post(f"/preferences/{token}/erase/", {"csrfmiddlewaretoken": csrf, "confirm": "on"})
    assert response.status_code == 302 and response["Location"].startswith("/preferences/erased/")
    person.refresh_from_db()
    assert person.status == SubscriberStatus.ERASED and "bye" not in person.email
    assert PrivacyRequest.objects.filter(subscriber=person, kind="erasure", method="preference_center").exists()
    assert client.get(response["Location"]).status_code == 200
    assert client.get(f"/preferences/{token}/").status_code == 404
    assert client.get(f"/unsubscribe/{token}/").status_code == 404
