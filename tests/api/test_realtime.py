"""REST and WebSocket are two doors into the same room: each sees what the other does."""

import pytest
from channels.db import database_sync_to_async

from tests.api.conftest import token_client
from tests.conftest import open_socket

pytestmark = pytest.mark.django_db(transaction=True)


def rest(user, method: str, url: str, data=None):
    """Call the API as ``user`` (token auth); return (status, json)."""
    response = getattr(token_client(user), method)(url, data, format="json")
    return response.status_code, (response.json() if response.content else None)


arest = database_sync_to_async(rest)


async def test_rest_post_reaches_connected_sockets_as_message(user, other, ann_cookie, bob_cookie):
    ann, _, _ = await open_socket(cookie=ann_cookie)
    bob, _, _ = await open_socket(cookie=bob_cookie)
    await ann.join("general")
    await bob.join("general")

    status, message = await arest(user, "post", "/api/v1/rooms/general/messages/", {"body": " hi ", "client_id": "r1"})
    assert status == 201
    for sock in (ann, bob):  # the sender's own sockets too
        frame = await sock.recv_until("message")
        assert frame == {"type": "message", "room": "general", "seq": 1, "message": message}

    # A repeated client_id is not broadcast again.
    status, again = await arest(user, "post", "/api/v1/rooms/general/messages/", {"body": "hi", "client_id": "r1"})
    assert (status, again) == (200, message)
    assert await bob.silent(0.3)
    await ann.close()
    await bob.close()


async def test_rest_edit_and_delete_reach_sockets(user, other, bob_cookie, general):
    bob, _, _ = await open_socket(cookie=bob_cookie)
    await bob.join("general")
    _, message = await arest(user, "post", "/api/v1/rooms/general/messages/", {"body": "typo", "client_id": "e1"})
    await bob.recv_until("message")

    status, edited = await arest(user, "patch", f"/api/v1/messages/{message['id']}/", {"body": "fixed"})
    assert status == 200
    frame = await bob.recv_until("message.edited")
    assert frame == {"type": "message.edited", "room": "general", "seq": 2, "message": edited}

    status, _ = await arest(user, "delete", f"/api/v1/messages/{message['id']}/")
    assert status == 204
    frame = await bob.recv_until("message.deleted")
    assert frame == {"type": "message.deleted", "room": "general", "seq": 3, "id": message["id"], "by": "author", "reply_to": None}
    await bob.close()


async def test_socket_send_is_in_rest_history_at_once(user, ann_cookie):
    ann, _, _ = await open_socket(cookie=ann_cookie)
    await ann.join("general")
    await ann.send(type="send", room="general", body="from the socket", client_id="w1")
    ack = await ann.recv_until("ack")

    status, history = await arest(user, "get", "/api/v1/rooms/general/messages/")
    assert status == 200
    assert [(m["id"], m["seq"], m["body"]) for m in history["results"]] == [(ack["id"], ack["seq"], "from the socket")]

    # The same client_id over REST is the same message: 200, nothing new.
    status, again = await arest(user, "post", "/api/v1/rooms/general/messages/", {"body": "x", "client_id": "w1"})
    assert status == 200 and again["id"] == ack["id"]
    await ann.close()


async def test_a_new_topic_or_name_reaches_the_rooms_sockets_and_a_lock_alone_does_not(user, other, room, bob_cookie):
    bob, _, _ = await open_socket(cookie=bob_cookie)
    await bob.join("lobby")

    status, _ = await arest(user, "patch", "/api/v1/rooms/lobby/", {"topic": "  Ship it on Friday "})
    assert status == 200
    frame = await bob.recv_until("room.updated")
    assert frame == {"type": "room.updated", "room": "lobby", "name": "lobby", "topic": "Ship it on Friday", "locked": False}

    # Nothing changed, or only the lock (`send` answers room_locked from then on): no frame.
    assert (await arest(user, "patch", "/api/v1/rooms/lobby/", {"topic": "Ship it on Friday"}))[0] == 200
    assert (await arest(user, "patch", "/api/v1/rooms/lobby/", {"locked": True}))[0] == 200
    assert await bob.silent(0.3)

    assert (await arest(user, "patch", "/api/v1/rooms/lobby/", {"name": "Lobby"}))[0] == 200
    frame = await bob.recv_until("room.updated")
    assert frame == {"type": "room.updated", "room": "lobby", "name": "Lobby", "topic": "Ship it on Friday", "locked": True}
    await bob.close()
