"""Smoke test of the main admin pages as a Marketing manager sees them, with screenshots for the docs."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from subscribers.models import ConsentRecord, Subscriber

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def no_server_error(page: Any) -> None:
    expect(page.locator("body")).not_to_contain_text("Server Error")
    expect(page.locator("body")).not_to_contain_text("Traceback")


def test_admin_pages_render(staff_page: Any, screenshot: Any) -> None:
    from subscribers.demo import seed_demo

    assert seed_demo(subscribers=60) == 60
    page = staff_page

    # Index: the apps the role may use, with the product's branding.
    page.goto("/admin/")
    no_server_error(page)
    expect(page.locator("#site-name")).to_contain_text("Marketing")
    expect(page.locator("#content-main")).to_contain_text("Subscribers")
    expect(page.locator("#content-main")).to_contain_text("CSV imports")
    screenshot(page, "admin-index.png")

    # Subscriber list: status badges, the Import CSV tool, paginated at 50.
    page.goto("/admin/subscribers/subscriber/")
    no_server_error(page)
    expect(page.get_by_role("link", name="Import CSV")).to_be_visible()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#result_list .mk-badge").first).to_be_visible()
    expect(page.locator("#changelist-filter")).to_contain_text("topic")
    screenshot(page, "subscribers.png")

    # Subscriber detail: the consent ledger is shown read-only.
    subscriber = (Subscriber.objects.filter(consent_records__isnull=False).order_by("pk").distinct().first())
    assert subscriber is not None
    entries = ConsentRecord.objects.filter(subscriber=subscriber).count()
    page.goto(f"/admin/subscribers/subscriber/{subscriber.pk}/change/")
    no_server_error(page)
    expect(page.locator("#subscriber_form")).to_be_visible()
    ledger = page.locator(".inline-group").filter(has_text="Consent history (append-only ledger)")
    expect(ledger).to_have_count(1)
    expect(ledger.locator("tbody tr.has_original, tbody tr.form-row:not(.empty-form)")).to_have_count(entries)
    expect(ledger.locator("input[type=checkbox][name$='-DELETE']")).to_have_count(0)
    expect(ledger.locator("td.delete input, th.delete")).to_have_count(0)
    # Only the management form's hidden inputs; no editable cell in any ledger row.
    expect(ledger.locator("tbody input:not([type=hidden]), tbody select, tbody textarea")).to_have_count(0)
    # Django renders an "Add another" row for inlines but hides it when adding is not allowed.
    expect(ledger.locator("a.addlink").filter(visible=True)).to_have_count(0)
    expect(page.locator("fieldset").filter(has_text="Status and consent")).to_contain_text("Current consent")
    screenshot(page, "subscriber-detail.png")

    # Topic list.
    page.goto("/admin/preferences/topic/")
    no_server_error(page)
    expect(page.locator("#result_list tbody tr").first).to_be_visible()
    screenshot(page, "topics.png")

    # Consent ledger list: append-only, so no "Add" button.
    page.goto("/admin/subscribers/consentrecord/")
    no_server_error(page)
    expect(page.locator("#result_list tbody tr").first).to_be_visible()
    expect(page.locator(".object-tools a")).to_have_count(0)
    expect(page.locator("a[href$='/subscribers/consentrecord/add/']")).to_have_count(0)
    expect(page.locator("#result_list input[type=checkbox]")).to_have_count(0)  # no delete action either
    screenshot(page, "consent-ledger.png")
