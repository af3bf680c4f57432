"""The room's live values on the page (notices.js): hidden without notices, a row per key
that follows the feed, and the current values again for a page opened later."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing
from tests.browser.test_page import open_room
from tests.factories import make_room, make_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def publish(base: str, token: str, key: str, data) -> None:
    request = urllib.request.Request(
        f"{base}/api/v1/rooms/prices/notices/", data=json.dumps({"key": key, "data": data}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_the_page_shows_the_rooms_notices_as_a_live_table(browsing: Browsing, user, ann_cookie):
    make_room(owner=user, slug="prices")
    token = make_token(user)
    page = browsing.page(session=ann_cookie)
    open_room(page, "prices")
    board = page.locator("#notices")
    expect(board).to_be_hidden()

    publish(browsing.base_url, token, "ACME", {"bid": 101.5, "ask": 101.7})
    publish(browsing.base_url, token, "<b>INIT</b>", "halted")
    expect(board).to_be_visible()
    acme = board.locator("tr[data-key='ACME']")
    expect(acme.locator(".notice-value")).to_have_text("bid: 101.5  ·  ask: 101.7")
    # Publisher text is text: the key shows as typed, no element is made of it.
    expect(board.locator(".notice-key").nth(1)).to_have_text("<b>INIT</b>")
    assert board.locator("b").count() == 0

    for bid in (102.0, 102.5, 103.0):
        publish(browsing.base_url, token, "ACME", {"bid": bid})
    expect(acme.locator(".notice-value")).to_have_text("bid: 103")
    expect(board.locator(".notice-row")).to_have_count(2)
    expect(board.locator(".notices-count")).to_have_text("2")

    later = browsing.page(session=ann_cookie)  # a tab opened afterwards gets the current values
    open_room(later, "prices")
    expect(later.locator("#notices tr[data-key='ACME'] .notice-value")).to_have_text("bid: 103")
    expect(later.locator("#notices .notice-row")).to_have_count(2)
    assert browsing.page_errors == []
