"""How messages look (render.js): one author's messages within 5 minutes grouped under one
name and avatar, avatar initials on a colour derived from the username, the exact time on hover."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from chat import services
from chat.models import Message
from tests.browser.conftest import Browsing
from tests.browser.test_keys import seed
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_messages_group_by_author_within_five_minutes_with_initials_and_exact_times(
    browsing: Browsing, general, user, other, ann_cookie
):
    cara = make_user("cara.diaz")
    ids = seed(general, other, ["one", "two"]) + seed(general, cara, ["three", "four"]) + seed(general, cara, ["five"])
    # "five" comes six minutes after "four": a new group although the author is the same.
    base = Message.objects.get(pk=ids[0]).created_at
    for i, pk in enumerate(ids):
        Message.objects.filter(pk=pk).update(created_at=base + timedelta(seconds=10 * i) + (timedelta(minutes=6) if i == 4 else timedelta()))

    ann = browsing.page(session=ann_cookie)
    ann.goto("/rooms/general/")
    messages = ann.locator("#messages .msg")
    expect(messages).to_have_count(5)
    continued = messages.evaluate_all("nodes => nodes.map(n => n.classList.contains('continued'))")
    assert continued == [False, True, False, True, False]

    # One visible name and avatar per group.
    visible_avatars = ann.locator("#messages .msg .msg-gutter .avatar:visible")
    expect(visible_avatars).to_have_text(["B", "CD", "CD"])
    hues = visible_avatars.evaluate_all("nodes => nodes.map(n => n.style.getPropertyValue('--hue'))")
    assert hues[1] == hues[2] and hues[0] != hues[1]
    assert ann.locator(".account .avatar").inner_text() == "A"

    # Relative time shown, the exact one on hover (title), with the date and seconds.
    first_time = messages.first.locator(".msg-time")
    expect(first_time).to_have_text("just now")
    expect(first_time).to_have_attribute("title", re.compile(r"^\w+day, \w+ \d+, \d{4} at \d+:\d\d:\d\d"))
    assert browsing.page_errors == []


def test_a_bots_messages_carry_a_bot_badge_and_a_persons_do_not(browsing: Browsing, general, user, other, ann_cookie):
    bot, _key = services.bot_create(owner=user, username="deploybot")
    seed(general, bot, ["deployed v2"])
    seed(general, other, ["great"])
    ann = browsing.page(session=ann_cookie)
    ann.goto("/rooms/general/")
    messages = ann.locator("#messages .msg")
    expect(messages).to_have_count(2)
    expect(messages.nth(0).locator(".msg-head .msg-bot")).to_have_text("BOT")
    expect(messages.nth(1).locator(".msg-bot")).to_have_count(0)
    assert browsing.page_errors == []
