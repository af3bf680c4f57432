"""The live room list (badges.js): unread badges and the order of the rooms change as
messages arrive over the page's one socket, without polling; a new direct message and a
room one is added to appear at once."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing, LiveChat
from tests.browser.test_live_page import api, post
from tests.browser.test_page import open_room
from tests.factories import make_room, make_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_badges_and_order_follow_the_socket_and_new_rooms_appear_live(
    browsing: Browsing, chat_server: LiveChat, general, user, other, ann_cookie
):
    ann_token, bob_token = make_token(user), make_token(other)
    for slug in ("alpha", "beta", "gamma"):
        make_room(owner=user, slug=slug)
    make_room(owner=other, slug="secret", private=True)
    post(chat_server, bob_token, "general", "hello")

    ann = browsing.page(session=ann_cookie)
    api_calls: list[str] = []
    ann.on("request", lambda r: "/api/v1/" in r.url and api_calls.append(f"{r.method} {r.url}"))
    open_room(ann, "alpha")
    rooms = ann.locator('.sidebar .room-nav[data-kind="rooms"] > li')
    expect(rooms).to_have_count(4)
    order = rooms.evaluate_all("items => items.map(i => i.dataset.room)")
    assert order[0] == "general"  # the most recent activity first
    api_calls.clear()

    # Messages elsewhere: badges count them and the room moves to the top, over the socket only.
    for body in ("first", "second"):
        post(chat_server, bob_token, "gamma", body)
    badge = ann.locator('.sidebar [data-room="gamma"] .badge')
    expect(badge).to_have_text("2 unread")
    expect(rooms.first).to_have_attribute("data-room", "gamma")
    ann.wait_for_timeout(500)
    assert api_calls == [], api_calls  # no request at all: no polling

    # bob adds ann to his private room: it appears, and its messages count.
    status, _ = api(chat_server, bob_token, "POST", "rooms/secret/members/", {"username": "ann"})
    assert status == 201, status
    secret = ann.locator('.sidebar [data-room="secret"]')
    expect(secret).to_be_visible()
    post(chat_server, bob_token, "secret", "welcome aboard")
    expect(secret.locator(".badge")).to_have_text("1 unread")

    # bob opens a DM with ann: it appears under direct messages with bob's name, live.
    status, dm = api(chat_server, bob_token, "POST", "dms/", {"username": "ann"})
    assert status == 201, status
    dm_item = ann.locator(f'.sidebar .room-nav[data-kind="dms"] [data-room="{dm["slug"]}"]')
    expect(dm_item.locator(".room-label")).to_have_text("bob")
    post(chat_server, bob_token, dm["slug"], "psst")
    expect(dm_item.locator(".badge")).to_have_text("1 unread")

    # The rooms page too, with the same socket-driven counts.
    home = browsing.page(ann.context)
    home.goto("/")
    expect(home.locator('.room-card[data-room="gamma"] .badge')).to_have_text("2 unread")
    post(chat_server, bob_token, "gamma", "third")
    expect(home.locator('.room-card[data-room="gamma"] .badge')).to_have_text("3 unread")
    expect(home.locator(".room-card").first).to_have_attribute("data-room", "gamma")
    expect(badge).to_have_text("3 unread")
    assert browsing.page_errors == []
