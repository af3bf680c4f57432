"""A bot at the WebSocket (PROTOCOL.md 9): its token authenticates (`Authorization: Token`,
no Origin), it joins and posts like anyone, MESSAGE says ``author.bot`` to every socket and
in replays, and ending the bot closes its sockets with 4401."""

import pytest
from channels.db import database_sync_to_async

from chat import rules, services
from tests.conftest import open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_bot(owner, username="deploybot"):
    return services.bot_create(owner=owner, username=username)


async def test_a_bots_token_opens_a_socket_and_its_messages_say_bot_everywhere(user, general, ann_cookie):
    bot, key = await make_bot(user)
    bot_sock, connected, _ = await open_socket(token=key, origin=None)
    assert connected
    assert (await bot_sock.join("general"))["type"] == "joined"  # joining a public room makes it a member
    ann, _, _ = await open_socket(cookie=ann_cookie)
    assert (await ann.join("general"))["type"] == "joined"

    await bot_sock.send(type="send", room="general", body="deploy started", client_id="b1")
    ack = await bot_sock.recv_until("ack")
    assert ack["seq"] == 1
    seen = await ann.recv_until("message")
    assert seen["message"]["author"] == {"id": bot.pk, "username": "deploybot", "bot": True}
    await ann.send(type="send", room="general", body="thanks", client_id="a1")
    assert (await bot_sock.recv_until("message"))["message"]["author"]["bot"] is False

    # A replay (join with since) carries the flag too.
    late, _, _ = await open_socket(cookie=ann_cookie)
    assert (await late.join("general", since=0))["type"] == "joined"
    replayed = [await late.recv_until("message") for _ in range(2)]
    assert [f["message"]["author"]["bot"] for f in replayed] == [True, False]
    for sock in (bot_sock, ann, late):
        await sock.close()


async def test_ending_a_bot_closes_its_sockets_with_4401(user, general):
    _bot, key = await make_bot(user)
    sock, connected, _ = await open_socket(token=key, origin=None)
    assert connected and (await sock.join("general"))["type"] == "joined"
    await database_sync_to_async(services.bot_end)(actor=user, username="deploybot")
    assert await sock.comm.receive_output(2) == {"type": "websocket.close", "code": 4401}
    again, connected, _ = await open_socket(token=key, origin=None)
    assert connected and (await again.recv())["code"] == "unauthenticated"


async def test_a_bot_removed_from_a_public_room_may_no_longer_post_there(user, general):
    bot, key = await make_bot(user)
    sock, connected, _ = await open_socket(token=key, origin=None)
    assert connected and (await sock.join("general"))["type"] == "joined"

    def remove():
        access = rules.room_access(user=bot, room=general, door=rules.Door.API)
        services.member_remove(access=access, actor=bot, user=bot)

    await database_sync_to_async(remove)()
    await sock.send(type="send", room="general", body="still here?", client_id="b1", ref="r")
    error = await sock.recv_until("error")
    assert error["code"] == "forbidden" and error["ref"] == "r"
    await sock.close()
