"""Drive the admin in headless Chromium (Debian's /usr/bin/chromium; Playwright never downloads a browser).

Run with ``pytest tests/e2e``; set ``SCREENSHOTS=1`` to also write full-page
screenshots into docs/screenshots/. Without Chromium the tests are skipped
locally and fail in CI (env ``CI`` set), so a broken CI image is noticed.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
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
def staff_page(open_context: Any, staff_user: Any) -> Any:
    """A logged-in admin page of a Marketing manager (not a superuser)."""
    page = open_context().new_page()
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", STAFF_USERNAME)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    if not page.locator("#user-tools").is_visible():
        raise AssertionError(f"Login as {STAFF_USERNAME} failed: {page.locator('.errornote').all_inner_texts()}")
    return page


@pytest.fixture
def open_context(browser: Any, live_server: Any) -> Iterator[Any]:
    """Return ``open_context(**options)``: a new browser context on the live server, closed after the test.

    After closing, the fixture waits until the live server has answered every
    request it received, so the test's database is flushed only when no server
    thread still uses it (see ``_RequestsInProgress``).
    """
    in_progress = _RequestsInProgress.on(live_server.thread.httpd)
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(**{"viewport": VIEWPORT, "locale": "en-US", **options,
                                         "base_url": live_server.url})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    try:
        yield make
    finally:
        try:
            for context in contexts:
                try:
                    context.close()
                except Exception:  # the browser may be gone already; the others still need closing
                    logging.getLogger(__name__).warning("could not close a browser context", exc_info=True)
        finally:
            in_progress.wait_until_idle()


class _RequestsInProgress:
    """Follow the live server's connections from their accept to the end of the thread that answers them.

    The server answers each connection in a daemon thread that nothing joins.
    Closing a browser stops new requests, not one the server has accepted (a
    favicon asked for after the page loaded, say). On in-memory SQLite that
    thread shares the test's connection, and the flush after the test fails
    with "database table is locked", leaving rows that break the next test.
    """

    def __init__(self, httpd: Any) -> None:
        self.httpd = httpd
        self.open: set[Any] = set()  # the sockets of the connections being answered
        self.changed = threading.Condition()
        process_request, process_request_thread = httpd.process_request, httpd.process_request_thread

        def counted_request(request: Any, client_address: Any) -> None:  # runs in the accepting thread
            with self.changed:
                self.open.add(request)
            try:
                process_request(request, client_address)
            except BaseException:
                self._done(request)
                raise

        def counted_thread(request: Any, client_address: Any) -> None:  # the thread process_request started
            try:
                process_request_thread(request, client_address)
            finally:
                self._done(request)  # (nothing to do for one accepted before the counter was installed)

        httpd.process_request = counted_request
        httpd.process_request_thread = counted_thread

    @classmethod
    def on(cls, httpd: Any) -> _RequestsInProgress:
        """The counter of this server, installed on first use (the live server lives for the whole session)."""
        counter = getattr(httpd, "_e2e_requests_in_progress", None)
        if counter is None:
            counter = httpd._e2e_requests_in_progress = cls(httpd)
        return counter

    def _done(self, request: Any) -> None:
        with self.changed:
            self.open.discard(request)
            self.changed.notify_all()

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        """Return once no connection is being answered or waits to be accepted, twice in a row 50 ms apart."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"The live server was still answering {len(self.open)} connection(s) "
                                     f"{timeout:.0f} s after the browser closed")
            with self.changed:
                busy = not self.changed.wait_for(lambda: not self.open, timeout=remaining)
            waiting = bool(select.select([self.httpd.socket], [], [], 0)[0])
            quiet = 0 if busy or waiting else quiet + 1
            time.sleep(0.05)


@pytest.fixture
def screenshot() -> Any:
    """Return ``shoot(page, name)``: a full-page PNG in docs/screenshots/, only when SCREENSHOTS=1."""

    def shoot(page: Any, name: str) -> None:
        if os.environ.get("SCREENSHOTS") != "1":
            return
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / name), full_page=True, animations="disabled")

    return shoot
