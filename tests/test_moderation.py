"""Moderation through the API and the socket reaches open sockets at once (PROTOCOL.md 5),
and a banned user cannot get back in."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from chat import rules, services
from chat.models import Membership, Message, ModerationLog, Room, SiteBan
from chat.protocol import ChatError
from tests.api.conftest import token_client
from tests.conftest import open_socket, session_cookie
from tests.factories import PASSWORD, make_room, make_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

SEEN_WITHIN = 2


def make_site_moderator(username: str = "mod", **extra):
    user = make_user(username, is_staff=True, **extra)
    user.user_permissions.add(Permission.objects.get(codename="moderate", content_type__app_label="chat"))
    return user


def rest(user, method: str, url: str, data=None):
    response = getattr(token_client(user), method)(url, data, format="json")
    return response.status_code, (response.json() if response.content else None)


arest = database_sync_to_async(rest)


async def joined(cookie=None, *, token=None, room="general"):
    sock, connected, _ = await open_socket(cookie=cookie, token=token)
    assert connected
    assert (await sock.join(room))["type"] == "joined"
    return sock


async def close_code(sock, timeout=SEEN_WITHIN) -> int:
    while True:
        output = await sock.comm.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output["code"]


@pytest.fixture
def lobby(db, other) -> Room:
    """bob's public room."""
    return make_room(owner=other, slug="lobby")


@database_sync_to_async
def log_actions() -> list[str]:
    return list(ModerationLog.objects.order_by("pk").values_list("action", flat=True))


# --- room moderators through the socket and REST ---------------------------------------------


async def test_room_moderator_deletes_over_the_socket_and_everyone_sees_by_moderator(user, other, lobby):
    cid = await database_sync_to_async(make_user)("cid")
    await database_sync_to_async(Membership.objects.create)(room=lobby, user=cid, role="moderator")
    message = (await database_sync_to_async(services.message_post)(room=lobby, author=user, body="oops", client_id="o"))[0]
    ann = await joined(await database_sync_to_async(session_cookie)(user), room="lobby")
    moderator = await joined(await database_sync_to_async(session_cookie)(cid), room="lobby")

    await moderator.send(type="delete", id=message.pk)
    expected = {"type": "message.deleted", "room": "lobby", "seq": 2, "id": message.pk, "by": "moderator", "reply_to": None}
    assert await ann.recv(timeout=SEEN_WITHIN) == expected
    assert await moderator.recv(timeout=SEEN_WITHIN) == expected
    assert await log_actions() == ["message.delete"]


async def test_rest_lock_answers_send_and_edit_with_room_locked_and_broadcasts_nothing(user, other, lobby):
    message = (await database_sync_to_async(services.message_post)(room=lobby, author=user, body="hi", client_id="h"))[0]
    ann = await joined(await database_sync_to_async(session_cookie)(user), room="lobby")
    status, room = await arest(other, "patch", "/api/v1/rooms/lobby/", {"locked": True})
    assert status == 200 and room["locked"] is True
    assert await ann.silent(0.3)  # no frame: the protocol has none for a lock

    await ann.send(type="send", room="lobby", body="still here?", client_id="l1")
    assert (await ann.recv(timeout=SEEN_WITHIN))["code"] == "room_locked"
    await ann.send(type="edit", id=message.pk, body="edited")
    assert (await ann.recv(timeout=SEEN_WITHIN))["code"] == "room_locked"
    # The owner still posts in a locked room.
    owner = await joined(await database_sync_to_async(session_cookie)(other), room="lobby")
    await owner.send(type="send", room="lobby", body="announcement", client_id="a1")
    assert (await owner.recv_until("ack", timeout=SEEN_WITHIN))["seq"] == 2
    assert await log_actions() == ["room.lock"]


