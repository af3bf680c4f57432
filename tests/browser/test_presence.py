"""Presence in a direct message (presence.js, badges.js): whether the other person has the
chat open anywhere, not only in this room; the DM is introduced with their name."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chat import services
from tests.browser.conftest import Browsing
from tests.browser.test_page import open_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_dm_says_whether_the_other_person_is_online_anywhere(browsing: Browsing, general, user, other, ann_cookie, bob_cookie):
    dm, _ = services.dm_open(user=other, username="ann")
    ann = browsing.page(session=ann_cookie)
    open_room(ann, dm.slug)
    state = ann.locator("#online-count")
    expect(state).to_have_text("bob is offline")
    expect(ann.locator("#history-status")).to_have_text("This is the beginning of your conversation with bob.")
    expect(ann.locator("#room-title")).to_have_text("@bob")
    expect(ann.locator("#composer-input")).to_have_attribute("placeholder", "Message @bob")

    # bob opens the chat in another room, not the DM: he is online for ann.
    bob = browsing.page(session=bob_cookie)
    open_room(bob, "general")
    expect(state).to_have_text("bob is online")
    expect(ann.locator("#online")).to_have_class("online has-online")
    bob.goto("/")  # the rooms page keeps him online too
    expect(bob.locator(".room-cards")).to_be_visible()
    ann.wait_for_timeout(500)
    expect(state).to_have_text("bob is online")
    bob.close()
    expect(state).to_have_text("bob is offline")
    assert browsing.page_errors == []
