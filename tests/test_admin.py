"""Moderation through the Django admin, with a WebSocket client connected: each admin action
(a changelist POST with `action` and `_selected_action`, as the admin's form sends it) is
seen by the socket within 2 s, and the database and the moderation log show it."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat import rules, services
from chat.models import Membership, Message, ModerationLog, Mute, Report, Room, RoomBan, SiteBan
from tests.conftest import open_socket, session_cookie
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db(transaction=True)

SEEN_WITHIN = 2  # seconds


def make_site_moderator(username: str = "mod", **extra):
    """Staff with chat.moderate: moderates every room, in the admin too."""
    user = make_user(username, is_staff=True, **extra)
    user.user_permissions.add(Permission.objects.get(codename="moderate", content_type__app_label="chat"))
    return user


def get_superuser():
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture
def staff(db):
    return make_site_moderator()


@pytest.fixture
def admin_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@database_sync_to_async
def admin_action(client: Client, model: str, action: str, pks: list[int], **data):
    """POST the changelist action as the admin's action form does; return the response."""
    return client.post(f"/admin/chat/{model}/", {"action": action, "_selected_action": pks, **data})


@database_sync_to_async
def post(room: Room, author, body: str, client_id: str) -> Message:
    return services.message_post(room=room, author=author, body=body, client_id=client_id)[0]


@database_sync_to_async
def log_entries() -> list[tuple[str, str | None, str | None]]:
    """(action, actor, target) of every log entry, oldest first."""
    return [
        (e.action, e.actor.username if e.actor else None, e.target_user.username if e.target_user else None)
        for e in ModerationLog.objects.select_related("actor", "target_user").order_by("pk")
    ]


async def joined(cookie=None, *, token=None, room="general"):
    sock, connected, _ = await open_socket(cookie=cookie, token=token)
    assert connected
    assert (await sock.join(room))["type"] == "joined"
    return sock


async def close_code(sock, timeout=SEEN_WITHIN) -> int:
    """The close code of ``sock``, skipping any frames sent before it."""
    while True:
        output = await sock.comm.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output["code"]


# --- messages: delete and restore --------------------------------------------------------


async def test_admin_delete_sends_message_deleted_by_moderator_and_logs(admin_client, staff, user, other, ann_cookie, general):
    message = await post(general, other, "spam spam", "s1")
    ann = await joined(ann_cookie)

    response = await admin_action(admin_client, "message", "delete_messages", [message.pk])
    assert response.status_code == 302

    frame = await ann.recv(timeout=SEEN_WITHIN)
    assert frame == {"type": "message.deleted", "room": "general", "seq": 2, "id": message.pk, "by": "moderator", "reply_to": None}
    stored = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert stored.deleted and stored.body == "spam spam"  # soft: staff can still read and restore it
    assert await log_entries() == [("message.delete", "mod", "bob")]


async def test_admin_restore_sends_message_edited_with_the_next_seq(admin_client, staff, user, other, ann_cookie, general):
    message = await post(general, other, "not spam after all", "r1")
    await database_sync_to_async(services.message_delete)(message_id=message.pk, user=staff, door=rules.Door.ADMIN)
    ann = await joined(ann_cookie)

    await admin_action(admin_client, "message", "restore_messages", [message.pk])

    frame = await ann.recv(timeout=SEEN_WITHIN)
    assert frame["type"] == "message.edited" and frame["seq"] == 3
    assert frame["message"]["id"] == message.pk
    assert frame["message"]["body"] == "not spam after all" and frame["message"]["deleted"] is False
    assert not (await database_sync_to_async(Message.objects.get)(pk=message.pk)).deleted
    assert await log_entries() == [("message.delete", "mod", "bob"), ("message.restore", "mod", "bob")]
    # A restored message is history again, as it was.
    history = await database_sync_to_async(lambda: APIClient())()
    await database_sync_to_async(history.force_login)(user)
    page = (await database_sync_to_async(history.get)("/api/v1/rooms/general/messages/")).json()
    assert [(m["body"], m["deleted"]) for m in page["results"]] == [("not spam after all", False)]


