"""The page's live state in a real Chromium: who is online, who is typing, unread badges,
edits and deletions in place, and direct messages opened from a username."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, Browsing, LiveChat
from tests.browser.test_page import PHONE, expect_messages, open_room, say
from tests.factories import make_room, make_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# --- the REST API, as another program would use it -------------------------------------


def api(chat: LiveChat, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    """Call /api/v1/<path> with the token; return (status, JSON body or None)."""
    request = urllib.request.Request(
        f"{chat.url}/api/v1/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, None


def post(chat: LiveChat, token: str, room: str, body: str) -> dict:
    status, message = api(chat, token, "POST", f"rooms/{room}/messages/", {"body": body, "client_id": str(uuid.uuid4())})
    assert status == 201, status
    return message


def unread(chat: LiveChat, token: str) -> dict[str, int]:
    status, rooms = api(chat, token, "GET", "rooms/")
    assert status == 200, status
    return {room["slug"]: room["unread"] for room in rooms}


def wait_until_read(chat: LiveChat, token: str, room: str, within: float = 5.0) -> None:
    """The page marks a room read shortly after showing its newest message."""
    deadline = time.monotonic() + within
    while (count := unread(chat, token)[room]) != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count == 0, f"{room} still has {count} unread"


def record_frames(page: Page) -> list[dict]:
    """Every frame the page's sockets receive, decoded (register before opening a room)."""
    frames: list[dict] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))))
    return frames


def badge(page: Page, slug: str):
    return page.locator(f'.sidebar [data-room="{slug}"] .badge')


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def ann_token(user) -> str:
    return make_token(user)


@pytest.fixture
def random_room(user):
    """A second public room ann belongs to (she owns it), so its unread count is hers."""
    return make_room(owner=user, slug="random")


# --- tests ------------------------------------------------------------------------------


