"""Replies, reactions and formatted messages in a real Chromium (PROTOCOL.md 6): a thread
opened beside the room with its replies live, reaction chips toggled from two windows, code
blocks that scroll sideways, and hostile Markdown shown inert.

Screenshots of each go to the screenshots directory (conftest.screenshots_dir(): artifacts/
screenshots/, or docs/screenshots/ from scripts/screenshots.py): thread-live.png,
reactions.png, formatted-code.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing, screenshots_dir
from tests.browser.test_page import PHONE, open_room, say

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def message(page, text: str):
    return page.locator("#messages .msg").filter(has=page.locator(".msg-body", has_text=text)).last


def test_a_thread_opens_beside_the_room_and_its_replies_arrive_live(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    say(ann, "Release **today**? Notes in `CHANGELOG.md`")
    root = message(bob, "Release")
    expect(root.locator(".msg-body strong")).to_have_text("today")
    expect(root.locator(".msg-body code")).to_have_text("CHANGELOG.md")

    root.hover()
    root.get_by_role("button", name="Reply in thread").click()
    panel = bob.locator("#thread")
    expect(panel).to_be_visible()
    expect(panel.locator(".thread-root .msg-body")).to_contain_text("Release today?")
    panel.locator(".thread-input").fill("Yes, after the *standup*")
    panel.locator(".thread-input").press("Enter")
    expect(panel.locator(".thread-replies .msg-body")).to_have_text(["Yes, after the standup"])
    expect(panel.locator(".thread-replies em")).to_have_text("standup")

    # In the room: the reply quotes its root, the root says how many replies it has.
    reply = message(ann, "Yes, after the")
    expect(reply.locator(".msg-quote")).to_contain_text("Release **today**?")
    ann_root = message(ann, "Release")
    expect(ann_root.locator(".msg-replies")).to_have_text("1 reply")
    ann_root.locator(".msg-replies").click()
    ann_panel = ann.locator("#thread")
    expect(ann_panel.locator(".thread-replies .msg-body")).to_have_text(["Yes, after the standup"])

    # Live: bob's next reply reaches ann's open thread and the count in the room.
    panel.locator(".thread-input").fill("I'll tag it")
    panel.locator(".thread-input").press("Enter")
    expect(ann_panel.locator(".thread-replies .msg-body")).to_have_text(["Yes, after the standup", "I'll tag it"])
    expect(ann_root.locator(".msg-replies")).to_have_text("2 replies")
    expect(ann_panel.locator(".thread-count")).to_have_text("2 replies")
    ann.screenshot(path=screenshots_dir() / "thread-live.png")

    # The quote jumps to its root.
    message(ann, "I'll tag it").locator(".msg-quote").click()
    expect(ann_root).to_have_class(re.compile(r"\bflash\b"))

    # A narrow screen gives the thread its own view; Escape closes it.
    ann.set_viewport_size(PHONE)
    box = ann_panel.bounding_box()
    assert box is not None and box["width"] >= PHONE["width"] - 1
    ann_panel.locator(".thread-input").press("Escape")
    expect(ann_panel).to_be_hidden()
    assert browsing.page_errors == []


def test_reaction_chips_toggle_and_say_who_reacted(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    say(ann, "Shipping the fix now")
    target = message(bob, "Shipping")
    target.hover()
    target.get_by_role("button", name="Add a reaction").click()
    picker = bob.locator(".emoji-picker")
    expect(picker).to_be_visible()
    picker.locator(".emoji-search").fill("thumbs up")
    picker.locator(".emoji-all .emoji-option").first.click()
    expect(picker).to_be_hidden()

    ann_chip = message(ann, "Shipping").locator(".reaction")
    bob_chip = target.locator(".reaction")
    expect(ann_chip).to_have_text("👍1")
    expect(bob_chip).to_have_attribute("aria-pressed", "true")
    expect(ann_chip).to_have_attribute("aria-pressed", "false")
    expect(ann_chip).to_have_attribute("title", "bob reacted with 👍")

    ann_chip.click()  # ann adds hers
    expect(bob_chip).to_have_text("👍2")
    expect(ann_chip).to_have_attribute("aria-pressed", "true")
    expect(ann_chip).to_have_attribute("title", "bob, ann reacted with 👍")
    ann.screenshot(path=screenshots_dir() / "reactions.png")

    ann_chip.click()  # and takes it back
    expect(bob_chip).to_have_text("👍1")
    expect(ann_chip).to_have_attribute("aria-pressed", "false")

    # The picker remembers what was used.
    target.hover()
    target.get_by_role("button", name="Add a reaction").first.click()
    expect(picker.locator(".emoji-recent .emoji-option").first).to_have_text("👍")
    bob.keyboard.press("Escape")
    assert browsing.page_errors == []


def test_code_blocks_scroll_sideways_and_hostile_markdown_stays_inert(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    long_line = "SELECT " + ", ".join(f"column_{i}" for i in range(60)) + " FROM events;"
    say(ann, f"Try this:\n```\n{long_line}\n```")
    say(ann, "[x](javascript:alert(1)) <img src=x onerror=alert(2)> `<script>alert(3)</script>` and @<b>")
    pre = message(bob, "Try this").locator("pre")
    expect(pre).to_contain_text("column_59")
    assert "mono" in pre.locator("code").evaluate("e => getComputedStyle(e).fontFamily").lower() or \
        "menlo" in pre.locator("code").evaluate("e => getComputedStyle(e).fontFamily").lower()
    assert pre.evaluate("e => e.scrollWidth > e.clientWidth")  # the block scrolls …
    assert bob.locator("#timeline").evaluate("e => e.scrollWidth <= e.clientWidth")  # … the room does not
    hostile = message(bob, "onerror")
    expect(hostile.locator("a")).to_have_count(0)
    expect(hostile.locator("img, script, b")).to_have_count(0)
    expect(hostile.locator("code")).to_have_text("<script>alert(3)</script>")
    bob.screenshot(path=screenshots_dir() / "formatted-code.png")
    bob.wait_for_timeout(300)
    assert browsing.dialogs == []
    assert browsing.page_errors == []