async def test_admin_delete_reaches_a_private_room_staff_are_not_members_of(admin_client, staff, user, other):
    from tests.factories import make_room

    secret = await database_sync_to_async(make_room)(owner=user, slug="secret", private=True)
    message = await post(secret, user, "in private", "p1")
    ann = await joined(await database_sync_to_async(session_cookie)(user), room="secret")

    await admin_action(admin_client, "message", "delete_messages", [message.pk])
    assert (await ann.recv(timeout=SEEN_WITHIN))["by"] == "moderator"


# --- rooms: lock and unlock ----------------------------------------------------------------


async def test_admin_lock_answers_send_with_room_locked_and_unlock_lets_it_through(admin_client, user, ann_cookie, general):
    ann = await joined(ann_cookie)

    await admin_action(admin_client, "room", "lock_rooms", [general.pk])
    await ann.send(type="send", room="general", body="hello?", client_id="l1")
    error = await ann.recv(timeout=SEEN_WITHIN)
    assert error["type"] == "error" and error["code"] == "room_locked"
    assert (await database_sync_to_async(Room.objects.get)(pk=general.pk)).locked

    await admin_action(admin_client, "room", "unlock_rooms", [general.pk])
    await ann.send(type="send", room="general", body="hello!", client_id="l2")
    assert (await ann.recv_until("ack", timeout=SEEN_WITHIN))["seq"] == 1
    assert await log_entries() == [("room.lock", "mod", None), ("room.unlock", "mod", None)]


# --- members: mute, ban, unmute, unban -----------------------------------------------------


async def test_admin_mute_answers_send_with_muted_until_unmuted(admin_client, user, ann_cookie, general):
    ann = await joined(ann_cookie)
    membership = await database_sync_to_async(Membership.objects.get)(room=general, user=user)

    response = await admin_action(
        admin_client, "membership", "mute_members", [membership.pk], apply="1", until="", reason="shouting"
    )
    assert response.status_code == 302
    await ann.send(type="send", room="general", body="HELLO", client_id="m1")
    assert (await ann.recv(timeout=SEEN_WITHIN))["code"] == "muted"
    mute = await database_sync_to_async(Mute.objects.get)(room=general, user=user)
    assert mute.until is None and mute.reason == "shouting"

    await admin_action(admin_client, "mute", "lift", [mute.pk])
    await ann.send(type="send", room="general", body="hello", client_id="m2")
    assert (await ann.recv_until("ack", timeout=SEEN_WITHIN))["seq"] == 1
    assert await log_entries() == [("mute", "mod", "ann"), ("unmute", "mod", "ann")]


def test_admin_mute_asks_for_until_and_reason_first(admin_client, user, general):
    membership = Membership.objects.create(room=general, user=user)
    response = admin_client.post("/admin/chat/membership/", {"action": "mute_members", "_selected_action": [membership.pk]})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="until"' in html and 'name="reason"' in html and "ann in general" in html
    assert not Mute.objects.exists()
    # A time in the past is refused, and nothing is stored.
    response = admin_client.post(
        "/admin/chat/membership/",
        {"action": "mute_members", "_selected_action": [membership.pk], "apply": "1", "until": "2001-01-01T10:00"},
        follow=True,
    )
    assert "must be in the future" in response.content.decode()
    assert not Mute.objects.exists() and not ModerationLog.objects.exists()