async def test_rest_mute_answers_send_and_edit_with_muted_at_once(user, other, lobby):
    message = (await database_sync_to_async(services.message_post)(room=lobby, author=user, body="hi", client_id="h"))[0]
    ann = await joined(await database_sync_to_async(session_cookie)(user), room="lobby")
    status, _ = await arest(other, "post", "/api/v1/rooms/lobby/mutes/", {"username": "ann", "reason": "calm down"})
    assert status == 201

    await ann.send(type="send", room="lobby", body="but", client_id="m1")
    assert (await ann.recv(timeout=SEEN_WITHIN))["code"] == "muted"
    await ann.send(type="edit", id=message.pk, body="but")
    assert (await ann.recv(timeout=SEEN_WITHIN))["code"] == "muted"
    # Muted users still read the room.
    await database_sync_to_async(services.message_post)(room=lobby, author=other, body="quiet now", client_id="q")
    assert (await ann.recv_until("message", timeout=SEEN_WITHIN))["message"]["body"] == "quiet now"


async def test_a_mute_with_until_ends_by_itself(user, other, lobby):
    ann = await joined(await database_sync_to_async(session_cookie)(user), room="lobby")
    until = (timezone.now() + timedelta(seconds=1)).isoformat()
    status, _ = await arest(other, "post", "/api/v1/rooms/lobby/mutes/", {"username": "ann", "until": until})
    assert status == 201
    await ann.send(type="send", room="lobby", body="now?", client_id="t1")
    assert (await ann.recv(timeout=SEEN_WITHIN))["code"] == "muted"
    await asyncio.sleep(1.1)
    await ann.send(type="send", room="lobby", body="now!", client_id="t2")
    assert (await ann.recv_until("ack", timeout=SEEN_WITHIN))["seq"] == 1


async def test_rest_ban_kicks_every_socket_of_the_user_from_that_room_only(user, other, lobby, general):
    cookie = await database_sync_to_async(session_cookie)(user)
    token = await database_sync_to_async(make_token)(user)
    tab = await joined(cookie, room="lobby")
    await tab.join("general")
    bot = await joined(token=token, room="lobby")

    status, _ = await arest(other, "post", "/api/v1/rooms/lobby/bans/", {"username": "ann", "reason": "spam"})
    assert status == 201
    for sock in (tab, bot):
        assert await sock.recv(timeout=SEEN_WITHIN) == {"type": "kicked", "room": "lobby", "reason": "Banned from this room: spam"}

    # The kicked socket gets nothing more from lobby, and general goes on.
    await database_sync_to_async(services.message_post)(room=lobby, author=other, body="after", client_id="a")
    await database_sync_to_async(services.message_post)(room=general, author=other, body="elsewhere", client_id="e")
    frame = await tab.recv(timeout=SEEN_WITHIN)
    assert frame["room"] == "general" and frame["message"]["body"] == "elsewhere"
    assert await bot.silent(0.3)

    # Not by reconnecting, not with the token, not with a room URL.
    for sock_kwargs in ({"cookie": cookie}, {"token": token}):
        sock, _, _ = await open_socket(**sock_kwargs)
        error = await sock.join("lobby")
        assert error["code"] == "forbidden" and error["detail"] == "You are banned from this room."
    sock, _, _ = await open_socket("/ws/chat/lobby/", cookie=cookie)
    assert (await sock.recv())["code"] == "forbidden"


# --- site bans ---------------------------------------------------------------------------------


async def test_site_ban_closes_sockets_4403_and_every_way_back_is_refused(user, other, general):
    staff = await database_sync_to_async(make_site_moderator)()
    cookie = await database_sync_to_async(session_cookie)(user)
    token = await database_sync_to_async(make_token)(user)
    bare = await open_socket(cookie=cookie)  # a socket that joined no room
    tab = await joined(cookie)
    bot = await joined(token=token)
    bob = await joined(await database_sync_to_async(session_cookie)(other))

    await database_sync_to_async(services.site_ban_set)(actor=staff, user=user, reason="abuse")
    for sock in (bare[0], tab, bot):
        assert await close_code(sock) == 4403
    await bob.send(type="ping")
    assert (await bob.recv())["type"] == "pong"

    for kwargs in ({"cookie": cookie}, {"token": token}):
        sock, connected, _ = await open_socket("/ws/chat/general/", **kwargs)
        assert connected
        assert await sock.recv() == {"type": "error", "code": "forbidden", "detail": "This account is banned."}
        assert await close_code(sock) == 4403

    # REST: the old token is gone; a session cannot be made; no new token.
    assert (await arest_with_token(token, "get", "/api/v1/rooms/general/messages/"))[0] == 401
    browser = Client()
    assert not await database_sync_to_async(browser.login)(username="ann", password=PASSWORD)
    status, body = await arest_anonymous("post", "/api/v1/auth/token/", {"username": "ann", "password": PASSWORD})
    assert status == 400 and body["code"] == "invalid"


