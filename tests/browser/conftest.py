"""Browser tests: a live Daphne on the test database, Debian's Chromium, screenshots on failure.

Playwright's sync API marks its own event loop as running in this thread between calls
(playwright/_impl/_greenlets.py, wait_for_future), and Django then refuses ORM calls here
as "from an async context". So a test takes the browser lazily, after every fixture has
written its rows, and lets go of it before pytest-django flushes the database; a test that
writes rows while it holds the browser does it with ``in_db_thread``.

One Chromium serves every browser test of a worker (``SharedChromium``): starting the
Playwright driver and Chromium costs about 1.5 s of CPU, more than many of these tests.
Each test gets fresh browser contexts (no cookies, storage or pages of another test).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.factories import make_token
from tests.servers import ROOT, Server, start_server

ARTIFACTS = ROOT / "artifacts" / "browser"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"  # CHAT_SCREENSHOTS_DIR overrides (scripts/screenshots.py)
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1280, "height": 800}

expect.set_options(timeout=10_000)

_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


def chromium_executable() -> str | None:
    """Debian's Chromium, if installed (Playwright cannot download its own here)."""
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Keep each phase's report on the item, so fixture teardown knows whether the test failed."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _failed(item: pytest.Item) -> bool:
    return any(report.failed for report in item.stash.get(_reports, {}).values())


def _artifact_stem(item: pytest.Item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)


@pytest.fixture(autouse=True)
def _chromium_required() -> None:
    """Skip without Chromium, unless CHAT_REQUIRE_BROWSER=1 (CI), where that is a failure."""
    if chromium_executable() is None:
        reason = "Chromium not found at /usr/bin/chromium or on PATH (apt-get install chromium)"
        if os.environ.get("CHAT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; CHAT_REQUIRE_BROWSER=1 forbids skipping the browser tests")
        pytest.skip(reason)


def screenshots_dir() -> Path:
    """Where the tests' screenshots for the docs go: CHAT_SCREENSHOTS_DIR, else
    artifacts/screenshots/ (a CI run leaves the checkout clean); created if missing.
    ``python scripts/screenshots.py`` points it at docs/screenshots/, which the README shows."""
    path = Path(os.environ.get("CHAT_SCREENSHOTS_DIR") or SCREENSHOTS)
    path.mkdir(parents=True, exist_ok=True)
    return path


def in_db_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an ORM call in a thread of its own (see the module docstring); return its result."""

    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


class LiveChat:
    """One Daphne process on the test database that a test may stop and start again on its port."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.starts = 0
        self.server: Server | None = None
        self.port: int | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log_dir = self.log_dir / f"start-{self.starts}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.server = start_server(redis_url=None, log_dir=log_dir, port=self.port)
        self.port = self.server.port

    def stop(self) -> None:
        if self.server is None:
            return
        process, self.server = self.server.process, None
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def chat_server(general, tmp_path) -> Iterator[LiveChat]:
    """A live Daphne serving the page, on the configured channel layer (REDIS_URL or in-memory)."""
    live = LiveChat(tmp_path / "daphne")
    yield live
    live.stop()


class SharedChromium:
    """One Playwright driver and Chromium for a whole session, started on first use.

    ``acquire`` hands the browser to a test and ``release`` takes it back: between tests
    Playwright's loop must not look like it runs in this thread (Django's ORM refuses to
    work then, and pytest-asyncio cannot start its own loop), so ``release`` clears the
    thread's running loop and ``acquire`` sets it again before the next Playwright call.
    """

    def __init__(self) -> None:
        self._playwright_cm = None
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def acquire(self) -> Browser:
        if self._browser is not None:
            asyncio.events._set_running_loop(self._loop)
            if self._browser.is_connected():
                return self._browser
            self.stop()  # Chromium died (or a test killed it): start a new one
        self._playwright_cm = sync_playwright()
        self._playwright = self._playwright_cm.start()
        self._loop = asyncio.events._get_running_loop()
        self._browser = self._playwright.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        return self._browser

    def release(self) -> None:
        if self._browser is not None:
            asyncio.events._set_running_loop(None)

    def stop(self) -> None:
        if self._playwright_cm is not None:
            asyncio.events._set_running_loop(self._loop)
            try:
                self._playwright_cm.__exit__(None, None, None)
            finally:
                asyncio.events._set_running_loop(None)
        self._playwright_cm = self._playwright = self._browser = self._loop = None