async def test_admin_ban_kicks_the_sockets_and_join_rest_and_token_are_refused(admin_client, user, ann_cookie, ann_token, general):
    ann = await joined(ann_cookie)
    ann_bot = await joined(token=ann_token)
    membership = await database_sync_to_async(Membership.objects.get)(room=general, user=user)

    await admin_action(
        admin_client, "membership", "ban_members", [membership.pk], apply="1", until="", reason="trolling"
    )
    for sock in (ann, ann_bot):
        assert await sock.recv(timeout=SEEN_WITHIN) == {
            "type": "kicked", "room": "general", "reason": "Banned from this room: trolling"
        }
    assert (await ann.join("general"))["code"] == "forbidden"
    assert await database_sync_to_async(RoomBan.objects.filter(room=general, user=user).exists)()
    assert await log_entries() == [("ban", "mod", "ann")]

    # Reconnecting does not help, nor does REST with the session or the token.
    again, _, _ = await open_socket(cookie=ann_cookie)
    assert (await again.join("general"))["code"] == "forbidden"
    rest = APIClient()
    rest.credentials(HTTP_AUTHORIZATION=f"Token {ann_token}")
    history = await database_sync_to_async(rest.get)("/api/v1/rooms/general/messages/")
    assert history.status_code == 403 and history.json()["code"] == "forbidden"
    posted = await database_sync_to_async(rest.post)(
        "/api/v1/rooms/general/messages/", {"body": "let me in", "client_id": "b1"}, format="json"
    )
    assert posted.status_code == 403 and posted.json()["code"] == "forbidden"

    ban = await database_sync_to_async(RoomBan.objects.get)(room=general, user=user)
    await admin_action(admin_client, "roomban", "lift", [ban.pk])
    assert (await ann.join("general"))["type"] == "joined"
    assert (await log_entries())[-1] == ("unban", "mod", "ann")


# --- the site ----------------------------------------------------------------------------


async def test_admin_site_ban_closes_every_socket_with_4403_and_nothing_lets_them_back(admin_client, user, ann_cookie, ann_token, general):
    message = await post(general, user, "buy cheap watches", "w1")
    ann = await joined(ann_cookie)
    ann_bot = await joined(token=ann_token)

    await admin_action(
        admin_client, "message", "ban_authors_from_site", [message.pk], apply="1", until="", reason="spammer"
    )
    assert await close_code(ann) == 4403
    assert await close_code(ann_bot) == 4403

    ban = await database_sync_to_async(SiteBan.objects.get)(user=user)
    assert ban.reason == "spammer" and ban.until is None
    assert await log_entries() == [("site_ban", "mod", "ann")]

    @database_sync_to_async
    def credentials_left():
        sessions = [s for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(user.pk)]
        return len(sessions), Token.objects.filter(user=user).count()

    assert await credentials_left() == (0, 0)

    # Reconnecting with the old cookie or token: accepted, told why, closed with 4403.
    for kwargs in ({"cookie": ann_cookie}, {"token": ann_token}):
        sock, connected, _ = await open_socket(**kwargs)
        assert connected
        assert (await sock.recv())["code"] == "forbidden"
        assert await close_code(sock) == 4403

    # REST with the old token is unauthenticated; logging in and new tokens are refused.
    rest = APIClient()
    rest.credentials(HTTP_AUTHORIZATION=f"Token {ann_token}")
    assert (await database_sync_to_async(rest.get)("/api/v1/rooms/")).status_code == 401
    obtain = await database_sync_to_async(APIClient().post)(
        "/api/v1/auth/token/", {"username": "ann", "password": PASSWORD}, format="json"
    )
    assert obtain.status_code == 400
    browser = Client()
    login = await database_sync_to_async(browser.post)("/accounts/login/", {"username": "ann", "password": PASSWORD})
    assert login.status_code == 200 and "sessionid" not in browser.cookies  # the form again, no session

    # Lifting the ban lets them log in again.
    await admin_action(admin_client, "siteban", "lift", [ban.pk])
    assert await database_sync_to_async(browser.login)(username="ann", password=PASSWORD)
    assert (await log_entries())[-1] == ("site_unban", "mod", "ann")


async def test_admin_user_action_bans_from_the_site(user, ann_cookie, general):
    superuser = await database_sync_to_async(get_superuser)()
    client = Client()
    await database_sync_to_async(client.force_login)(superuser)
    ann = await joined(ann_cookie)
    response = await database_sync_to_async(client.post)(
        "/admin/auth/user/", {"action": "ban_from_site", "_selected_action": [user.pk], "apply": "1", "reason": ""}
    )
    assert response.status_code == 302
    assert await close_code(ann) == 4403
    assert await log_entries() == [("site_ban", "root", "ann")]


