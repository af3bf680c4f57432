"""Where the room opens and how the reader gets back (timeline.js, room.js): the "new
messages" line at the read position, "jump to latest" whenever scrolled up (with the count
of what arrived), and a read position that moves only over what was on screen."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from chat import services
from chat.models import Membership, Room
from tests.browser.conftest import Browsing, in_db_thread
from tests.browser.test_keys import seed
from tests.browser.test_page import open_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def read_seq(user) -> int:
    return in_db_thread(lambda: Membership.objects.get(room__slug="general", user=user).read_seq)


def test_the_room_opens_at_the_new_messages_line_and_reads_only_what_was_seen(
    browsing: Browsing, general, user, other, ann_cookie, bob_cookie
):
    seed(general, user, ["I'm off until Monday"])
    seed(general, other, [f"read before {n}" for n in range(20)])
    services.read_mark(room=Room.objects.get(slug="general"), user=user, seq=21)
    unread = seed(general, other, [f"while you were away {n}" for n in range(120)])  # more than a page
    room_seq = Room.objects.get(slug="general").seq

    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    line = ann.locator("#messages .unread-line")
    expect(line).to_have_count(1)
    expect(line).to_be_in_viewport()
    # The line sits on the first unread message, which was loaded although it is 120 back.
    expect(ann.locator("#messages .msg.first-unread")).to_have_attribute("data-id", str(unread[0]))
    expect(ann.locator("#messages .msg").last).to_contain_text("while you were away 119")
    pill = ann.locator("#new-pill")
    expect(pill).to_be_visible()
    expect(pill).to_contain_text("Jump to latest")

    # Only what was on screen is read: well past 21, well short of the end.
    deadline = time.monotonic() + 5
    while read_seq(user) == 21 and time.monotonic() < deadline:
        ann.wait_for_timeout(200)
    seen = read_seq(user)
    assert 21 < seen < room_seq - 50, (seen, room_seq)

    # Jump to latest: at the bottom, everything is read and the button goes away.
    pill.click()
    expect(pill).to_be_hidden()
    deadline = time.monotonic() + 5
    while read_seq(user) != room_seq and time.monotonic() < deadline:
        ann.wait_for_timeout(200)
    assert read_seq(user) == room_seq

    # Scrolled up by hand: the button is back; what arrives meanwhile is counted on it.
    ann.locator("#timeline").evaluate("t => t.scrollTo({ top: 0 })")
    expect(pill).to_be_visible()
    expect(pill).to_contain_text("Jump to latest")
    bob = browsing.page(session=bob_cookie)
    open_room(bob)
    bob.locator("#composer-input").fill("one more thing")
    bob.locator("#composer-input").press("Enter")
    expect(pill).to_contain_text("1 new message")
    ann.wait_for_timeout(1200)
    assert read_seq(user) == room_seq  # not seen yet: not read
    pill.click()
    expect(ann.locator("#messages .msg").last).to_be_in_viewport()
    expect(pill).to_be_hidden()
    assert browsing.page_errors == []


def test_a_room_with_nothing_unread_opens_at_the_bottom_without_a_line(browsing: Browsing, general, user, other, ann_cookie):
    seed(general, other, [f"old {n}" for n in range(60)])
    services.read_mark(room=Room.objects.get(slug="general"), user=user, seq=60)
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    expect(ann.locator("#messages .msg").last).to_be_in_viewport()
    expect(ann.locator("#messages .unread-line")).to_have_count(0)
    expect(ann.locator("#new-pill")).to_be_hidden()
    expect(ann.locator("#composer-input")).to_be_focused()
    assert re.search(r"/rooms/general/$", ann.url)


ANCHOR_JS = """t => {
    t.scrollTop = %d;
    const top = t.getBoundingClientRect().top;
    const anchor = [...t.querySelectorAll("#messages > .msg[data-id]")]
      .find((node) => node.getBoundingClientRect().top >= top);
    return { id: anchor.dataset.id, offset: anchor.querySelector(".msg-body").getBoundingClientRect().top - top };
}"""
# Where the message's text is (its element may lose the day divider above the text).
OFFSET_JS = """(t, id) => t.querySelector(`#messages > .msg[data-id="${id}"] .msg-body`).getBoundingClientRect().top
    - t.getBoundingClientRect().top"""


def test_scrolling_back_through_history_keeps_the_message_on_screen_where_it_was(
    browsing: Browsing, general, user, other, ann_cookie
):
    # Two authors in turns and bodies of one to three lines: groups and heights vary.
    for turn in range(13):
        author = other if turn % 2 else user
        seed(general, author, [f"turn {turn} line {n}" + "\nmore" * (n % 3) for n in range(10)])
    services.read_mark(room=Room.objects.get(slug="general"), user=user, seq=130)
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    messages, timeline = ann.locator("#messages .msg"), ann.locator("#timeline")
    expect(messages).to_have_count(50)  # the newest page
    expect(messages.last).to_be_in_viewport()

    # Near the top, the next older page (keyset `before`) is put above without moving what is read.
    for loaded, scroll_top in ((100, 120), (130, 0)):
        anchor = timeline.evaluate(ANCHOR_JS % scroll_top)
        expect(messages).to_have_count(loaded)
        expect(ann.locator("#history-status")).not_to_contain_text("Loading")
        ann.wait_for_timeout(100)  # a frame for any late layout change
        offset = timeline.evaluate(OFFSET_JS, anchor["id"])
        assert abs(offset - anchor["offset"]) <= 3, (loaded, anchor, offset)
    expect(ann.locator("#history-status")).to_have_text("This is the very beginning of General.")
    expect(messages.first).to_contain_text("turn 0 line 0")
    assert browsing.page_errors == []