@pytest.fixture(scope="session")
def shared_chromium() -> Iterator[SharedChromium]:
    chromium = SharedChromium()
    yield chromium
    chromium.stop()


class Browsing:
    """One test's use of the shared Chromium, taken on first use; one context per user,
    pages that record dialogs and errors."""

    def __init__(self, base_url: str, chromium: SharedChromium):
        self.base_url = base_url
        self._chromium = chromium
        self._browser: Browser | None = None
        self.contexts: list[BrowserContext] = []
        self.dialogs: list[str] = []
        self.page_errors: list[str] = []

    @property
    def browser(self) -> Browser:
        if self._browser is None:
            self._browser = self._chromium.acquire()
        return self._browser

    def context(
        self, *, session: str | None = None, viewport: dict | None = None, timezone_id: str = "UTC", **options: Any
    ) -> BrowserContext:
        """A new browser profile; ``session`` is a Django session key to start logged in;
        ``options`` go to Playwright's new_context (color_scheme, device_scale_factor …)."""
        context = self.browser.new_context(
            base_url=self.base_url, viewport=viewport or LAPTOP, locale="en-US", timezone_id=timezone_id, **options
        )
        context.set_default_timeout(15_000)
        if session is not None:
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": self.base_url}])
        self.contexts.append(context)
        return context

    def page(self, context: BrowserContext | None = None, *, session: str | None = None) -> Page:
        """A tab in ``context`` (or in a new one); any dialog is recorded and dismissed."""
        page = (context or self.context(session=session)).new_page()
        page.on("dialog", self._on_dialog)
        page.on("pageerror", lambda error: self.page_errors.append(f"{page.url}: {error}"))
        return page

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def screenshot_all(self, stem: str) -> list[Path]:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        saved = []
        for i, context in enumerate(self.contexts):
            for j, page in enumerate(context.pages):
                path = ARTIFACTS / f"{stem}-context{i}-page{j}.png"
                try:
                    page.screenshot(path=path, full_page=True, timeout=5_000)
                    saved.append(path)
                except Exception as exc:  # a crashed page must not hide the test's own failure
                    print(f"screenshot of {page.url} failed: {exc!r}")
        return saved

    def close(self) -> None:
        """Close this test's contexts (their pages, cookies and sockets) and give the browser back."""
        if self._browser is None:
            return
        try:
            for context in self.contexts:
                try:
                    context.close()
                except Exception as exc:  # a crashed context must not hide the test's own failure
                    print(f"closing a browser context failed: {exc!r}")
        finally:
            self.contexts.clear()
            self._browser = None
            self._chromium.release()


@pytest.fixture
def browsing(request, chat_server: LiveChat, shared_chromium: SharedChromium) -> Iterator[Browsing]:
    """Chromium against ``chat_server``; on failure every open page is saved to artifacts/browser/."""
    browsing = Browsing(chat_server.url, shared_chromium)
    yield browsing
    try:
        if _failed(request.node) and browsing.contexts:
            stem = _artifact_stem(request.node)
            for path in browsing.screenshot_all(stem):
                print(f"screenshot: {path}")
            for log in sorted(chat_server.log_dir.glob("*/daphne-*.log")):
                shutil.copy(log, ARTIFACTS / f"{stem}-{log.parent.name}-{log.name}")
    finally:
        browsing.close()


# --- people: tests/conftest.py has `user` (ann), `other` (bob), `ann_cookie`, `bob_cookie` --


@pytest.fixture
def bob_token(other) -> str:
    return make_token(other)
