"""The search box (search.js): the room's history through the REST `q`, hits with room,
author, time and the words marked, and a hit opened in context."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chat import services
from tests.browser.conftest import Browsing
from tests.browser.test_keys import seed
from tests.browser.test_page import open_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_search_lists_hits_and_opens_one_in_context(browsing: Browsing, general, user, other, ann_cookie):
    [early] = seed(general, other, ["The invoice for March is attached <b>here</b>"])
    seed(general, user, [f"filler {n}" for n in range(80)])
    services.read_mark(room=general, user=user, seq=81)  # read up to here: the room opens at the bottom
    [late] = seed(general, other, ["Did the invoice get paid?"])

    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    box = ann.get_by_role("searchbox", name="Search General")
    box.fill("invoice")
    box.press("Enter")
    panel = ann.locator("#search-results")
    expect(panel).to_be_visible()
    hits = panel.locator(".search-hit")
    expect(hits).to_have_count(2)
    expect(panel.get_by_role("status")).to_have_text("2 messages match “invoice”")
    # Newest first, each with the room, the author, a time and the word marked.
    expect(hits.locator(".search-room")).to_have_text(["#General", "#General"])
    expect(hits.locator(".search-author")).to_have_text(["bob", "bob"])
    expect(hits.nth(0).locator(".search-excerpt")).to_have_text("Did the invoice get paid?")
    expect(hits.nth(1).locator("mark")).to_have_text(["invoice"])
    expect(hits.nth(1).locator("time")).to_have_attribute("title", re.compile(r"\d{4}"))
    assert hits.nth(1).locator("b").count() == 0  # text, never markup

    # The early hit is not loaded: it opens at its permalink, highlighted.
    expect(ann.locator(f'#messages .msg[data-id="{early}"]')).to_have_count(0)
    hits.nth(1).click()
    expect(ann).to_have_url(re.compile(rf"/rooms/general/\?m={early}$"))
    node = ann.locator(f'#messages .msg[data-id="{early}"]')
    expect(node).to_be_in_viewport()
    expect(node).to_have_class(re.compile(r"\bhighlight\b"))

    # A loaded one is scrolled to in place.
    box.fill("paid")
    box.press("Enter")
    expect(hits).to_have_count(1)
    hits.first.click()
    expect(panel).to_be_hidden()
    expect(ann.locator(f'#messages .msg[data-id="{late}"]')).to_be_in_viewport()
    expect(ann).to_have_url(re.compile(rf"/rooms/general/\?m={early}$"))  # no navigation

    box.fill("nothinglikethis")
    box.press("Enter")
    expect(panel.get_by_role("status")).to_have_text("No messages match “nothinglikethis”.")
    box.press("Escape")
    expect(panel).to_be_hidden()
    assert browsing.page_errors == []
