"""The connection's state on the page in a real Chromium: connecting, live, and offline with
the seconds until the next attempt and a button that tries again at once."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing, LiveChat
from tests.browser.test_page import open_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_outage_shows_a_countdown_and_retry_now_brings_the_room_back(
    browsing: Browsing, chat_server: LiveChat, ann_cookie
):
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    body, banner = ann.locator("body"), ann.locator("#banner")
    expect(body).to_have_attribute("data-connection", "live")

    chat_server.stop()
    expect(banner).to_contain_text("Offline. Reconnecting in")
    expect(banner.locator(".countdown")).to_have_text(re.compile(r"^\d+ s$"))
    expect(body).to_have_attribute("data-connection", "offline")
    retry = banner.get_by_role("button", name="Retry now")
    expect(retry).to_be_visible()

    # With the server still down, "Retry now" makes a real attempt, which fails into a new countdown.
    with ann.expect_websocket():
        retry.click()
    expect(banner.get_by_role("button", name="Retry now")).to_be_visible()

    chat_server.start()
    # The backoff may be up to 10 s by now: the button does not wait for it (clicked in the
    # page, so an attempt already under way, with no button, is no race).
    ann.evaluate("document.getElementById('retry-now')?.click()")
    expect(banner).to_be_hidden(timeout=5_000)
    expect(body).to_have_attribute("data-connection", "live")
    assert browsing.page_errors == []
