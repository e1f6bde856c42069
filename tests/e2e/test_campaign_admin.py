"""A marketer builds an A/B campaign in the admin, previews it, sends a test, schedules it and reads the results."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.content.models import (
    Campaign,
    CampaignSegment,
    CampaignStatus,
    ContentBlock,
    EmailLayout,
    Variant,
)
from campaigns.content.starter import create_starter_content
from campaigns.models import CapturedEmail
from campaigns.segments.models import Segment
from campaigns.sending.models import Recipient, RecipientStatus
from preferences.models import Topic, TopicSubscription
from subscribers.models import ConsentRecord, Subscriber

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
CAMPAIGN_NAME = "Winter sale 2026"
SUBJECT_A = '{{ first_name|default:"Friend" }}, the winter sale is on'
HTML_A = """<p>Hello {{ first_name|default:"there" }},</p>
<p>Our winter sale starts today: everything warm is 30% off.</p>
<p><a class="button" href="https://shop.example.com/winter-sale">Shop the sale</a></p>"""
SUBJECT_B = 'Last chance, {{ first_name|default:"friend" }}: 30% off ends Sunday'
HTML_B = """<p>Hi {{ first_name|default:"there" }} from {{ city|default:"your town" }},</p>
<p>Only three days left for 30% off coats, boots and scarves.</p>
<p><a class="button" href="https://shop.example.com/winter-sale?v=b">See what is left</a></p>"""
TEST_ADDRESS = "qa-inbox@example.com"


@pytest.fixture
def sendable(settings: Any) -> None:
    """Make sending independent of the wall clock, and bring back the default layout with its footer."""
    # The policy gate defers mail during the night in each person's time zone; the real clock decides otherwise.
    settings.QUIET_HOURS = ""
    # The transactional flush of earlier tests removed what the data migration created.
    create_starter_content(EmailLayout, ContentBlock)


@pytest.fixture
def audience(make_subscriber: Any, sendable: None) -> dict[str, Any]:
    """Everyone segment; four people who may get the mail, one outside the topic, one without consent."""
    topic = Topic.objects.create(name="Offers", slug="offers", description="Sales and discount codes")
    Segment.objects.create(name="Everyone", rules={"match": "all", "rules": []})
    granted_at = timezone.now() - dt.timedelta(days=10)

    def person(first_name: str, *, consent: bool = True, in_topic: bool | None = True, **fields: Any) -> Subscriber:
        subscriber = make_subscriber(first_name=first_name, email=f"{first_name.lower()}@example.com",
                                     timezone="Europe/Riga", **fields)
        if consent:
            ConsentRecord.objects.create(subscriber=subscriber, purpose="email_marketing", granted=True,
                                         method="form", occurred_at=granted_at, notice_version="v1")
        if in_topic is not None:
            TopicSubscription.objects.create(subscriber=subscriber, topic=topic, subscribed=in_topic)
        return subscriber

    eligible = [person("Anna", city="Riga"), person("Bruno"), person("Chloe", city="Tartu"), person("Dmitri")]
    skipped = [person("Dora", in_topic=False), person("Emil", consent=False, in_topic=None)]
    return {"topic": topic, "eligible": eligible, "skipped": skipped}


def choose_segment(page: Any, row: int, name: str) -> None:
    """Pick a segment in the audience inline's autocomplete (select2, results loaded from the server)."""
    page.locator(f"#id_audience-{row}-segment + .select2 .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill(name[:5])
    page.locator(".select2-container--open .select2-results__option", has_text=name).click()
    expect(page.locator(f"#id_audience-{row}-segment + .select2 .select2-selection__rendered")).to_have_text(
        re.compile(rf"{re.escape(name)}$"))


def fill_variant(page: Any, row: int, *, label: str, subject: str, html: str) -> None:
    page.fill(f"#id_variants-{row}-label", label)
    page.fill(f"#id_variants-{row}-subject", subject)
    page.fill(f"#id_variants-{row}-html", html)


def start_campaign(page: Any, *, name: str, topic: str) -> None:
    page.goto("/admin/campaigns/campaign/")
    page.locator(".object-tools").get_by_role("link", name=re.compile("Add campaign")).click()
    page.wait_for_url("**/admin/campaigns/campaign/add/")
    page.fill("#id_name", name)
    page.select_option("#id_topic", label=topic)
    page.fill("#id_from_name", "Northwind Outfitters")
    page.fill("#id_from_email", "shop@example.com")


def preview_as(page: Any, *, variant: str, subscriber: str) -> None:
    form = page.locator("form.mk-preview-form")
    form.get_by_label("Variant").select_option(label=variant)
    form.get_by_label("As subscriber").fill(subscriber)
    form.get_by_role("button", name="Show").click()
    page.wait_for_load_state()


def activate_below_preview(control: Any) -> None:
    """Press Enter on a control that sits below the HTML preview instead of clicking it.

    The preview is a sandboxed iframe, which Chromium renders in a process of its own, and Chromium hands a
    mouse event to the frame that was under the pointer in the last picture it composited. Playwright scrolls
    the control into view and clicks at once; when the composited picture still shows the preview at that
    spot (the page has not been repainted since the scroll, which happens on a busy machine), the click lands
    in the preview and the page never sees it: no error, the page just stays as it was. A key press goes to
    the focused control whatever was painted, and activates it as a click does.
    """
    control.press("Enter")


def test_build_preview_test_send_schedule_and_read_results(staff_page: Any, audience: dict[str, Any],
                                                           screenshot: Any) -> None:
    page = staff_page
    anna = audience["eligible"][0]

    # 1. Build the campaign: name, topic, audience, two variants.
    start_campaign(page, name=CAMPAIGN_NAME, topic="Offers")
    choose_segment(page, 0, "Everyone")
    fill_variant(page, 0, label="A", subject=SUBJECT_A, html=HTML_A)
    page.locator("#variants-group .add-row a").click()
    fill_variant(page, 1, label="B", subject=SUBJECT_B, html=HTML_B)
    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_url(re.compile(r".*/admin/campaigns/campaign/\d+/change/$"))
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator(".errornote")).to_have_count(0)

    campaign = Campaign.objects.get(name=CAMPAIGN_NAME)
    assert campaign.status == CampaignStatus.DRAFT and campaign.topic == audience["topic"]
    assert campaign.created_by is not None and campaign.created_by.username == "manager"
    assert list(campaign.audience.values_list("segment__name", "exclude")) == [("Everyone", False)]
    assert list(campaign.variants.values_list("label", "subject")) == [("A", SUBJECT_A), ("B", SUBJECT_B)]
    expect(page.locator(".mk-controls")).to_contain_text("Status: Draft")
    expect(page.locator(".mk-controls input[value=Schedule]")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "campaign-edit.png")

    # 2. Check and preview: the check passes; preview A and B as Anna; send a test of B.
    page.locator(".object-tools").get_by_role("link", name="Check and preview").click()
    page.wait_for_url(f"**/admin/campaigns/campaign/{campaign.pk}/preview/")
    expect(page.locator(".mk-ok")).to_contain_text("Ready")
    expect(page.locator(".mk-problems.errornote")).to_have_count(0)
    subject = page.get_by_test_id("preview-subject")
    expect(subject).to_have_text("Friend, the winter sale is on")  # no subscriber chosen yet: the fallback shows
    preview_as(page, variant="A – " + SUBJECT_A, subscriber=anna.email)
    expect(page.get_by_role("link", name=anna.email, exact=True)).to_have_attribute(
        "href", f"/admin/subscribers/subscriber/{anna.pk}/change/")
    expect(subject).to_have_text("Anna, the winter sale is on")
    text_part = page.locator("details").filter(has=page.locator("pre.mk-text-part"))
    activate_below_preview(text_part.locator("summary"))
    expect(text_part).to_have_attribute("open", "")
    expect(text_part.locator("pre")).to_contain_text("Hello Anna,")

    preview_as(page, variant="B – " + SUBJECT_B, subscriber=anna.email)
    expect(subject).to_have_text("Last chance, Anna: 30% off ends Sunday")
    expect(text_part.locator("pre")).to_contain_text("Hi Anna from Riga,")

    # The live server runs in this process with the test settings: mail goes to the locmem outbox, not to the
    # capture backend's table.
    assert django_settings.EMAIL_BACKEND == LOCMEM
    mail.outbox.clear()
    test_form = page.locator("form").filter(has=page.get_by_role("button", name="Send test"))
    test_form.get_by_label("To").fill(TEST_ADDRESS)
    activate_below_preview(test_form.get_by_role("button", name="Send test"))
    expect(page.locator(".messagelist")).to_contain_text("Sent a test to 1 address.")
    expect(subject).to_have_text("Last chance, Anna: 30% off ends Sunday")  # still previewing B as Anna
    assert len(mail.outbox) == 1
    test_mail = mail.outbox[0]
    assert test_mail.to == [TEST_ADDRESS]
    assert test_mail.subject == "[Test] Last chance, Anna: 30% off ends Sunday"
    assert test_mail.from_email == "Northwind Outfitters <shop@example.com>"
    test_html = test_mail.alternatives[0][0]
    assert "Hi Anna from Riga," in test_html
    assert "Unsubscribe</a>" in test_html and "Choose what you get</a>" in test_html  # the default layout's footer
    assert not CapturedEmail.objects.exists()
    assert not Recipient.objects.exists()  # a test send is not a campaign send
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "campaign-preview.png")

    # 3. Back on the campaign: schedule it.
    mail.outbox.clear()
    page.locator(".breadcrumbs").get_by_role("link", name=CAMPAIGN_NAME).click()
    page.wait_for_url(f"**/admin/campaigns/campaign/{campaign.pk}/change/")
    page.locator(".mk-controls input[value=Schedule]").click()
    page.wait_for_url(f"**/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator(".messagelist")).to_contain_text("Scheduled and sending")
    # No dispatch_campaigns() call is needed here: schedule_campaign queues the dispatch with
    # transaction.on_commit, the live server's requests run in autocommit (no ATOMIC_REQUESTS), so the callback
    # fires as soon as the schedule commits; the eager Celery task then starts the campaign, and the chunk tasks
    # it queues (on_commit again, outside any transaction by then) send before the redirect is answered.
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT, campaign.status

    # 4. Reload and read progress and results.
    page.reload()
    expect(page.locator(".mk-controls")).to_contain_text("Status: Sent")
    expect(page.locator(".mk-controls input[value=Schedule]")).to_have_count(0)
    progress = page.locator(".mk-send-progress")
    people = len(audience["eligible"]) + len(audience["skipped"])
    expect(progress.locator("[data-field=percent]")).to_have_text("100%")
    expect(progress.locator("[data-field=total]")).to_have_text(str(people))
    expect(progress.locator("[data-field=sent]")).to_have_text(str(len(audience["eligible"])))
    expect(progress.locator("[data-field=skipped]")).to_have_text(str(len(audience["skipped"])))
    expect(progress.locator(".mk-bar")).to_have_attribute("aria-valuenow", "100")
    reasons = progress.locator("table.mk-kv").filter(has_text="Not sent, by reason")
    expect(reasons.locator("tr").filter(has_text="is not subscribed to this topic").locator("td").nth(1)) \
        .to_have_text("1")
    expect(reasons.locator("tr").filter(has_text="has no email-marketing consent").locator("td").nth(1)) \
        .to_have_text("1")

    results = page.locator("table.mk-results").first
    rows = results.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").first).to_have_text("A")
    expect(rows.nth(1).locator("td").first).to_have_text("B")
    expect(results.locator("thead")).to_contain_text("Chance best")
    sent_per_variant = [int(rows.nth(i).locator("td").nth(2).inner_text()) for i in range(2)]
    assert sum(sent_per_variant) == len(audience["eligible"])
    expect(page.locator("table.mk-results").nth(1)).to_contain_text("Everyone")
    # The 15-column table fits its row on a laptop screen instead of being cut off at the right.
    assert page.locator(".field-results_display div.readonly").evaluate("el => el.scrollWidth <= el.clientWidth")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "campaign-results.png")
    for width in (1280, 800):  # nothing sticks out sideways in a narrower window either
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), width

    # Exactly one message per eligible person, none to the people the gate skipped, each in its variant.
    eligible = {p.email for p in audience["eligible"]}
    received = Counter(address for message in mail.outbox for address in message.to)
    assert received == Counter(eligible)
    assert not received.keys() & {p.email for p in audience["skipped"]}
    variants = {v.pk: v.label for v in Variant.objects.filter(campaign=campaign)}
    recipients = {r.subscriber.email: r for r in Recipient.objects.filter(campaign=campaign)
                  .select_related("subscriber")}
    assert {email for email, r in recipients.items() if r.status == RecipientStatus.SENT} == eligible
    for message in mail.outbox:
        person = Subscriber.objects.get(email=message.to[0])
        label = variants[recipients[message.to[0]].variant_id]
        expected = (f"{person.first_name}, the winter sale is on" if label == "A"
                    else f"Last chance, {person.first_name}: 30% off ends Sunday")
        assert message.subject == expected
        assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sorted(Counter(variants[r.variant_id] for r in recipients.values()
                          if r.status == RecipientStatus.SENT).values()) == sorted(sent_per_variant)
    skipped = {r.subscriber.first_name: r.reason for r in recipients.values() if r.status == RecipientStatus.SKIPPED}
    assert set(skipped) == {"Dora", "Emil"}
    assert "not subscribed to this topic" in skipped["Dora"]
    assert "no email-marketing consent" in skipped["Emil"]