# --- reports -----------------------------------------------------------------------------


@database_sync_to_async
def report(message: Message, reporter, reason: str) -> Report:
    return services.message_report(message_id=message.pk, reporter=reporter, reason=reason)[0]


async def test_admin_report_hide_deletes_the_message_as_moderator_and_resolves(admin_client, user, other, ann_cookie, general):
    message = await post(general, other, "rude words", "h1")
    first = await report(message, user, "rude")
    cid = await database_sync_to_async(make_user)("cid")
    second = await report(message, cid, "very rude")
    ann = await joined(ann_cookie)

    await admin_action(admin_client, "report", "hide_messages", [first.pk])
    frame = await ann.recv(timeout=SEEN_WITHIN)
    assert frame == {"type": "message.deleted", "room": "general", "seq": 2, "id": message.pk, "by": "moderator", "reply_to": None}

    @database_sync_to_async
    def statuses():
        return sorted(Report.objects.values_list("pk", "status", "resolved_by__username"))

    # Every open report of the message is resolved with it.
    assert await statuses() == [(first.pk, "hidden", "mod"), (second.pk, "hidden", "mod")]
    assert await log_entries() == [("message.delete", "mod", "bob"), ("report.hide", "mod", "bob")]


async def test_admin_report_dismiss_keeps_the_message(admin_client, user, other, ann_cookie, general):
    message = await post(general, other, "borderline", "d1")
    first = await report(message, user, "hmm")
    ann = await joined(ann_cookie)

    await admin_action(admin_client, "report", "dismiss_reports", [first.pk])
    assert await ann.silent(0.5)  # nothing to see: the message stays
    assert not (await database_sync_to_async(Message.objects.get)(pk=message.pk)).deleted
    assert (await database_sync_to_async(Report.objects.get)(pk=first.pk)).status == "dismissed"
    assert await log_entries() == [("report.dismiss", "mod", "bob")]

    # The queue shows open reports only, unless asked.
    queue = await database_sync_to_async(admin_client.get)("/admin/chat/report/")
    assert "borderline" not in queue.content.decode()
    everything = await database_sync_to_async(admin_client.get)("/admin/chat/report/?status=all")
    assert "borderline" in everything.content.decode()


# --- password change and deactivation ------------------------------------------------------


async def test_a_new_password_closes_all_the_users_sockets(user, ann_cookie, ann_token, general):
    ann = await joined(ann_cookie)
    ann_bot = await joined(token=ann_token)
    superuser = await database_sync_to_async(get_superuser)()
    client = Client()
    await database_sync_to_async(client.force_login)(superuser)
    response = await database_sync_to_async(client.post)(
        f"/admin/auth/user/{user.pk}/password/",
        {"password1": "a-new-long-password-1", "password2": "a-new-long-password-1"},
    )
    assert response.status_code == 302
    assert await close_code(ann) == 4401
    assert await close_code(ann_bot) == 4401


async def test_deactivation_closes_all_the_users_sockets(user, other, ann_cookie, bob_cookie, general):
    ann = await joined(ann_cookie)
    bob = await joined(bob_cookie)

    @database_sync_to_async
    def deactivate():
        user.is_active = False
        user.save()

    await deactivate()
    assert await close_code(ann) == 4401
    await bob.send(type="ping")
    assert (await bob.recv())["type"] == "pong"  # others are untouched


async def test_logging_in_again_does_not_close_sockets(user, ann_cookie, general):
    """Saving last_login (or rehashing the same password) is no password change."""
    ann = await joined(ann_cookie)
    assert await database_sync_to_async(Client().login)(username="ann", password=PASSWORD)
    await ann.send(type="ping")
    assert (await ann.recv())["type"] == "pong"


# --- who may use the moderation admin --------------------------------------------------------


