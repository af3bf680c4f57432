"""Editing and deleting one's own messages in the page (editor.js, msgmenu.js), and a
message's permalink (Copy link, /rooms/<slug>/?m=<id>)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Browsing
from tests.browser.test_keys import seed
from tests.browser.test_live_page import api
from tests.browser.test_page import expect_messages, open_room, say
from tests.factories import make_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def menu(page: Page, text: str):
    message = page.locator("#messages .msg", has_text=text)
    message.hover()
    message.get_by_role("button", name="Actions for").click()
    return page.get_by_role("menu")


def test_the_author_edits_in_place_from_the_menu_and_with_the_up_arrow(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    say(ann, "The meeting is on Tuesday")
    say(ann, "Bring the slides")
    expect_messages(bob, [("ann", "The meeting is on Tuesday"), ("ann", "Bring the slides")])

    # The menu's Edit: a box with the text; Escape leaves the message as it was.
    expect(menu(ann, "Tuesday").get_by_role("menuitem")).to_have_text(["Edit", "Copy link", "Delete"])
    ann.get_by_role("menuitem", name="Edit").click()
    box = ann.get_by_role("textbox", name="Edit your message")
    expect(box).to_be_focused()
    expect(box).to_have_value("The meeting is on Tuesday")
    box.fill("The meeting is on Wednesday")
    box.press("Escape")
    expect(box).to_have_count(0)
    expect(ann.locator("#composer-input")).to_be_focused()
    expect_messages(ann, [("ann", "The meeting is on Tuesday"), ("ann", "Bring the slides")])

    # Again, and Enter saves: both pages show the new text, marked edited, in place.
    menu(ann, "Tuesday").get_by_role("menuitem", name="Edit").click()
    box.fill("The meeting is on Wednesday")
    box.press("Enter")
    for page in (ann, bob):
        expect_messages(page, [("ann", "The meeting is on Wednesday (edited)"), ("ann", "Bring the slides")])
        expect(page.locator("#messages .msg-edited")).to_have_attribute("title", re.compile(r"^Edited \w+day, "))

    # Up arrow in the empty composer edits the last of one's own messages.
    say(bob, "ok")
    expect(ann.locator("#messages .msg")).to_have_count(3)
    ann.locator("#composer-input").press("ArrowUp")
    expect(box).to_be_focused()
    expect(box).to_have_value("Bring the slides")
    box.fill("Bring the slides and the demo")
    box.press("Enter")
    expect_messages(bob, [
        ("ann", "The meeting is on Wednesday (edited)"),
        ("ann", "Bring the slides and the demo (edited)"),
        ("bob", "ok"),
    ])
    # Typing in the composer is not editing: Up moves the caret there.
    ann.locator("#composer-input").fill("draft")
    ann.locator("#composer-input").press("ArrowUp")
    expect(box).to_have_count(0)
    assert browsing.page_errors == []


def test_deleting_asks_first_and_removes_the_message_for_everyone(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    say(ann, "wrong window, sorry")
    expect_messages(bob, [("ann", "wrong window, sorry")])

    menu(ann, "wrong window").get_by_role("menuitem", name="Delete").click()
    dialog = ann.get_by_role("dialog", name="Delete your message?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(bob.locator("#messages .msg-body")).to_have_text(["wrong window, sorry"])

    menu(ann, "wrong window").get_by_role("menuitem", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    for page in (ann, bob):
        expect(page.locator("#messages .msg-body")).to_have_text(["message removed"])
    assert browsing.page_errors == []


def test_a_copied_link_opens_the_room_at_the_message_far_back_in_history(
    browsing: Browsing, general, user, other, ann_cookie
):
    seed(general, other, [f"old news {n}" for n in range(5)])
    [target] = seed(general, other, ["the decision: ship on Friday"])
    seed(general, other, [f"later chatter {n}" for n in range(150)])  # three pages of history after it

    context = browsing.context(session=ann_cookie)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    ann = browsing.page(context)
    open_room(ann)
    expect(ann.locator(f'#messages .msg[data-id="{target}"]')).to_have_count(0)  # not in the newest page
    ann.locator("#messages .msg").last.hover()
    ann.locator("#messages .msg").last.get_by_role("button", name="Actions for").click()
    ann.get_by_role("menuitem", name="Copy link").click()
    expect(ann.get_by_role("status").filter(has_text="Link copied")).to_be_visible()
    copied = ann.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(rf"{re.escape(browsing.base_url)}/rooms/general/\?m=\d+", copied), copied

    # The permalink of the far-back message: loaded around it, scrolled to it, highlighted.
    ann.goto(f"/rooms/general/?m={target}")
    expect(ann.locator("#banner")).to_be_hidden()
    node = ann.locator(f'#messages .msg[data-id="{target}"]')
    expect(node).to_have_class(re.compile(r"\bhighlight\b"))
    expect(node).to_be_in_viewport()
    expect(node).to_be_focused()
    # Contiguous up to the newest message, so live messages follow without a gap.
    expect(ann.locator("#messages .msg").last).to_contain_text("later chatter 149")
    assert browsing.page_errors == []


def test_the_edit_box_survives_the_message_changing_meanwhile(browsing: Browsing, chat_server, user, ann_cookie):
    """An edit saved elsewhere (another tab, a program) re-renders the message: the open box and
    what was typed in it stay."""
    token = make_token(user)
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    say(ann, "draft one")
    expect_messages(ann, [("ann", "draft one")])
    menu(ann, "draft one").get_by_role("menuitem", name="Edit").click()
    box = ann.get_by_role("textbox", name="Edit your message")
    box.fill("typed here, not saved yet")
    message_id = ann.locator("#messages .msg").first.get_attribute("data-id")
    status, _ = api(chat_server, token, "PATCH", f"messages/{message_id}/", {"body": "draft two"})
    assert status == 200, status
    expect(ann.locator("#messages .msg-body")).to_have_text(["draft two (edited)"])
    expect(box).to_have_value("typed here, not saved yet")
    expect(box).to_be_visible()
    box.press("Enter")
    expect_messages(ann, [("ann", "typed here, not saved yet (edited)")])
    assert browsing.page_errors == []