def test_the_online_list_shows_who_opens_and_closes_the_room(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    people = ann.locator("#people")
    toggle = ann.locator("#online")
    # A laptop-wide window shows the list as a column, open from the start.
    expect(people).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(people.locator(".person-name")).to_have_text(["ann (you)"])
    expect(ann.locator("#online-count")).to_have_text("1 online")
    expect(people.get_by_role("button", name=re.compile("^Message"))).to_have_count(0)  # not for yourself

    bob = browsing.page(session=bob_cookie)
    open_room(bob)
    expect(people.locator(".person-name")).to_have_text(["ann (you)", "bob"])
    expect(people.get_by_role("button", name="Message bob")).to_be_visible()
    expect(ann.locator("#online-count")).to_have_text("2 online")

    bob.close()
    expect(people.locator(".person-name")).to_have_text(["ann (you)"])
    expect(ann.locator("#online-count")).to_have_text("1 online")

    # At phone width it is a sheet opened from the header, and Escape puts it away.
    ann.set_viewport_size(PHONE)
    expect(people).to_be_hidden()
    toggle.click()
    expect(people).to_be_visible()
    expect(people.locator(".person-name")).to_have_text(["ann (you)"])
    ann.keyboard.press("Escape")
    expect(people).to_be_hidden()
    expect(toggle).to_be_focused()
    assert browsing.page_errors == []


def test_the_typing_line_shows_who_types_and_clears(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    typing = ann.locator("#typing")
    composer = bob.locator("#composer-input")

    composer.fill("Sure, ")
    expect(typing).to_have_text("bob is typing…")
    expect(bob.locator("#typing")).to_be_empty()  # nobody sees their own typing
    expect(typing).to_be_empty(timeout=9_000)  # bob stopped: it clears by itself after a few seconds

    composer.fill("Sure, after standup works")  # more than 3 s later, so not throttled
    expect(typing).to_have_text("bob is typing…")
    composer.press("Enter")
    expect_messages(ann, [("bob", "Sure, after standup works")])
    expect(typing).to_be_empty(timeout=1_000)  # his message arrived: at once, not after the timeout
    assert browsing.page_errors == []


def test_unread_badges_count_other_rooms_and_clear_once_read(
    browsing: Browsing, chat_server: LiveChat, ann_cookie, bob_cookie, random_room, ann_token, bob_token
):
    """Also saves artifacts/browser/live-state.png: the online list, a typing line, badges."""
    post(chat_server, ann_token, "general", "Morning! Standup in 10?")
    post(chat_server, bob_token, "general", "Yes, I'll share the release board.")
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    ann_frames = record_frames(ann)
    open_room(ann)
    open_room(bob)

    # Elsewhere, meanwhile: three messages in #random and a direct message, a new room.
    for body in ("Lunch at noon?", "The new coffee machine works", "Who's in?"):
        post(chat_server, bob_token, "random", body)
    status, dm = api(chat_server, bob_token, "POST", "dms/", {"username": "ann"})
    assert status == 201, status
    post(chat_server, bob_token, dm["slug"], "Got a minute after standup?")
    # Live over the socket: no reload, no focus event, no poll.
    expect(badge(ann, "random")).to_have_text("3 unread")
    expect(badge(ann, dm["slug"])).to_have_text("1 unread")  # added to the sidebar without a reload
    expect(ann.locator(f'.sidebar [data-room="{dm["slug"]}"] .room-label')).to_have_text("bob")
    expect(badge(ann, "general")).to_be_hidden()  # the room on screen
    wait_until_read(chat_server, ann_token, "general")  # … is marked read: bob's message was unread
    assert unread(chat_server, ann_token) == {"general": 0, "random": 3, dm["slug"]: 1}

    bob.locator("#composer-input").fill("Sure, ")
    expect(ann.locator("#typing")).to_have_text("bob is typing…")
    expect(ann.locator("#people .person-name")).to_have_text(["ann (you)", "bob"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ann.screenshot(path=ARTIFACTS / "live-state.png")

    # ann reads #random in another tab: this tab's badge clears on the `read` frame, no reload.
    elsewhere = browsing.page(ann.context)
    open_room(elsewhere, "random")
    expect(elsewhere.locator("#messages .msg")).to_have_count(3)
    expect(badge(ann, "random")).to_be_hidden()
    assert {"type": "read", "room": "random", "seq": 3} in ann_frames
    wait_until_read(chat_server, ann_token, "random")

    # And the DM, from the sidebar: visiting it marks it read too.
    ann.locator(f'.sidebar [data-room="{dm["slug"]}"] a').click()
    expect(ann).to_have_url(re.compile(rf"/rooms/{dm['slug']}/$"))
    expect_messages(ann, [("bob", "Got a minute after standup?")])
    wait_until_read(chat_server, ann_token, dm["slug"])
    open_room(ann)
    expect(ann.locator('.sidebar [data-room="random"]')).not_to_have_class(re.compile("has-unread"))
    expect(badge(ann, dm["slug"])).to_be_hidden()
    assert browsing.page_errors == []


def test_edits_and_deletions_over_rest_update_the_other_page_in_place(
    browsing: Browsing, chat_server: LiveChat, ann_cookie, other, bob_token
):
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    first = post(chat_server, bob_token, "general", "The demo is at 3pm")
    post(chat_server, bob_token, "general", "Room 4B")
    expect_messages(ann, [("bob", "The demo is at 3pm"), ("bob", "Room 4B")])
    node = ann.locator(f'#messages .msg[data-id="{first["id"]}"]')

    status, _ = api(chat_server, bob_token, "PATCH", f"messages/{first['id']}/", {"body": "The demo is at 4pm"})
    assert status == 200, status
    expect(node.locator(".msg-body")).to_have_text("The demo is at 4pm (edited)")
    expect(node.locator(".msg-edited")).to_be_visible()

    status, _ = api(chat_server, bob_token, "DELETE", f"messages/{first['id']}/")
    assert status == 204, status
    expect(node.locator(".msg-body")).to_have_text("message removed")
    expect(node).to_have_class(re.compile(r"\bdeleted\b"))
    # In place: still two rows, the same order, nothing duplicated.
    expect(ann.locator("#messages .msg-body")).to_have_text(["message removed", "Room 4B"])

    ann.reload()  # history over REST shows the same final state
    expect(ann.locator("#banner")).to_be_hidden()
    expect(ann.locator("#messages .msg-body")).to_have_text(["message removed", "Room 4B"])
    assert browsing.page_errors == []


def test_a_username_opens_the_direct_messages_of_the_pair(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    say(ann, "Can I ask you something in private?")
    expect_messages(bob, [("ann", "Can I ask you something in private?")])
    say(bob, "Sure, message me")
    expect_messages(ann, [("ann", "Can I ask you something in private?"), ("bob", "Sure, message me")])
    expect(ann.locator("#messages .msg.mine button.msg-author")).to_have_count(0)  # not on your own name

    # bob, from the online list: the pair's room is created and opened.
    bob.locator("#people").get_by_role("button", name="Message ann").click()
    expect(bob).to_have_url(re.compile(r"/rooms/dm-[\w-]+/$"))
    expect(bob.locator("#banner")).to_be_hidden()
    expect(bob.locator("#room-title")).to_have_text("@ann")
    expect(bob.locator(".sidebar [aria-current=page] .room-label")).to_have_text("ann")
    dm_path = bob.url.removeprefix(browsing.base_url)

    # ann, from bob's name on his message: a card, then the same room, not a second one.
    ann.locator("#messages").get_by_role("button", name="bob", exact=True).click()
    card = ann.get_by_role("dialog", name="bob")
    expect(card).to_be_visible()
    # bob left general for the DM, but his page still has the chat open: online (per user, not per room).
    expect(card).to_contain_text("Online")
    card.get_by_role("button", name="Message bob").click()
    expect(ann).to_have_url(re.compile(re.escape(dm_path) + "$"))
    expect(ann.locator("#banner")).to_be_hidden()
    expect(ann.locator("#room-title")).to_have_text("@bob")
    expect(ann.locator("#people .person-name")).to_have_text(["ann (you)", "bob"])

    say(ann, "It's about the offsite")
    for page in (ann, bob):
        expect_messages(page, [("ann", "It's about the offsite")])
    assert browsing.page_errors == []