@pytest.mark.parametrize("who", ["member", "owner", "staff_without_permission"])
async def test_the_admin_refuses_everyone_but_staff_moderators(who, user, other, general):
    message = await post(general, other, "stays", "x1")
    if who == "owner":
        await database_sync_to_async(Room.objects.filter(pk=general.pk).update)(owner=user)
    extra = {"is_staff": True} if who == "staff_without_permission" else {}
    actor = await database_sync_to_async(make_user)("actor", **extra)
    client = Client()
    await database_sync_to_async(client.force_login)(actor)

    response = await admin_action(client, "message", "delete_messages", [message.pk])
    if who == "staff_without_permission":
        assert response.status_code == 403
    else:
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not (await database_sync_to_async(Message.objects.get)(pk=message.pk)).deleted
    assert await log_entries() == []


def test_the_log_is_read_only_in_the_admin(admin_client, staff, general, other):
    message = services.message_post(room=general, author=other, body="x", client_id="ro")[0]
    services.message_delete(message_id=message.pk, user=staff, door=rules.Door.ADMIN)
    entry = ModerationLog.objects.get()
    assert admin_client.get("/admin/chat/moderationlog/").status_code == 200
    assert admin_client.get(f"/admin/chat/moderationlog/{entry.pk}/change/").status_code == 200
    assert admin_client.get("/admin/chat/moderationlog/add/").status_code == 403
    assert admin_client.post(f"/admin/chat/moderationlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    response = admin_client.post(f"/admin/chat/moderationlog/{entry.pk}/change/", {"summary": "nothing happened"})
    assert response.status_code == 403
    assert ModerationLog.objects.get().summary == "mod deleted message #%d by bob in general" % message.pk
    with pytest.raises(ValueError):
        entry.delete()


def test_every_moderation_changelist_loads_with_its_filters(admin_client, general, user, other, staff):
    message = services.message_post(room=general, author=other, body="look", client_id="cl")[0]
    services.message_report(message_id=message.pk, reporter=user, reason="look at it")
    for path in [
        "room/", "membership/", "message/", "message/?reported=open", "message/?deleted__exact=1&q=look",
        f"message/{message.pk}/change/", "mute/", "roomban/", "siteban/", "report/", "report/?status=resolved",
        "moderationlog/", "moderationlog/?action__exact=mute",
    ]:
        assert admin_client.get(f"/admin/chat/{path}").status_code == 200, path


def test_a_messages_page_lists_its_replies_and_reactions(admin_client, user, other, general):
    root = services.message_post(room=general, author=user, body="the root", client_id="root")[0]
    services.message_post(room=general, author=other, body="a reply to it", client_id="reply", reply_to=root.pk)
    services.reaction_add(message_id=root.pk, user=other, emoji="🎉")
    page = admin_client.get(f"/admin/chat/message/{root.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "a reply to it" in text and "🎉" in text
    assert 'name="replies-0-body"' not in text and 'name="reactions-0-emoji"' not in text  # read-only


def test_the_report_list_shows_the_whole_message_and_links_to_it_in_context(admin_client, general, user, other):
    body = "This is a long message that goes on well past eighty characters, so a truncated list would hide the <b>end</b> of it."
    message = services.message_post(room=general, author=other, body=body, client_id="long1")[0]
    services.message_report(message_id=message.pk, reporter=user, reason="spam")
    page = admin_client.get("/admin/chat/report/").content.decode()
    assert "hide the &lt;b&gt;end&lt;/b&gt; of it." in page  # all of it, escaped
    assert f'href="/rooms/general/?m={message.pk}"' in page
    report_id = Report.objects.get().pk
    detail = admin_client.get(f"/admin/chat/report/{report_id}/change/").content.decode()
    assert "hide the &lt;b&gt;end&lt;/b&gt; of it." in detail
    assert f'href="/rooms/general/?m={message.pk}"' in detail


# --- direct messages ----------------------------------------------------------------------


def test_dms_are_not_in_the_admin_except_a_reported_message(admin_client, general, user, other):
    dm, _ = services.dm_open(user=user, username=other.username)
    public = services.message_post(room=general, author=user, body="public words", client_id="p1")[0]
    private = services.message_post(room=dm, author=user, body="our private plans", client_id="d1")[0]
    rude = services.message_post(room=dm, author=other, body="a rude dm", client_id="d2")[0]
    reply = services.message_post(room=dm, author=user, body="unreported answer", client_id="d3", reply_to=rude.pk)[0]
    services.message_report(message_id=rude.pk, reporter=user, reason="rude")

    messages = admin_client.get("/admin/chat/message/").content.decode()
    assert "public words" in messages and "a rude dm" in messages
    assert "our private plans" not in messages and "unreported answer" not in messages
    assert "our private plans" not in admin_client.get("/admin/chat/message/?q=private").content.decode()
    for hidden in (private, reply):  # the admin answers "doesn't exist" (a redirect), not the page
        assert admin_client.get(f"/admin/chat/message/{hidden.pk}/change/").status_code == 302
    reported = admin_client.get(f"/admin/chat/message/{rude.pk}/change/")
    assert reported.status_code == 200
    assert "a rude dm" in reported.content.decode() and "unreported answer" not in reported.content.decode()
    assert "a rude dm" in admin_client.get("/admin/chat/report/").content.decode()

    rooms = admin_client.get("/admin/chat/room/").content.decode()
    assert "general" in rooms and dm.slug not in rooms
    assert admin_client.get(f"/admin/chat/room/{dm.pk}/change/").status_code == 302
    Membership.objects.create(user=other, room=general)
    memberships = admin_client.get("/admin/chat/membership/").content.decode()
    assert "general" in memberships and dm.slug not in memberships

    # An action posted with a hidden message's id does nothing to it.
    admin_client.post("/admin/chat/message/", {"action": "delete_messages", "_selected_action": [private.pk, public.pk]})
    assert not Message.objects.get(pk=private.pk).deleted and Message.objects.get(pk=public.pk).deleted


def test_staff_read_a_reported_private_message_in_context_in_the_admin(admin_client, staff, user, other, settings):
    settings.CHAT_POST_RATE = "0"  # 30 messages at once
    room = services.room_create(owner=user, slug="secret-plans", name="Secret plans", private=True)
    Membership.objects.get_or_create(user=other, room=room)
    posted = [services.message_post(room=room, author=user if i % 2 else other, body=f"line {i:02d}", client_id=f"c{i}")[0]
              for i in range(30)]
    target = posted[15]
    services.message_report(message_id=target.pk, reporter=other, reason="look")

    # The room page stays closed to staff who are not members; the admin's context page is the way.
    assert admin_client.get(f"/rooms/{room.slug}/?m={target.pk}").status_code == 404
    reports = admin_client.get("/admin/chat/report/").content.decode()
    context_url = f"/admin/chat/message/{target.pk}/context/"
    assert f'href="{context_url}"' in reports and f"/rooms/{room.slug}/" not in reports
    assert f'href="{context_url}"' in admin_client.get(f"/admin/chat/message/{target.pk}/change/").content.decode()

    page = admin_client.get(context_url)
    assert page.status_code == 200
    text = page.content.decode()
    shown = [f"line {i:02d}" for i in range(30) if f"line {i:02d}" in text]
    assert shown == [f"line {i:02d}" for i in range(5, 26)]  # ten before, the message, ten after, in order
    assert 'aria-current="true" data-message="%d"' % target.pk in text

    # Not for staff without chat.moderate, nor for a hidden DM message.
    plain = Client()
    plain.force_login(make_user("clerk", is_staff=True))
    assert plain.get(context_url).status_code == 403
    dm, _ = services.dm_open(user=user, username=other.username)
    secret = services.message_post(room=dm, author=user, body="just us", client_id="dm1")[0]
    assert admin_client.get(f"/admin/chat/message/{secret.pk}/context/").status_code == 404
