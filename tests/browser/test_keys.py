"""Keyboard and phone use of the room page (keys.js, drawer.js): the composer has the focus
when a room opens, the message list is one tab stop moved through with the arrow keys, the
skip link goes to the composer; at 390×844 the rooms are a drawer and "⋯" shows only on
hover, focus or tap."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import override_settings
from playwright.sync_api import Page, expect

from chat import rules, services
from chat.models import Room
from tests.browser.conftest import ARTIFACTS, Browsing
from tests.browser.test_page import open_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_TALL = {"width": 390, "height": 844}


def seed(room: Room, author, bodies: list[str]) -> list[int]:
    """Post ``bodies`` to ``room`` as ``author`` through the service (before the browser starts)."""
    access = rules.room_access(user=author, room=room, door=rules.Door.API)
    services.room_join(access=access, user=author)
    ids = []
    with override_settings(CHAT_POST_RATE="0"):  # seeding, not a user typing
        for body in bodies:
            message, _ = services.message_post(room=room, author=author, body=body, client_id=str(uuid.uuid4()))
            ids.append(message.pk)
    return ids


def focused_message_id(page: Page) -> str | None:
    return page.evaluate("document.activeElement.closest('#messages > .msg')?.dataset.id ?? null")


def test_the_composer_has_the_focus_and_the_messages_are_one_tab_stop(browsing: Browsing, general, user, other, ann_cookie):
    ids = seed(general, other, [f"status update {n}" for n in range(30)])
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    expect(ann.locator("#messages .msg")).to_have_count(30)
    expect(ann.locator("#composer-input")).to_be_focused()

    # Backwards from the composer (past its own controls before the text box, such as "Attach
    # files"): the newest message's own buttons, the message, then out of the list.
    # (The message's buttons grew with replies and reactions: what matters is that every stop is
    # in the newest message, whatever the number of messages.)
    stops_in: list[str | None] = []
    ann.keyboard.press("Shift+Tab")
    while ann.evaluate("document.getElementById('composer').contains(document.activeElement)"):
        ann.keyboard.press("Shift+Tab")
    while ann.evaluate("document.getElementById('messages').contains(document.activeElement)"):
        stops_in.append(focused_message_id(ann))
        assert len(stops_in) <= 8, f"every message adds tab stops: {stops_in}"
        ann.keyboard.press("Shift+Tab")
    assert stops_in and set(stops_in) == {str(ids[-1])}, stops_in
    # Exactly one message is in the tab order.
    assert ann.locator("#messages > .msg[tabindex='0']").count() == 1

    # Into the list again and through it with the arrow keys.
    ann.locator("#composer-input").focus()
    ann.keyboard.press("Shift+Tab")
    while focused_message_id(ann) is None or ann.evaluate("!document.activeElement.matches('.msg')"):
        ann.keyboard.press("Shift+Tab")
    assert focused_message_id(ann) == str(ids[-1])
    ann.keyboard.press("ArrowUp")
    ann.keyboard.press("ArrowUp")
    assert focused_message_id(ann) == str(ids[-3])
    ann.keyboard.press("ArrowDown")
    assert focused_message_id(ann) == str(ids[-2])
    ann.keyboard.press("Home")
    assert focused_message_id(ann) == str(ids[0])
    # The roving stop moved with the focus: still one message in the tab order.
    assert ann.locator("#messages > .msg[tabindex='0']").count() == 1
    assert ann.locator(f"#messages > .msg[data-id='{ids[0]}']").get_attribute("tabindex") == "0"
    ann.keyboard.press("Escape")
    expect(ann.locator("#composer-input")).to_be_focused()
    assert browsing.page_errors == []


def test_the_skip_link_goes_to_the_composer(browsing: Browsing, ann_cookie):
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    first_stop = "document.querySelector('a[href], button, input, textarea, [tabindex]:not([tabindex=\"-1\"])')"
    assert ann.evaluate(f"{first_stop}.className") == "skip-link"  # the first Tab of the page reaches it
    ann.locator("#composer-input").fill("draft")
    skip = ann.locator(".skip-link")
    skip.focus()
    expect(skip).to_be_visible()  # shown when focused
    expect(skip).to_have_text("Skip to the message box")
    ann.keyboard.press("Enter")
    expect(ann.locator("#composer-input")).to_be_focused()
    expect(ann.locator("#composer-input")).to_have_value("draft")


def test_on_a_phone_the_rooms_are_a_drawer_and_the_menu_button_shows_on_tap(
    browsing: Browsing, general, user, other, ann_cookie
):
    for slug in ("design", "engineering", "marketing", "operations", "support"):
        seed(Room.objects.create(slug=slug, name=slug.title()), user, [f"hello {slug}"])
    seed(general, other, ["first from bob", "second from bob"])
    ann = browsing.page(browsing.context(session=ann_cookie, viewport=PHONE_TALL))
    open_room(ann)
    sidebar = ann.locator("#rooms-nav")
    drawer_button = ann.get_by_role("button", name="Rooms", exact=True)
    expect(sidebar).to_be_hidden()
    expect(drawer_button).to_have_attribute("aria-expanded", "false")

    drawer_button.click()
    expect(sidebar).to_be_visible()
    expect(drawer_button).to_have_attribute("aria-expanded", "true")
    # Every room is in the drawer, inside the screen: nothing cut off at the edge.
    links = sidebar.locator(".room-nav a")
    expect(links).to_have_count(6)
    ann.wait_for_timeout(300)  # the slide-in
    for box in (links.nth(i).bounding_box() for i in range(6)):
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE_TALL["width"]
        assert box["y"] + box["height"] <= PHONE_TALL["height"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ann.screenshot(path=ARTIFACTS / "phone-drawer.png")
    ann.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(drawer_button).to_be_focused()

    # "⋯" is not painted on every message: only on the one tapped (or focused).
    menu_buttons = ann.locator("#messages .msg-menu-button")
    expect(menu_buttons).to_have_count(2)
    opacity = "el => getComputedStyle(el).opacity"
    assert [menu_buttons.nth(i).evaluate(opacity) for i in range(2)] == ["0", "0"]
    ann.locator("#messages .msg-body", has_text="first from bob").click()
    assert menu_buttons.nth(0).evaluate(opacity) == "1"
    assert menu_buttons.nth(1).evaluate(opacity) == "0"

    drawer_button.click()
    sidebar.get_by_role("link", name="Design").click()
    expect(ann).to_have_url(re.compile(r"/rooms/design/$"))
    assert browsing.page_errors == []