def test_a_variant_that_does_not_compile_is_refused_with_its_line(staff_page: Any, audience: dict[str, Any]) -> None:
    page = staff_page
    start_campaign(page, name="Broken template", topic="Offers")
    choose_segment(page, 0, "Everyone")
    fill_variant(page, 0, label="A", subject=SUBJECT_A,
                 html='<p>Hello {{ first_name|default:"there" }},</p>\n<p>Our sale.</p>\n{% if %}yes{% endif %}\n')
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".errornote")).to_be_visible()
    error = page.locator("#variants-group .field-html .errorlist")
    expect(error).to_have_text("Line 3: Unexpected end of expression in if tag.")
    assert re.search(r"/admin/campaigns/campaign/add/$", page.url)
    assert not Campaign.objects.exists() and not Variant.objects.exists()
    # The refused content comes back as typed, ready to fix.
    expect(page.locator("#id_variants-0-html")).to_have_value(re.compile(r"\{% if %\}yes"))
    page.fill("#id_variants-0-html", '<p>Hello {{ first_name|default:"there" }},</p>\n<p>Our sale.</p>\n')
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/campaigns/campaign/")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Campaign.objects.get().variants.get().html.endswith("<p>Our sale.</p>")


def test_the_html_preview_shows_the_whole_message(staff_page: Any, audience: dict[str, Any]) -> None:
    campaign = Campaign.objects.create(name="Preview frame", topic=audience["topic"])
    CampaignSegment.objects.create(campaign=campaign, segment=Segment.objects.get(name="Everyone"))
    Variant.objects.create(campaign=campaign, label="A", subject=SUBJECT_A, html=HTML_A)
    anna = audience["eligible"][0]
    page = staff_page
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/preview/?subscriber={anna.email}")
    expect(page.get_by_test_id("preview-subject")).to_have_text("Anna, the winter sale is on")
    frame = page.locator("iframe.mk-mail-frame")
    srcdoc = frame.get_attribute("srcdoc") or ""
    assert srcdoc.startswith("<!DOCTYPE html>") and srcdoc.rstrip().endswith("</html>"), srcdoc[:80]
    body = page.frame_locator("iframe.mk-mail-frame").locator("body")
    expect(body).to_contain_text("Hello Anna,")
    expect(body).to_contain_text("Unsubscribe")
    box = frame.bounding_box()
    assert box is not None and box["height"] >= 500, box
