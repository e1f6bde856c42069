"""Drive the public pages in headless Chromium: links from sent emails, one-click unsubscribe, signup, privacy rights.

Set SCREENSHOTS=1 to write docs/screenshots/preference-*.png (desktop 1366x900 and mobile 390x844).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives
from django.utils import translation
from playwright.sync_api import expect

from preferences import api
from preferences.models import Frequency, SubscriberPreferences, Topic, TopicSubscription
from subscribers.models import ConsentRecord, PrivacyRequest, Subscriber, SubscriberStatus

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MOBILE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


@pytest.fixture(autouse=True)
def _public_pages(settings: Any, monkeypatch: Any, live_server: Any) -> None:
    import preferences.forms

    cache.clear()
    settings.PREFERENCE_CENTER_BASE_URL = live_server.url
    settings.BRAND_NAME = "Northwind Outfitters"
    settings.PRIVACY_NOTICE_URL = "https://example.com/privacy"
    monkeypatch.setattr(preferences.forms, "MIN_FILL_SECONDS", 0)  # the browser types faster than a person


@pytest.fixture
def topics(db: Any) -> list[Topic]:
    return [
        Topic.objects.create(name="Weekly newsletter", slug="newsletter", position=1, default_opt_in=True,
                             description="Stories, guides and what is new in the shop, every Friday."),
        Topic.objects.create(name="Offers", slug="offers", position=2,
                             description="Sales, discount codes and early access to the seasonal sale."),
        Topic.objects.create(name="New arrivals", slug="new-arrivals", position=3,
                             description="The first look at new products in your favourite categories."),
    ]


@pytest.fixture
def new_page(open_context: Any) -> Any:
    def make(viewport: dict[str, int] = DESKTOP, locale: str = "en-US") -> Any:
        return open_context(viewport=viewport, locale=locale, accept_downloads=True).new_page()

    return make


def no_server_error(page: Any) -> None:
    expect(page.locator("body")).not_to_contain_text("Server Error")
    expect(page.locator("body")).not_to_contain_text("Traceback")


def send_marketing_email(person: Subscriber) -> EmailMultiAlternatives:
    """Send a marketing email the way campaigns will: links and List-Unsubscribe headers from preferences.api."""
    message = EmailMultiAlternatives(
        subject="Spring sale", body=f"Manage your emails: {api.preference_url(person)}",
        from_email="shop@example.com", to=[person.email], headers=api.list_unsubscribe_headers(person),
    )
    message.send()
    return mail.outbox[-1]


def test_signup_confirm_then_change_topics_and_frequency(new_page: Any, live_server: Any, topics: list[Topic],
                                                         screenshot: Any) -> None:
    page = new_page()
    page.goto("/signup/")
    no_server_error(page)
    expect(page.locator("h1")).to_have_text("Sign up for Northwind Outfitters emails")
    expect(page.get_by_label("Weekly newsletter")).to_be_checked()  # default topic
    screenshot(page, "preference-signup.png")
    page.get_by_label("Email address").fill("Liga.Ozola@Example.com")
    page.get_by_label("First name (optional)").fill("Līga")
    page.get_by_label("Offers").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("h1")).to_have_text("Check your inbox")
    screenshot(page, "preference-signup-sent.png")
    assert not Subscriber.objects.exists()  # nothing until confirmed

    # The confirmation email that was actually sent, and its link.
    assert len(mail.outbox) == 1
    confirmation = mail.outbox[0]
    assert confirmation.to == ["Liga.Ozola@example.com"]
    link = re.search(r"https?://\S+/signup/confirm/\S+/", confirmation.body).group(0)
    page.goto(link)
    expect(page.locator("h1")).to_have_text("Confirm your subscription")
    assert not Subscriber.objects.exists()  # opening the link is not confirming (scanners open links)
    screenshot(page, "preference-confirm.png")
    page.get_by_role("button", name="Yes, subscribe me").click()
    expect(page.locator("h1")).to_have_text("You are subscribed")
    person = Subscriber.objects.get()
    assert person.status == SubscriberStatus.SUBSCRIBED and person.first_name == "Līga"
    evidence = ConsentRecord.objects.get(subscriber=person, purpose="email_marketing")
    assert evidence.method == "form" and evidence.ip_address == "127.0.0.1" and "Chrome" in evidence.user_agent
    assert set(TopicSubscription.objects.filter(subscriber=person).values_list("topic__slug", flat=True)) == {
        "newsletter", "offers"}

    # Into the preference center: change topics and frequency, save.
    page.get_by_role("link", name="Manage my preferences").click()
    expect(page.locator("h1")).to_contain_text("Hello Līga")
    no_server_error(page)
    page.get_by_label("Weekly newsletter").uncheck()
    page.get_by_label("New arrivals").check()
    page.get_by_label("At most one email a week").check()
    page.get_by_label("Use what I browse and buy to tailor my emails").uncheck()
    page.get_by_role("button", name="Save my preferences").click()
    expect(page.get_by_role("status")).to_contain_text("Your preferences are saved.")
    expect(page.get_by_label("New arrivals")).to_be_checked()
    expect(page.get_by_label("At most one email a week")).to_be_checked()

    prefs = SubscriberPreferences.objects.get(subscriber=person)
    assert prefs.frequency == Frequency.WEEKLY
    assert dict(TopicSubscription.objects.filter(subscriber=person).values_list("topic__slug", "subscribed")) == {
        "newsletter": False, "offers": True, "new-arrivals": True}
    ledger = list(ConsentRecord.objects.filter(subscriber=person, method="preference_center")
                  .order_by("id").values_list("purpose", "topic__slug", "granted"))
    assert ledger == [("topic", "newsletter", False), ("topic", "new-arrivals", True),
                      ("personalization", None, False)]
    gate = api.sending_preferences(subscriber_id=person.pk)
    assert gate.min_interval is not None and gate.min_interval.days == 7 and not gate.personalization_allowed


def test_one_click_post_and_the_harmless_get(new_page: Any, make_subscriber: Any, topics: list[Topic],
                                             screenshot: Any) -> None:
    person = make_subscriber(first_name="Jan", email="jan.kowalski@example.com", language="pl")
    sent = send_marketing_email(person)
    unsubscribe = sent.extra_headers["List-Unsubscribe"].strip("<>")
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # A link scanner (or the person) opening the link changes nothing: a confirmation page in Polish.
    page = new_page()
    page.goto(unsubscribe)
    no_server_error(page)
    expect(page.locator("html")).to_have_attribute("lang", "pl")
    expect(page.locator("h1")).to_have_text("Wypisać się z e-maili od Northwind Outfitters?")
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.SUBSCRIBED
    screenshot(page, "preference-unsubscribe-confirm.png")

    # The mail provider's RFC 8058 one-click POST: no cookies, no CSRF token.
    response = page.context.request.post(unsubscribe, form={"List-Unsubscribe": "One-Click"})
    assert response.status == 200
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.UNSUBSCRIBED
    record = ConsentRecord.objects.get(subscriber=person)
    assert (record.purpose, record.granted) == ("email_marketing", False)

    # Back on the page: unsubscribed, with an undo that works.
    page.goto(unsubscribe)
    expect(page.locator("h1")).to_have_text("Wypisano Cię z listy")
    screenshot(page, "preference-unsubscribed.png")
    page.get_by_role("button", name="Cofnij: chcę zostać na liście").click()
    expect(page.get_by_role("status")).to_contain_text("Witaj ponownie")
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.SUBSCRIBED

    # And the confirmation page's own button (CSRF-protected form).
    page.goto(unsubscribe)
    page.get_by_role("button", name="Wypisz mnie").click()
    expect(page.locator("h1")).to_have_text("Wypisano Cię z listy")
    assert Subscriber.objects.get(pk=person.pk).status == SubscriberStatus.UNSUBSCRIBED


def test_export_then_erase_then_the_address_cannot_be_imported(new_page: Any, make_subscriber: Any,
                                                               topics: list[Topic], tmp_path: Any,
                                                               screenshot: Any) -> None:
    from subscribers.actions import import_subscribers

    person = make_subscriber(first_name="Ayşe", email="ayse.yilmaz@example.com", language="tr")
    sent = send_marketing_email(person)
    link = re.search(r"https?://\S+/preferences/\S+/", sent.body).group(0)
    page = new_page()
    page.goto(link)
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    with page.expect_download() as download:
        page.get_by_role("button", name="Verilerimi indir").click()
    data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert data["profile"]["email"] == "ayse.yilmaz@example.com" and data["preferences"]["frequency"] == "every"
    assert PrivacyRequest.objects.filter(subscriber=person, kind="export").exists()

    page.get_by_role("link", name="Verilerimi sil").click()
    expect(page.locator("h1")).to_have_text("Verilerimi sil")
    screenshot(page, "preference-erase.png")
    page.get_by_role("button", name="Verilerimi kalıcı olarak sil").click()  # not ticked yet: refused
    expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_label("Bunun verilerimi kalıcı olarak sildiğini").check()
    page.get_by_role("button", name="Verilerimi kalıcı olarak sil").click()
    expect(page.locator("h1")).to_have_text("Verileriniz silindi")
    person.refresh_from_db()
    assert person.status == SubscriberStatus.ERASED and "ayse" not in person.email
    page.goto(link)  # the old link is dead (in the browser's language: the person's is erased too)
    expect(page.locator("h1")).to_have_text("This link does not work")

    csv = tmp_path / "list.csv"
    csv.write_text("email,first_name\nAYSE.YILMAZ@example.com,Ayşe\n", encoding="utf-8")
    result = import_subscribers(csv, consent_notice="list v1")
    assert result.counts["new"] == 0 and not Subscriber.objects.filter(email_key="ayse.yilmaz@example.com").exists()


@pytest.mark.parametrize("code", ["en", "lv", "uz", "pl", "tr", "bg"])
def test_preference_center_in_each_language(new_page: Any, make_subscriber: Any, topics: list[Topic], code: str,
                                            screenshot: Any) -> None:
    from campaigns import actions as campaign_actions
    from preferences.forms import frequency_choices

    person = make_subscriber(first_name="Mara", email=f"mara.{code}@example.com", language=code)
    TopicSubscription.objects.create(subscriber=person, topic=topics[0])
    delivery = campaign_actions.create_delivery(subscriber_id=person.pk, message_key="campaign:3",
                                                why={"topic": "Weekly newsletter", "segment": "Loyal shoppers"})
    campaign_actions.record_sent(delivery_id=delivery.pk, esp_name="test")
    link = re.search(r"https?://\S+/preferences/\S+/", send_marketing_email(person).body).group(0)
    for viewport, suffix in ((DESKTOP, ""), (MOBILE, "-mobile")):
        page = new_page(viewport=viewport)
        page.goto(link)
        no_server_error(page)
        expect(page.locator("html")).to_have_attribute("lang", code)
        with translation.override(code):
            title = translation.gettext("Save my preferences")
            weekly = str(dict(frequency_choices())[Frequency.WEEKLY])
        expect(page.get_by_role("button", name=title)).to_be_visible()
        expect(page.get_by_label(weekly)).to_be_visible()
        # Nothing overflows sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        if code in {"en", "lv"}:
            page.locator("details.why summary").click()
            screenshot(page, f"preference-center-{code}{suffix}.png")


def test_keyboard_only_person_can_save(new_page: Any, make_subscriber: Any, topics: list[Topic]) -> None:
    person = make_subscriber(email="keys@example.com", language="en")
    page = new_page()
    page.goto(api.preference_url(person))
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")  # first topic checkbox
    expect(page.get_by_label("Weekly newsletter")).to_be_focused()
    page.keyboard.press("Space")
    page.get_by_role("button", name="Save my preferences").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Your preferences are saved.")
    assert TopicSubscription.objects.get(subscriber=person).subscribed
    # Every form control has an accessible name.
    unnamed = page.evaluate("""() => [...document.querySelectorAll(
        'main input:not([type=hidden]), main select, main button')].filter(el => !el.closest('.hp')
        && !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
        && !(el.textContent || '').trim()).length""")
    assert unnamed == 0
