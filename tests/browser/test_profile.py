"""A display name in a real Chromium: set on /settings/, shown in the header and on the user
card beside the username, which stays what @mentions use."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from chat.models import UserPreferences
from tests.browser.conftest import Browsing, in_db_thread
from tests.browser.test_keys import seed
from tests.browser.test_page import open_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_display_name_set_in_settings_shows_in_the_headers_and_the_user_card(
    browsing: Browsing, general, user, other, ann_cookie, bob_cookie
):
    seed(general, user, ["Release notes are up"])
    ann = browsing.page(session=ann_cookie)
    ann.goto("/")
    ann.locator(".account-name").click()
    expect(ann).to_have_url(f"{browsing.base_url}/settings/")
    ann.get_by_label("Display name").fill("  Ann   Lee ")
    ann.get_by_role("button", name="Save").click()
    expect(ann.get_by_role("status")).to_have_text("Saved.")
    expect(ann.get_by_label("Display name")).to_have_value("Ann Lee")
    expect(ann.locator(".account-name")).to_have_text("Ann Lee")
    ann.get_by_label("Display name").fill("x" * 151)  # the browser stops at maxlength: post it by hand
    status = ann.evaluate("""async () => {
        const body = new URLSearchParams({ name: "x".repeat(151),
          csrfmiddlewaretoken: document.querySelector("[name=csrfmiddlewaretoken]").value });
        return (await fetch("/settings/", { method: "POST", body })).status;
    }""")
    assert status == 400
    assert in_db_thread(lambda: type(user).objects.get(pk=user.pk).first_name) == "Ann Lee"

    bob = browsing.page(session=bob_cookie)
    open_room(bob)
    # The message header shows the display name, the username on hover (docs/decisions.md).
    header = bob.locator("#messages .msg-author").first
    expect(header).to_have_text("Ann Lee")
    expect(header).to_have_attribute("title", "@ann")
    bob.locator("#composer-input").fill("Thanks Ann")
    bob.locator("#composer-input").press("Enter")
    expect(bob.locator("#messages .msg-author")).to_have_text(["Ann Lee", "bob"])  # no display name: the username
    header.click()
    card = bob.locator(".user-card")
    expect(card.locator(".user-card-name")).to_have_text("Ann Lee")
    expect(card.locator(".user-card-username")).to_have_text("@ann")
    expect(card.get_by_role("button", name="Message ann")).to_be_visible()
    assert browsing.page_errors == []


def clock(zone: str, at: datetime) -> str:
    """``at`` in ``zone`` as en-US writes a time: "2:05 PM"."""
    local = at.astimezone(ZoneInfo(zone))
    return f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


def test_the_user_card_shows_the_local_time_of_the_time_zone_the_users_browser_reported(
    browsing: Browsing, general, user, other, ann_cookie, bob_cookie
):
    seed(general, user, ["Good morning from Tokyo"])
    ann = browsing.page(browsing.context(session=ann_cookie, timezone_id="Asia/Tokyo"))
    open_room(ann)
    deadline = time.monotonic() + 5
    while in_db_thread(lambda: UserPreferences.objects.filter(user=user, timezone="Asia/Tokyo").exists()) is False:
        assert time.monotonic() < deadline, "the page did not store its time zone"
        ann.wait_for_timeout(100)
    # Known now: the next page load asks nothing.
    patches = []
    ann.on("request", lambda request: request.method == "PATCH" and patches.append(request.url))
    open_room(ann)
    ann.wait_for_timeout(300)
    assert patches == []

    bob = browsing.page(session=bob_cookie)  # in UTC
    open_room(bob)
    before = datetime.now(tz=UTC)
    bob.locator("#messages button.msg-author", has_text="ann").first.click()
    local = bob.locator(".user-card .user-card-time")
    expect(local).to_have_attribute("title", "Asia/Tokyo")
    shown = local.text_content()
    after = datetime.now(tz=UTC)
    assert shown in {f"{clock('Asia/Tokyo', at)} local time" for at in (before, after)}, shown
    assert browsing.page_errors == []
