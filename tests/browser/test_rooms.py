"""Rooms in the page (rooms.js): create a room, browse and join public rooms, set the topic,
add someone to a private room and remove them; the one added sees the room appear in their
list at once, the one removed is told on their open page at once and can no longer post."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chat.models import Membership, Message, Room
from tests.browser.conftest import Browsing, LiveChat, in_db_thread
from tests.browser.test_keys import seed
from tests.browser.test_page import open_room
from tests.factories import make_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_a_private_room_set_its_topic_and_add_and_remove_someone(
    browsing: Browsing, chat_server: LiveChat, general, user, other, ann_cookie, bob_cookie
):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    assert ann.get_by_role("button", name="Set topic").count() == 0  # not a moderator of general

    ann.get_by_role("button", name="New room").click()
    dialog = ann.get_by_role("dialog", name="Create a room")
    dialog.get_by_label("Name").fill("Launch Plans")
    expect(dialog.get_by_label("Address")).to_have_value("launch-plans")
    dialog.get_by_label("Private").check()
    dialog.get_by_role("button", name="Create").click()
    expect(ann).to_have_url(re.compile(r"/rooms/launch-plans/$"))
    expect(ann.locator("#banner")).to_be_hidden()
    expect(ann.locator("#room-title")).to_have_text("Launch Plans")
    room = in_db_thread(lambda: Room.objects.get(slug="launch-plans"))
    assert room.private and room.owner_id == user.pk

    ann.get_by_role("button", name="Set topic").click()
    topic = ann.get_by_role("dialog", name="Set the topic")
    topic.get_by_label("Topic").fill("Ship it on Friday")
    topic.get_by_role("button", name="Save").click()
    expect(ann.locator("#room-topic")).to_have_text("Ship it on Friday")
    assert in_db_thread(lambda: Room.objects.get(slug="launch-plans").topic) == "Ship it on Friday"

    # bob does not see the private room until ann adds him; then it appears in his list live.
    expect(bob.locator('.sidebar [data-room="launch-plans"]')).to_have_count(0)
    ann.get_by_role("button", name="Add people").click()
    add = ann.get_by_role("dialog", name="Add people to this private room")
    add.get_by_label("Username").fill("nobody-here")
    add.get_by_role("button", name="Add").click()
    expect(add.get_by_role("alert")).to_contain_text("No such user")
    add.get_by_label("Username").fill("bob")
    add.get_by_role("button", name="Add").click()
    expect(add).to_be_hidden()
    expect(ann.get_by_role("status").filter(has_text="bob was added")).to_be_visible()
    expect(bob.locator('.sidebar [data-room="launch-plans"] .room-label')).to_have_text("Launch Plans")
    assert in_db_thread(lambda: Membership.objects.filter(room__slug="launch-plans", user=other).exists())
    bob.locator('.sidebar [data-room="launch-plans"] a').click()
    expect(bob.locator("#room-topic")).to_have_text("Ship it on Friday")
    # The page's own readiness signal, not a pause: its socket has joined the room (loaded
    # first over REST). CI runs three workers on two cores, so this may take a while.
    expect(bob.locator("#chat")).to_have_attribute("data-room-state", "joined", timeout=30_000)
    expect(bob.locator("#banner")).to_be_hidden()

    # ann removes bob again: his open page is told at once, can no longer post, and the
    # room leaves his list.
    ann.get_by_role("button", name="Remove people").click()
    remove = ann.get_by_role("dialog", name="Remove people from this private room")
    remove.get_by_label("Username").fill("bob")
    remove.get_by_role("button", name="Remove").click()
    expect(remove).to_be_hidden()
    expect(ann.get_by_role("status").filter(has_text="bob was removed")).to_be_visible()
    assert not in_db_thread(lambda: Membership.objects.filter(room__slug="launch-plans", user=other).exists())
    expect(bob.locator("#chat")).to_have_attribute("data-room-state", "removed")
    expect(bob.locator("#banner")).to_contain_text("You were removed from this room.")
    expect(bob.locator("#composer-input")).to_be_disabled()
    expect(bob.locator("#composer button[type=submit]")).to_be_disabled()
    expect(bob.locator('.sidebar [data-room="launch-plans"]')).to_have_count(0)
    expect(bob.locator('.sidebar [data-room="general"]')).to_have_count(1)
    assert bob.evaluate(POST_JS, "launch-plans") == 404  # nor over REST, with his session
    assert not in_db_thread(lambda: Message.objects.filter(room__slug="launch-plans", author=other).exists())

    # The banner stays through a reconnect, which does not ask for the room again.
    sent: list[str] = []
    bob.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    chat_server.stop()
    expect(bob.locator("body")).to_have_attribute("data-connection", "offline")
    chat_server.start()
    bob.evaluate("dispatchEvent(new Event('online'))")  # try again now, not after the backoff
    expect(bob.locator("body")).to_have_attribute("data-connection", "live", timeout=30_000)
    expect(bob.locator("#banner")).to_contain_text("You were removed from this room.")
    assert any('"room":"general"' in frame for frame in sent)
    assert not any("launch-plans" in frame for frame in sent)
    assert browsing.page_errors == []


POST_JS = """async (slug) => {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1]
      ?? document.querySelector("[name=csrfmiddlewaretoken]")?.value;
    const response = await fetch(`/api/v1/rooms/${slug}/messages/`, { method: "POST",
      body: JSON.stringify({ body: "still here?", client_id: crypto.randomUUID() }),
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf } });
    return response.status;
}"""


def test_browse_public_rooms_and_join_one(browsing: Browsing, general, user, other, ann_cookie):
    make_room(owner=other, slug="design")
    make_room(owner=other, slug="hidden", private=True)
    ann = browsing.page(session=ann_cookie)
    ann.goto("/")
    ann.get_by_role("button", name="Browse rooms").click()
    dialog = ann.get_by_role("dialog", name="Browse rooms")
    expect(dialog.locator(".browse-name")).to_have_text(["#design", "#General"])  # never a private room
    dialog.get_by_role("link", name="Join design").click()
    expect(ann).to_have_url(re.compile(r"/rooms/design/$"))
    expect(ann.locator("#banner")).to_be_hidden()
    assert in_db_thread(lambda: Membership.objects.filter(room__slug="design", user=user).exists())

    # A taken address is refused in the dialog, with the reason.
    ann.get_by_role("button", name="New room").click()
    create = ann.get_by_role("dialog", name="Create a room")
    create.get_by_label("Name").fill("design")
    create.get_by_role("button", name="Create").click()
    expect(create.get_by_role("alert")).to_contain_text("taken")
    expect(ann).to_have_url(re.compile(r"/rooms/design/$"))
    assert browsing.page_errors == []


RENAME_JS = """async (name) => {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1]
      ?? document.querySelector("[name=csrfmiddlewaretoken]")?.value;
    const response = await fetch("/api/v1/rooms/launch/", { method: "PATCH", body: JSON.stringify({ name }),
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf } });
    return response.status;
}"""


def test_a_new_topic_and_name_show_at_once_on_the_other_members_page(browsing: Browsing, user, other, ann_cookie, bob_cookie):
    make_room(owner=user, slug="launch")
    seed(Room.objects.get(slug="launch"), other, ["Ready when you are"])  # bob is a member
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann, "launch")
    open_room(bob, "launch")
    expect(bob.locator("#room-topic")).to_be_hidden()

    ann.get_by_role("button", name="Set topic").click()
    topic = ann.get_by_role("dialog", name="Set the topic")
    topic.get_by_label("Topic").fill("Ship it on Friday")
    topic.get_by_role("button", name="Save").click()
    expect(bob.locator("#room-topic")).to_have_text("Ship it on Friday")  # no reload
    expect(bob.locator("#room-topic")).to_be_visible()

    assert ann.evaluate(RENAME_JS, "Launch Plans") == 200
    for page in (ann, bob):
        expect(page.locator("#room-title .room-title-text")).to_have_text("Launch Plans")
        expect(page.locator('.sidebar [data-room="launch"] .room-label')).to_have_text("Launch Plans")
    expect(bob).to_have_title(re.compile(r"^#Launch Plans"))
    expect(bob.locator("#room-topic")).to_have_text("Ship it on Friday")
    assert browsing.page_errors == []
