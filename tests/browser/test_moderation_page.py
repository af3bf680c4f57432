"""The message menu in a real Chromium: members report, moderators delete and ban (msgmenu.js)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.models import Membership, Message, ModerationLog, Report, Room, RoomBan
from tests.browser.conftest import Browsing, in_db_thread
from tests.browser.test_page import expect_messages, open_room, say

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_menu(page: Page, text: str) -> None:
    """Hover the message with ``text`` and open its "⋯" menu."""
    message = page.locator("#messages .msg", has_text=text)
    message.hover()
    message.get_by_role("button", name="Actions for").click()
    expect(page.get_by_role("menu")).to_be_visible()


def test_a_member_reports_a_message_and_cannot_delete_it(browsing: Browsing, ann_cookie, bob_cookie):
    bob = browsing.page(session=bob_cookie)
    ann = browsing.page(session=ann_cookie)
    probes = []
    ann.on("request", lambda request: "/mutes/" in request.url and probes.append(request.url))
    open_room(bob)
    open_room(ann)
    say(bob, "something nasty")
    expect_messages(ann, [("bob", "something nasty")])

    open_menu(ann, "something nasty")
    assert ann.get_by_role("menu").get_by_role("menuitem").all_inner_texts() == ["Copy link", "Report…"]
    ann.get_by_role("menuitem", name="Report…").click()
    ann.get_by_label("What is wrong with it?").fill("insulting")
    ann.get_by_role("button", name="Report", exact=True).click()
    expect(ann.get_by_role("status").filter(has_text="Reported")).to_be_visible()

    report = in_db_thread(lambda: Report.objects.select_related("reporter", "message").get())
    assert (report.reporter.username, report.reason, report.message.body) == ("ann", "insulting", "something nasty")
    assert browsing.page_errors == []
    assert probes == []  # the page knows ann's rights; it asks no moderators-only endpoint


def test_a_room_moderator_deletes_and_bans_from_the_menu(browsing: Browsing, user, other, ann_cookie, bob_cookie):
    def make_ann_moderator():
        general = Room.objects.get(slug="general")
        Membership.objects.update_or_create(room=general, user=user, defaults={"role": "moderator"})

    in_db_thread(make_ann_moderator)
    bob = browsing.page(session=bob_cookie)
    ann = browsing.page(session=ann_cookie)
    open_room(bob)
    open_room(ann)
    say(bob, "spam one")
    say(bob, "spam two")
    expect_messages(ann, [("bob", "spam one"), ("bob", "spam two")])

    open_menu(ann, "spam one")
    items = ann.get_by_role("menu").get_by_role("menuitem").all_inner_texts()
    assert items == ["Copy link", "Report…", "Delete", "Mute bob…", "Ban bob from this room…"]
    ann.get_by_role("menuitem", name="Delete").click()
    ann.get_by_role("dialog").get_by_role("button", name="Delete").click()
    # Both pages show it removed by a moderator (the socket's message.deleted).
    for page in (ann, bob):
        expect(page.locator("#messages .msg", has_text="removed by a moderator")).to_have_count(1)

    open_menu(ann, "spam two")
    ann.get_by_role("menuitem", name="Ban bob from this room…").click()
    ann.get_by_label("How long").select_option(label="1 hour")
    ann.get_by_label("Reason (optional)").fill("spamming")
    ann.get_by_role("dialog").get_by_role("button", name="Ban").click()
    expect(bob.locator("#banner")).to_contain_text("You were removed from this room")
    expect(bob.locator("#banner")).to_contain_text("spamming")

    ban = in_db_thread(lambda: RoomBan.objects.select_related("user").get())
    assert ban.user.username == "bob" and ban.until is not None and ban.reason == "spamming"
    assert in_db_thread(lambda: list(ModerationLog.objects.order_by("pk").values_list("action", flat=True))) == [
        "message.delete", "ban"
    ]
    assert in_db_thread(lambda: Message.objects.filter(deleted=True).count()) == 1
    assert browsing.page_errors == []
