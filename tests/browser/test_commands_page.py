"""Slash commands in the composer (commands.js): `/` offers the commands, `/me` posts in
italics, and /help's answer shows as a local line that stores nothing."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_slash_offers_the_commands_and_me_posts_in_italics(browsing: Browsing, general, user, ann_cookie):
    ann = browsing.page(session=ann_cookie)
    ann.goto("/rooms/general/")
    box = ann.locator("#composer-input")
    box.press("/")
    options = ann.locator("#command-suggest [role=option]")
    expect(options).to_have_count(4)
    box.press("m")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("/me <text>")
    box.press("Enter")  # picks the command; does not send
    expect(box).to_have_value("/me ")
    expect(ann.locator("#command-suggest")).to_be_hidden()
    box.press_sequentially("waves")
    box.press("Enter")
    expect(ann.locator("#messages .msg:not(.pending) .msg-body em")).to_have_text("waves")

    box.press_sequentially("/help")
    box.press("Escape")  # closes the list; Enter then sends
    box.press("Enter")
    expect(ann.locator("#command-output")).to_contain_text("/shrug [text]")
    expect(ann.locator("#messages .msg")).to_have_count(1)
    assert browsing.page_errors == []
