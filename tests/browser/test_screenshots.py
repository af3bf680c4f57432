"""The README's screenshots, taken from a real Chromium against a live server with a seeded
conversation: the rooms page, a room, its thread panel, a phone (390×844) and the dark scheme.

They go to conftest.screenshots_dir(): ``CHAT_SCREENSHOTS_DIR``, by default
artifacts/screenshots/ (so a CI run leaves the checkout clean and keeps them as artifacts);
``python scripts/screenshots.py`` runs this module with docs/screenshots/, the copies the
README shows. The test also holds the page to
what the pictures show (display names, badges, the thread, the phone's drawer button), so a
broken page cannot make a pretty picture.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import override_settings
from playwright.sync_api import Page, expect

from chat import rules, services
from chat.models import Room
from tests.browser.conftest import Browsing, screenshots_dir
from tests.browser.test_page import open_room
from tests.factories import make_room, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def post(room: Room, author, body: str, reply_to: int | None = None) -> int:
    access = rules.room_access(user=author, room=room, door=rules.Door.API)
    services.room_join(access=access, user=author)
    with override_settings(CHAT_POST_RATE="0"):
        message, _ = services.message_post(room=room, author=author, body=body, client_id=str(uuid.uuid4()),
                                           reply_to=reply_to)
    return message.pk


@pytest.fixture
def conversation(general, user, other):
    """A team's morning: three people with display names, a thread, unread in other rooms."""
    cid = make_user("cid")
    for person, name in ((user, "Ann Lee"), (other, "Bob Ortiz"), (cid, "Chen Wu")):
        services.profile_update(user=person, name=name)
    general.topic = "Releases, standups and everything else"
    general.save(update_fields=["topic"])
    root = post(general, user, "Morning! The **2.4 release** is ready for a last look: notes in `CHANGELOG.md`.")
    post(general, other, "Reading now. The upgrade steps look right.", reply_to=root)
    post(general, cid, "Tagged the build as `v2.4.0-rc2`.", reply_to=root)
    post(general, cid, "Lunch at 12:30? The ramen place on 5th has a table for six.")
    post(general, other, "Count me in. @ann, are you joining?")
    read_up_to = Room.objects.get(pk=general.pk).seq
    post(general, user, "Yes! Before that, the migration plan:\n\n- freeze writes at 18:00\n- run `migrate`\n"
                        "- smoke test, then open the gates")
    post(general, other, "Sounds good. I'll watch the error rate while it runs.")
    services.read_mark(room=general, user=user, seq=read_up_to + 1)  # ann's own last message: read

    design = make_room(owner=other, slug="design")
    design.name = "Design"
    design.save(update_fields=["name"])
    post(design, user, "The new empty states are in Figma.")
    for body in ("Looks great!", "Can we try the darker border?", "Pushed a version with it."):
        post(design, cid, body)
    launch = make_room(owner=user, slug="launch", private=True)
    launch.name = "Launch"
    launch.save(update_fields=["name"])
    services.member_set(access=rules.room_access(user=user, room=launch, door=rules.Door.API), actor=user, user=other)
    post(launch, user, "Press kit draft is up.")
    post(launch, other, "Reviewed, two small fixes.")
    dm, _ = services.dm_open(user=other, username="ann")
    post(dm, other, "Got a minute after lunch?")
    return {"root": root}


def names_shown(page: Page) -> None:
    expect(page.locator("#messages .msg-author").first).to_have_text("Ann Lee")


def test_the_readme_screenshots(browsing: Browsing, conversation, ann_cookie, bob_cookie):
    out = screenshots_dir()
    bob = browsing.page(session=bob_cookie)  # online, so ann's room shows two people here
    open_room(bob)

    ann = browsing.page(session=ann_cookie)
    ann.goto("/")
    expect(ann.locator("#banner")).to_be_hidden()
    cards = ann.locator(".room-cards [data-room]")
    expect(cards.filter(has_text="Design").locator(".badge")).to_have_text(re.compile(r"^3"))
    ann.screenshot(path=out / "rooms.png")

    open_room(ann)
    names_shown(ann)
    expect(ann.locator("#room-topic")).to_have_text("Releases, standups and everything else")
    expect(ann.locator("#messages .unread-line")).to_have_count(1)
    expect(ann.locator('.sidebar [data-room="design"] .badge')).to_be_visible()
    ann.locator("#composer-input").fill("On my way")
    ann.screenshot(path=out / "room.png")

    ann.locator(f'#messages .msg[data-id="{conversation["root"]}"] .msg-replies').click()
    thread = ann.locator("#thread")
    expect(thread.locator(".thread-replies .msg-author")).to_have_text(["Bob Ortiz", "Chen Wu"])
    expect(ann.locator("#messages .msg-quote-author").first).to_have_text("Ann Lee")
    ann.screenshot(path=out / "thread.png")

    phone = browsing.page(browsing.context(session=ann_cookie, viewport=PHONE))
    open_room(phone)
    names_shown(phone)
    expect(phone.locator("#drawer-button")).to_be_visible()
    phone.screenshot(path=out / "phone.png")

    dark = browsing.page(browsing.context(session=ann_cookie, color_scheme="dark"))
    open_room(dark)
    names_shown(dark)
    background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(map(int, re.findall(r"\d+", background)[:3])) < 3 * 80, background  # a dark page
    dark.screenshot(path=out / "dark.png")

    for name in ("rooms", "room", "thread", "phone", "dark"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name
    assert browsing.page_errors == []
