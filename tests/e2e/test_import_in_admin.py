"""A marketer imports a Mailchimp export through the admin: upload, review the dry run, confirm."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from subscribers.models import ConsentMethod, ConsentPurpose, ConsentRecord, ImportJob, ImportStatus, Subscriber

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HEADER = ["Email Address", "First Name", "Last Name", "Birthday", "CC", "TIMEZONE", "TAGS", "MEMBER_RATING"]
GOOD_ROWS = [
    ["anna.berzina@example.com", "Anna", "Bērziņa", "03/14", "LV", "Europe/Riga", '"VIP","Newsletter"', "4"],
    ["jan.kowalski@example.com", "Jan", "Kowalski", "11/02", "PL", "Europe/Warsaw", '"Newsletter"', "3"],
    ["emily.smith@example.com", "Emily", "Smith", "", "US", "America/Chicago", "", "2"],
    ["oliver.taylor@example.co.uk", "Oliver", "Taylor", "07/30", "GB", "Europe/London", '"Shop"', "5"],
    ["lena.mueller@example.de", "Lena", "Müller", "01/01", "DE", "Europe/Berlin", "", "1"],
]
BAD_EMAIL_ROW = ["not-an-address", "Broken", "Row", "", "LV", "Europe/Riga", "", "1"]
DUPLICATE_ROW = ["Anna.Berzina@example.com", "Anna", "Again", "", "LV", "Europe/Riga", "", "1"]
# Spreadsheet row numbers: the header is row 1, the good rows are 2-6.
BAD_EMAIL_LINE = 7
DUPLICATE_LINE = 8


def write_mailchimp_csv(tmp_path: Path) -> Path:
    path = tmp_path / "mailchimp-members.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows([*GOOD_ROWS, BAD_EMAIL_ROW, DUPLICATE_ROW])
    return path


def upload(page: Any, live_server: Any, csv_path: Path, *, skip_bad_rows: bool, screenshot: Any = None) -> None:
    """From the subscriber list, open "Import CSV", fill the form and submit it."""
    page.goto("/admin/subscribers/subscriber/")
    page.get_by_role("link", name="Import CSV").click()
    page.wait_for_url("**/admin/subscribers/importjob/add/")
    expect(page.locator("h1")).to_contain_text("Import subscribers from CSV")
    page.set_input_files("#id_file", str(csv_path))
    page.fill("#id_consent_notice", "Mailchimp newsletter signup, 2025")
    if skip_bad_rows:
        page.check("#id_skip_bad_rows")
    if screenshot:
        screenshot(page, "import-upload.png")
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url(re.compile(r".*/admin/subscribers/importjob/\d+/change/$"))


def stat(page: Any, kind: str) -> str:
    return page.locator(f".mk-stat.{kind} b").inner_text().strip()


def test_import_mailchimp_export_with_dry_run_and_confirm(staff_page: Any, live_server: Any, tmp_path: Path,
                                                        screenshot: Any) -> None:
    page = staff_page
    before = Subscriber.objects.count()
    upload(page, live_server, write_mailchimp_csv(tmp_path), skip_bad_rows=True, screenshot=screenshot)

    # The dry run ran in the background (eagerly in tests) and the page shows its result.
    expect(page.locator("#status-label")).to_have_text("Checked, waiting for confirmation")
    assert stat(page, "new") == "5"
    assert stat(page, "skipped") == "1"
    assert stat(page, "error") == "1"
    assert stat(page, "updated") == "0"
    expect(page.locator("#import-message")).to_contain_text("Dry run: 5 new")

    issues = page.locator("#import-issues tbody tr")
    expect(issues).to_have_count(2)
    bad = issues.filter(has_text="not-an-address")
    expect(bad.locator("td").nth(0)).to_have_text(str(BAD_EMAIL_LINE))
    expect(bad.locator("td").nth(2)).to_have_text("error")
    expect(bad.locator("td").nth(3)).to_have_text("Email Address")
    expect(bad.locator("td").nth(4)).to_contain_text("is not a valid email address")
    duplicate = issues.filter(has_text="same address as row 2")
    expect(duplicate.locator("td").nth(0)).to_have_text(str(DUPLICATE_LINE))
    expect(duplicate.locator("td").nth(2)).to_have_text("skipped")
    expect(page.locator("#import-preview tbody tr")).to_have_count(7)
    # MEMBER_RATING describes Mailchimp, not the person: listed as not imported.
    expect(page.get_by_text("Not imported")).to_contain_text("MEMBER_RATING")
    screenshot(page, "import-dry-run.png")

    # Nothing is written before the marketer confirms.
    assert Subscriber.objects.count() == before
    assert not ConsentRecord.objects.exists()
    job = ImportJob.objects.get()
    assert job.status == ImportStatus.CHECKED

    confirm = page.locator("#confirm-import")
    expect(confirm).to_have_value("Confirm and import 5 rows")
    confirm.click()
    expect(page.locator("#status-label")).to_have_text("Imported")
    expect(page.locator(".messagelist")).to_contain_text("The import has started.")
    expect(page.locator("#import-message")).to_contain_text("Imported 5 new")
    expect(page.locator("#confirm-import")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Download the row-by-row report"))).to_be_visible()
    screenshot(page, "import-done.png")

    job.refresh_from_db()
    assert job.status == ImportStatus.DONE
    assert (job.new_count, job.skipped_count, job.error_count) == (5, 1, 1)
    assert Subscriber.objects.count() == before + 5
    assert not Subscriber.objects.filter(email_key="not-an-address").exists()

    expected = {row[0]: row for row in GOOD_ROWS}
    people = {s.email: s for s in Subscriber.objects.filter(email__in=expected)}
    assert set(people) == set(expected)
    for email, (_, first, last, birthday, country, tz, _tags, _rating) in expected.items():
        person = people[email]
        assert (person.first_name, person.last_name) == (first, last)
        assert person.country == country
        assert person.timezone == tz
        assert person.status == "subscribed"
        if birthday:
            month, day = (int(p) for p in birthday.split("/"))
            assert (person.birthday_month, person.birthday_day) == (month, day)
        consents = list(person.consent_records.all())
        assert len(consents) == 1, email
        consent = consents[0]
        assert consent.method == ConsentMethod.IMPORT
        assert consent.purpose == ConsentPurpose.EMAIL_MARKETING
        assert consent.granted is True
        assert consent.notice_version == "Mailchimp newsletter signup, 2025"
        assert consent.actor_id == job.created_by_id
    anna = people["anna.berzina@example.com"]
    assert anna.last_name == "Bērziņa"  # the duplicate row later in the file did not overwrite it
    assert anna.tags == ["VIP", "Newsletter"]


def test_import_with_errors_cannot_be_confirmed_without_skip_bad_rows(staff_page: Any, live_server: Any,
                                                                     tmp_path: Path) -> None:
    page = staff_page
    before = Subscriber.objects.count()
    upload(page, live_server, write_mailchimp_csv(tmp_path), skip_bad_rows=False)

    expect(page.locator("#status-label")).to_have_text("Checked, waiting for confirmation")
    assert stat(page, "error") == "1"
    expect(page.locator("#confirm-import")).to_have_count(0)
    expect(page.locator("#import-message")).to_contain_text("Fix the errors or choose “skip bad rows”")
    expect(page.locator("#import-issues")).to_contain_text("Email Address")
    # Cancelling is still possible, and nothing was imported.
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    assert Subscriber.objects.count() == before
    assert ImportJob.objects.get().can_confirm is False
