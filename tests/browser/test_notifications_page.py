"""Notifications in a real Chromium: user B, in another room, sees the bell and the room's
mention badge rise when A mentions them; the inbox jumps to the message, which is
highlighted, and the badge clears once B has read it. The composer offers `@` names."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing
from tests.browser.test_page import open_room, say
from tests.factories import make_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def elsewhere(user):
    return make_room(owner=user, slug="random")


def test_a_mention_raises_the_bell_and_badge_and_opening_it_clears_them(browsing: Browsing, ann_cookie, bob_cookie, elsewhere):
    bob = browsing.page(session=bob_cookie)
    open_room(bob, "random")
    bell_count = bob.locator("#bell .bell-count")
    expect(bell_count).to_be_hidden()
    assert bob.evaluate("typeof Notification === 'undefined' || Notification.permission") in (True, "default", "denied")

    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    say(ann, "@bob can you look at this?")

    expect(bell_count).to_have_text("1")
    badge = bob.locator('.sidebar [data-room="general"] .mention-badge')
    expect(badge).to_be_visible()
    expect(badge).to_contain_text("@1")
    expect(bob).to_have_title(re.compile(r"^\(@1\) "))

    bob.locator("#bell").click()
    item = bob.locator("#inbox .inbox-item")
    expect(item).to_have_count(1)
    expect(item).to_have_class(re.compile("unread"))
    expect(item.locator(".inbox-what")).to_have_text("ann mentioned you in general")
    item.locator("a").click()

    expect(bob).to_have_url(re.compile(r"/rooms/general/#message-\d+$"))
    expect(bob.locator("#messages .msg.mentions-me .msg-body")).to_have_text("@bob can you look at this?")
    expect(bob.locator("#bell .bell-count")).to_be_hidden()
    expect(bob.locator('.sidebar [data-room="general"] .mention-badge')).to_be_hidden()
    expect(bob).not_to_have_title(re.compile(r"^\(@"))
    assert browsing.page_errors == []


def test_the_composer_offers_the_members_after_an_at(browsing: Browsing, ann_cookie, bob_cookie):
    bob = browsing.page(session=bob_cookie)
    open_room(bob)  # bob joins general: a member now
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    composer = ann.locator("#composer-input")
    composer.press_sequentially("hi @b")
    options = ann.locator("#mention-suggest [role=option]")
    expect(options).to_have_text(["@bob"])
    composer.press("Enter")  # picks the name, does not send
    expect(composer).to_have_value("hi @bob ")
    expect(ann.locator("#mention-suggest")).to_be_hidden()
    composer.press("Enter")
    expect(ann.locator("#messages .msg .msg-body")).to_have_text(["hi @bob"])
    assert browsing.page_errors == []