@database_sync_to_async
def arest_with_token(token: str, method: str, url: str, data=None):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = getattr(client, method)(url, data, format="json")
    return response.status_code, (response.json() if response.content else None)


@database_sync_to_async
def arest_anonymous(method: str, url: str, data=None):
    response = getattr(APIClient(), method)(url, data, format="json")
    return response.status_code, (response.json() if response.content else None)


async def test_a_token_made_for_a_banned_user_is_still_closed_4403(user, general):
    """However a credential appears (staff making a token in the admin), the handshake checks the ban."""
    staff = await database_sync_to_async(make_site_moderator)()
    await database_sync_to_async(services.site_ban_set)(actor=staff, user=user)
    token = await database_sync_to_async(make_token)(user)
    sock, connected, _ = await open_socket(token=token)
    assert connected
    assert await close_code(sock) == 4403


async def test_an_expired_site_ban_lets_the_user_back(user, general):
    staff = await database_sync_to_async(make_site_moderator)()
    await database_sync_to_async(services.site_ban_set)(
        actor=staff, user=user, until=timezone.now() + timedelta(seconds=60)
    )
    assert not await database_sync_to_async(Client().login)(username="ann", password=PASSWORD)
    await database_sync_to_async(SiteBan.objects.filter(user=user).update)(until=timezone.now() - timedelta(seconds=1))
    client = Client()
    assert await database_sync_to_async(client.login)(username="ann", password=PASSWORD)
    sock = await joined(client.cookies["sessionid"].value)
    await sock.send(type="ping")
    assert (await sock.recv())["type"] == "pong"


def test_site_ban_rules(db, user):
    staff = make_site_moderator("mod")
    other_staff = make_site_moderator("mod2")
    root = make_user("root", is_staff=True, is_superuser=True)
    cases = [
        (staff, staff, "You cannot ban yourself."),
        (staff, root, "Superusers cannot be banned."),
        (staff, other_staff, "Only a superuser bans a staff moderator."),
        (user, staff, "Only staff moderators ban users from the site."),
    ]
    for actor, target, refusal in cases:
        with pytest.raises(ChatError) as refused:
            services.site_ban_set(actor=actor, user=target)
        assert (refused.value.code, refused.value.detail) == ("forbidden", refusal)
    services.site_ban_set(actor=root, user=other_staff)
    assert SiteBan.objects.filter(user=other_staff).exists()
    with pytest.raises(ChatError) as refused:
        services.site_ban_lift(actor=root, user=user)
    assert refused.value.code == "not_found"


# --- restore and resume ------------------------------------------------------------------------


async def test_a_restore_replays_in_order_after_the_deletion(user, other, general):
    staff = await database_sync_to_async(make_site_moderator)()
    message = (await database_sync_to_async(services.message_post)(room=general, author=other, body="back", client_id="b"))[0]
    await database_sync_to_async(services.message_delete)(message_id=message.pk, user=staff, door=rules.Door.ADMIN)
    restored = await database_sync_to_async(services.message_restore)(message_id=message.pk, actor=staff)
    assert not restored.deleted
    # Restoring again changes nothing and takes no seq.
    await database_sync_to_async(services.message_restore)(message_id=message.pk, actor=staff)
    sock = await joined(await database_sync_to_async(session_cookie)(user), room="general")
    await sock.send(type="join", room="general", since=0)
    frames = [await sock.recv() for _ in range(4)]
    assert [f["type"] for f in frames] == ["joined", "message", "message.deleted", "message.edited"]
    assert frames[0]["seq"] == 3
    assert frames[3]["seq"] == 3 and frames[3]["message"]["body"] == "back"
    assert (await database_sync_to_async(Room.objects.get)(pk=general.pk)).seq == 3
    assert await log_actions() == ["message.delete", "message.restore"]


def test_restore_of_no_such_message_is_not_found(db):
    staff = make_site_moderator()
    with pytest.raises(ChatError) as refused:
        services.message_restore(message_id=424242, actor=staff)
    assert refused.value.code == "not_found"
    assert not Message.objects.exists()
