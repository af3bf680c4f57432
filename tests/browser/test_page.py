"""The chat page in a real Chromium against a live Daphne: what a user sees and does."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid

import pytest
from playwright.sync_api import Page, expect

from chat import rules, services
from chat.models import Room
from tests.browser.conftest import ARTIFACTS, Browsing, LiveChat, in_db_thread
from tests.factories import PASSWORD, make_user
from tests.servers import start_server

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 800}


# --- what a user does -----------------------------------------------------------------


def open_room(page: Page, slug: str = "general") -> None:
    """Open the room and wait until its socket is live (the connection banner goes away)."""
    page.goto(f"/rooms/{slug}/")
    expect(page.locator("#banner")).to_be_hidden()


def say(page: Page, text: str) -> None:
    """Type in the composer and press Enter."""
    composer = page.locator("#composer-input")
    composer.fill(text)
    composer.press("Enter")


def expect_messages(page: Page, expected: list[tuple[str, str]]) -> None:
    """The message list shows exactly ``expected`` (author, text), in order, none pending."""
    messages = page.locator("#messages .msg")
    expect(messages.locator(".msg-author")).to_have_text([author for author, _ in expected])
    expect(messages.locator(".msg-body")).to_have_text([text for _, text in expected])
    expect(page.locator("#messages .msg.pending, #messages .msg.failed")).to_have_count(0)


def post_over_rest(base_url: str, token: str, body: str) -> int:
    """POST a message to general as the token's user; return the HTTP status."""
    request = urllib.request.Request(
        f"{base_url}/api/v1/rooms/general/messages/",
        data=json.dumps({"body": body, "client_id": str(uuid.uuid4())}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def post_with_service(user, body: str) -> None:
    """The service the REST view calls, for when the API is not there yet."""
    access = rules.room_access(user=user, room=Room.objects.get(slug="general"), door=rules.Door.API)
    services.room_join(access=access, user=user)
    services.message_post(room=access.room, author=user, body=body, client_id=str(uuid.uuid4()))


# --- tests ----------------------------------------------------------------------------


def test_two_users_sign_up_log_in_and_chat_both_ways(browsing: Browsing, other):
    """Each sees both messages once, in order, with their authors; screenshots for the notes."""
    ann = browsing.page()
    ann.goto("/accounts/signup/")
    ann.get_by_label("Username").fill("ann")
    ann.get_by_label("Password", exact=True).fill(PASSWORD)
    ann.get_by_label("Password confirmation").fill(PASSWORD)
    ann.get_by_role("button", name="Sign up").click()
    expect(ann).to_have_url(re.compile(r"/$"))
    expect(ann.locator(".account-name")).to_have_text("ann")

    bob = browsing.page()
    bob.goto("/accounts/login/")
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill(PASSWORD)
    bob.get_by_role("button", name="Log in").click()
    expect(bob).to_have_url(re.compile(r"/$"))
    expect(bob.locator(".account-name")).to_have_text("bob")

    open_room(ann)
    open_room(bob)
    say(ann, "Hi Bob! Is the release notes draft ready for review?")
    expect_messages(bob, [("ann", "Hi Bob! Is the release notes draft ready for review?")])
    say(bob, "Almost: I'm adding the upgrade steps, then it's all yours.")

    conversation = [
        ("ann", "Hi Bob! Is the release notes draft ready for review?"),
        ("bob", "Almost: I'm adding the upgrade steps, then it's all yours."),
    ]
    for page in (ann, bob):
        expect_messages(page, conversation)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bob.screenshot(path=ARTIFACTS / "two-users.png")
    bob.set_viewport_size(PHONE)
    expect_messages(bob, conversation)
    bob.screenshot(path=ARTIFACTS / "two-users-phone.png")
    assert browsing.page_errors == []


def test_the_page_shows_the_outage_and_catches_up_once_after_a_server_restart(
    browsing: Browsing, chat_server: LiveChat, ann_cookie, other, bob_token, tmp_path
):
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    say(ann, "Deploying now, back in a minute")
    expect_messages(ann, [("ann", "Deploying now, back in a minute")])

    # Bob's client talks to another server process, which stays up.
    rest = start_server(redis_url=None, log_dir=tmp_path)
    try:
        chat_server.stop()
        banner = ann.locator("#banner")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Reconnecting")

        for body in ("Anything I should watch?", "The error rate looks fine from here"):
            status = post_over_rest(rest.http, bob_token, body)
            if status == 404:  # the REST API is not there yet: the service it would call
                in_db_thread(post_with_service, other, body)
            else:
                assert status == 201, status
        # Typed while offline: waits in the outbox, goes out once on reconnect.
        say(ann, "Typed while the server was down")
        expect(ann.locator("#messages .msg.pending")).to_contain_text("Typed while the server was down")
        pending_id = ann.locator("#messages .msg.pending").get_attribute("data-client-id")
        expect(banner).to_contain_text("Reconnecting")

        chat_server.start()
        expect(banner).to_be_hidden(timeout=20_000)
    finally:
        rest.process.terminate()
        rest.process.wait(10)

    caught_up = [
        ("ann", "Deploying now, back in a minute"),
        ("bob", "Anything I should watch?"),
        ("bob", "The error rate looks fine from here"),
        ("ann", "Typed while the server was down"),
    ]
    expect_messages(ann, caught_up)
    ann.wait_for_timeout(1_500)  # a late broadcast or database poll must not add a copy
    expect_messages(ann, caught_up)
    expect(banner).to_be_hidden()
    # Stored once, under the client_id the pending element had: the REST history agrees.
    assert rest_bodies(ann) == [body for _, body in caught_up]
    assert ann.evaluate(
        "async () => (await (await fetch('/api/v1/rooms/general/messages/')).json()).results.at(-1).client_id"
    ) == pending_id
    assert browsing.page_errors == []


def rest_bodies(page: Page, slug: str = "general") -> list[str]:
    """The room's newest history over REST, as the page's session sees it: the bodies."""
    return page.evaluate(
        "async (slug) => (await (await fetch(`/api/v1/rooms/${slug}/messages/`)).json()).results.map((m) => m.body)",
        slug,
    )


def test_a_refused_send_can_be_discarded_or_retried_and_is_stored_once(browsing: Browsing, general, user, ann_cookie):
    mod = make_user("mia", is_staff=True, is_superuser=True)
    access = rules.room_access(user=mod, room=general, door=rules.Door.API)
    services.mute_set(access=access, actor=mod, user=user)
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    failed = ann.locator("#messages .msg.failed")

    say(ann, "Posted while muted, then discarded")
    expect(failed.get_by_role("alert")).to_contain_text("Not sent. You're muted in this room.")
    failed.get_by_role("button", name="Discard").click()
    expect(ann.locator("#messages .msg")).to_have_count(0)

    say(ann, "Posted while muted, then retried")
    expect(failed).to_have_count(1)
    in_db_thread(services.mute_lift, access=access, actor=mod, user=user)
    failed.get_by_role("button", name="Retry").click()
    expect_messages(ann, [("ann", "Posted while muted, then retried")])
    assert rest_bodies(ann) == ["Posted while muted, then retried"]
    assert browsing.page_errors == []


def test_hostile_message_text_is_shown_as_text_and_never_runs(browsing: Browsing, ann_cookie, bob_cookie):
    img = "<img src=x onerror=alert(1)>"
    script = "<script>alert(2)</script>"
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)

    say(ann, img)
    expect_messages(bob, [("ann", img)])
    say(bob, script)
    hostile = [("ann", img), ("bob", script)]
    expect_messages(ann, hostile)
    expect_messages(bob, hostile)
    ann.reload()  # history comes over REST now, through the other rendering path
    expect(ann.locator("#banner")).to_be_hidden()
    expect_messages(ann, hostile)

    for page in (ann, bob):
        messages = page.locator("#messages")
        expect(messages.locator('img[src="x"]')).to_have_count(0)
        expect(messages.locator("img")).to_have_count(0)
        expect(messages.locator("script")).to_have_count(0)
        # Each body is the server's html: one paragraph of plain text, no element built from the text.
        assert messages.locator(".msg-body").evaluate_all(
            "bodies => bodies.map(b => [...b.querySelectorAll('*')].map(e => e.tagName).join())") == ["P", "P"]
    ann.wait_for_timeout(500)  # an onerror handler would have fired by now
    assert browsing.dialogs == []
    assert browsing.page_errors == []


def test_logging_out_in_one_tab_ends_the_other_tabs_socket(browsing: Browsing, ann_cookie):
    context = browsing.context(session=ann_cookie)
    leaving = browsing.page(context)
    staying = browsing.page(context)
    open_room(leaving)
    open_room(staying)

    leaving.get_by_role("button", name="Log out").click()
    expect(leaving).to_have_url(re.compile(r"/accounts/login/"))

    banner = staying.locator("#banner")
    expect(banner).to_contain_text("You're logged out", timeout=5_000)
    expect(banner).to_be_visible()
    expect(banner.get_by_role("link", name="Log in again")).to_be_visible()
    expect(staying.locator("#composer-input")).to_be_disabled()
    assert browsing.page_errors == []
