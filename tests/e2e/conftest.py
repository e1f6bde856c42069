"""Drive the admin in headless Chromium (Debian's /usr/bin/chromium; Playwright never downloads a browser).

Run with ``pytest tests/e2e``; set ``SCREENSHOTS=1`` to also write full-page
screenshots into docs/screenshots/. Without Chromium the tests are skipped
locally and fail in CI (env ``CI`` set), so a broken CI image is noticed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 900}
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
STAFF_USERNAME = "manager"
STAFF_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="package", autouse=True)
def _allow_orm_beside_playwright() -> Iterator[None]:
    """Let the ORM run in the test thread while Playwright's sync API keeps an asyncio loop there.

    Without it Django raises SynchronousOnlyOperation. The variable is set for this package only, not at
    import: set for the whole session it would leak into the rest of the suite, e.g. into the environment
    of ``manage.py check --deploy`` subprocesses, which then fail with async.E001.
    """
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Package scope, not session: the browser (and the asyncio loop Playwright runs in this thread) is gone
# before the rest of the suite runs, and before the session's live server stops.
@pytest.fixture(scope="package")
def browser(_allow_orm_beside_playwright: None) -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium`"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)  # room for a slow CI machine; a passing check returns at once
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def staff_user(db: Any) -> Any:
    from django.contrib.auth.models import Group, Permission, User

    from subscribers.roles import MARKETING_MANAGER, sync_staff_groups

    # The migration creates the groups, but the flush after each transactional test empties the tables and
    # the post_migrate re-sync that follows misses apps listed after "subscribers"; sync again (idempotent).
    sync_staff_groups(Group, Permission)
    group = Group.objects.get(name=MARKETING_MANAGER)
    user = User.objects.create_user(
        STAFF_USERNAME, email="manager@example.com", password=STAFF_PASSWORD,
        first_name="Mara", last_name="Manager", is_staff=True,
    )
    user.groups.add(group)
    return user


@pytest.fixture
def staff_page(browser: Any, live_server: Any, staff_user: Any) -> Iterator[Any]:
    """A logged-in admin page of a Marketing manager (not a superuser)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", STAFF_USERNAME)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    if not page.locator("#user-tools").is_visible():
        raise AssertionError(f"Login as {STAFF_USERNAME} failed: {page.locator('.errornote').all_inner_texts()}")
    try:
        yield page
    finally:
        context.close()
        _finish_requests(live_server)


def _finish_requests(live_server: Any) -> None:
    """Wait for the live server's request threads to end before the test's database is flushed.

    Closing the browser stops new requests, not one a server thread is still
    answering (a preview the page fetched, say). On SQLite that thread's open
    transaction locks a table, and the flush after the test fails with
    "database table is locked", leaving rows that break the next test.
    """
    httpd = getattr(getattr(live_server, "thread", None), "httpd", None)
    for thread in list(getattr(httpd, "_threads", None) or []):
        thread.join(timeout=30)


@pytest.fixture
def screenshot() -> Any:
    """Return ``shoot(page, name)``: a full-page PNG in docs/screenshots/, only when SCREENSHOTS=1."""

    def shoot(page: Any, name: str) -> None:
        if os.environ.get("SCREENSHOTS") != "1":
            return
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / name), full_page=True, animations="disabled")

    return shoot
