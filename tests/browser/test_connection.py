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


# The page's ChatSocket against a stand-in WebSocket that the server "closes" at once with
# the given codes; setTimeout runs at once but records the delay asked for.
_CLOSE_SEQUENCE = """async (codes) => {
  const { ChatSocket } = await import("/static/chat/socket.js");
  const realSetTimeout = window.setTimeout.bind(window);
  const delays = [], statuses = [];
  let opened = 0;
  class FakeWebSocket {
    static OPEN = 1;
    constructor() {
      opened += 1;
      this.readyState = 0;
      const code = codes.shift();
      realSetTimeout(() => this.onclose?.({ code }), 0);
    }
    send() {}
    close() {}
  }
  window.WebSocket = FakeWebSocket;
  window.setTimeout = (fn, ms) => { delays.push(ms); return realSetTimeout(fn, 0); };
  const socket = new ChatSocket({ url: "ws://unused/", onStatus: (status) => statuses.push(status) });
  socket.connect();
  await new Promise((done) => realSetTimeout(done, 300));
  return { delays, statuses, opened };
}"""


def test_1013_is_retried_with_growing_jittered_backoff_and_4401_is_not_retried(browsing: Browsing):
    page = browsing.page()  # the login page: no socket of its own
    page.goto(f"{browsing.base_url}/accounts/login/")
    result = page.evaluate(_CLOSE_SEQUENCE, [1013, 1013, 1013, 1013, 1013, 4401])
    # Equal jitter: attempt n waits between half and all of min(30 s, 2 s * 2^n).
    ceilings = [min(30_000, 2_000 * 2**n) for n in range(5)]
    assert len(result["delays"]) == 5
    for delay, ceiling in zip(result["delays"], ceilings):
        assert ceiling / 2 <= delay <= ceiling
    # 4401: logged out, no further attempt.
    assert result["opened"] == 6
    assert result["statuses"][-1] == "logged_out"
    assert browsing.page_errors == []
