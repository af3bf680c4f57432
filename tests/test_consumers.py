"""ChatConsumer over the real ASGI stack: auth middleware, router, hub, services.

These run on whichever channel layer the settings select (in-memory by default, Redis when
REDIS_URL is set), so CI runs them on both.
"""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import realtime, services
from chat.models import Membership, Message, Mute, Room, RoomBan
from tests.conftest import open_socket, session_cookie
from tests.factories import make_room

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def message_count() -> int:
    return Message.objects.count()


@database_sync_to_async
def post(room_slug, author, body, client_id):
    room = Room.objects.get(slug=room_slug)
    return services.message_post(room=room, author=author, body=body, client_id=client_id)[0]


async def joined_socket(cookie, room="general", **extra):
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected
    joined = await sock.join(room, **extra)
    assert joined["type"] == "joined", joined
    return sock, joined


async def assert_alive(sock):
    await sock.send(type="ping", ref="alive")
    assert await sock.recv() == {"type": "pong", "ref": "alive"}


# --- handshake --------------------------------------------------------------------------


async def test_anonymous_socket_gets_unauthenticated_then_4401():
    sock, connected, _ = await open_socket()
    assert connected
    frame = await sock.recv()
    assert frame["type"] == "error" and frame["code"] == "unauthenticated"
    assert (await sock.comm.receive_output(2))["code"] == 4401


async def test_session_that_no_longer_authenticates_gets_4401(general):
    sock, connected, _ = await open_socket(cookie="not-a-session")
    assert connected
    assert (await sock.recv())["code"] == "unauthenticated"
    assert (await sock.comm.receive_output(2))["code"] == 4401


@pytest.mark.parametrize("origin", ["http://evil.example", "null", None, "file://localhost"])
async def test_session_cookie_with_missing_null_or_foreign_origin_is_refused(ann_cookie, origin):
    _sock, connected, _ = await open_socket(cookie=ann_cookie, origin=origin)
    assert not connected


async def test_token_header_authenticates_without_origin(ann_token, general):
    sock, connected, _ = await open_socket(token=ann_token, origin=None)
    assert connected
    assert (await sock.join("general"))["type"] == "joined"


async def test_bad_token_is_unauthenticated_whatever_the_origin(general):
    sock, connected, _ = await open_socket(token="nope", origin="http://evil.example")
    assert connected
    assert (await sock.recv())["code"] == "unauthenticated"
    assert (await sock.comm.receive_output(2))["code"] == 4401


async def test_subprotocol_chat_v1_is_selected_and_unknown_ones_refused(ann_cookie):
    _sock, connected, subprotocol = await open_socket(cookie=ann_cookie, subprotocols=["x", "chat.v1"])
    assert connected and subprotocol == "chat.v1"
    _sock, connected, _ = await open_socket(cookie=ann_cookie, subprotocols=["chat.v2"])
    assert not connected


async def test_room_url_joins_at_connect(ann_cookie):
    sock, connected, _ = await open_socket("/ws/chat/general/", cookie=ann_cookie)
    assert connected
    joined = await sock.recv()
    assert joined["type"] == "joined" and joined["room"] == "general" and "ref" not in joined


# --- chatting ---------------------------------------------------------------------------


async def test_send_is_acked_and_broadcast_to_every_member_the_sender_too(ann_cookie, bob_cookie):
    ann, joined = await joined_socket(ann_cookie)
    assert joined == {"type": "joined", "room": "general", "seq": 0, "online": ["ann"], "resync": False}
    bob, _ = await joined_socket(bob_cookie)

    await ann.send(type="send", room="general", body="  hi bob \n", client_id="c1", ref="r1")
    got = {}
    for _ in range(2):
        frame = await ann.recv()
        got[frame["type"]] = frame
    ack, message = got["ack"], got["message"]
    assert ack == {"type": "ack", "room": "general", "client_id": "c1", "id": ack["id"], "seq": 1, "ref": "r1"}
    assert message["seq"] == 1 and message["room"] == "general"
    body = message["message"]
    assert body["body"] == "hi bob" and body["author"]["username"] == "ann" and body["id"] == ack["id"]
    assert body["deleted"] is False and body["edited_at"] is None and body["created_at"].endswith("Z")
    assert await bob.recv() == message
    assert await message_count() == 1


async def test_retried_send_is_acked_again_and_stored_and_broadcast_once(ann_cookie, bob_cookie):
    ann, _ = await joined_socket(ann_cookie)
    bob, _ = await joined_socket(bob_cookie)
    await ann.send(type="send", room="general", body="once", client_id="same")
    first = await ann.recv_until("ack")
    await ann.send(type="send", room="general", body="once again", client_id="same", ref="retry")
    second = await ann.recv_until("ack")
    assert second == {**first, "ref": "retry"}
    assert (await bob.recv())["seq"] == 1
    assert await bob.silent()
    assert await message_count() == 1


async def test_join_with_since_replays_exactly_the_missed_events_in_order(ann_cookie, user, other):
    for i in range(5):
        await post("general", other, f"m{i}", f"c{i}")
    ann, joined = await joined_socket(ann_cookie, since=2)
    assert joined["seq"] == 5 and joined["resync"] is False
    replayed = [await ann.recv() for _ in range(3)]
    assert [f["seq"] for f in replayed] == [3, 4, 5]
    assert [f["message"]["body"] for f in replayed] == ["m2", "m3", "m4"]
    assert await ann.silent()
    # Live events continue right after the replay.
    await post("general", other, "live", "c-live")
    assert (await ann.recv())["seq"] == 6


async def test_replay_carries_the_current_state_of_each_message(ann_cookie, user, other):
    message = await post("general", other, "secret", "c1")
    await database_sync_to_async(services.message_edit)(message_id=message.pk, user=other, body="edited")
    await database_sync_to_async(services.message_delete)(message_id=message.pk, user=other)
    ann, joined = await joined_socket(ann_cookie, since=0)
    frames = [await ann.recv() for _ in range(3)]
    assert [f["type"] for f in frames] == ["message", "message.edited", "message.deleted"]
    assert all(f["message"]["deleted"] and f["message"]["body"] == "" for f in frames[:2])
    assert frames[2] == {"type": "message.deleted", "room": "general", "seq": 3, "id": message.pk, "by": "author",
                         "reply_to": None}
    assert "secret" not in json.dumps(frames) and "edited" != frames[1]["message"]["body"]


async def test_since_ahead_of_the_room_or_too_far_behind_asks_for_resync(ann_cookie, other, settings):
    settings.CHAT_POST_RATE = "0"
    ann, joined = await joined_socket(ann_cookie, since=10)
    assert joined["resync"] is True and joined["seq"] == 0

    @database_sync_to_async
    def post_many(n):
        room = Room.objects.get(slug="general")
        for i in range(n):
            services.message_post(room=room, author=other, body=f"m{i}", client_id=f"bulk{i}")

    await post_many(502)
    bob_cookie = await database_sync_to_async(session_cookie)(other)
    bob, joined = await joined_socket(bob_cookie, since=1)
    assert joined["resync"] is True and joined["seq"] == 502
    assert await bob.silent()


async def test_without_since_nothing_is_replayed(ann_cookie, other):
    await post("general", other, "old", "c1")
    ann, joined = await joined_socket(ann_cookie)
    assert joined["seq"] == 1
    assert await ann.silent()


async def test_a_lost_broadcast_is_filled_from_the_database(ann_cookie, other, monkeypatch):
    ann, _ = await joined_socket(ann_cookie)
    published = realtime.room_events_publish
    monkeypatch.setattr(realtime, "room_events_publish", lambda rooms: None)
    await post("general", other, "lost in the layer", "c1")  # its broadcast never happens
    monkeypatch.setattr(realtime, "room_events_publish", published)
    # Nothing follows it: the database poll notices within about a second.
    frame = await ann.recv(timeout=1.5)
    assert frame["seq"] == 1 and frame["message"]["body"] == "lost in the layer"
    # A lost event followed by a live one: the gap is filled before the live event.
    monkeypatch.setattr(realtime, "room_events_publish", lambda rooms: None)
    await post("general", other, "lost again", "c2")
    monkeypatch.setattr(realtime, "room_events_publish", published)
    await post("general", other, "arrives", "c3")
    frames = [await ann.recv(timeout=1.5) for _ in range(2)]
    assert [(f["seq"], f["message"]["body"]) for f in frames] == [(2, "lost again"), (3, "arrives")]
    assert await ann.silent(0.8)


async def test_leave_stops_delivery(ann_cookie, other):
    ann, _ = await joined_socket(ann_cookie)
    await ann.send(type="leave", room="general", ref="l")
    assert await ann.recv() == {"type": "left", "room": "general", "ref": "l"}
    await post("general", other, "after leave", "c1")
    assert await ann.silent(0.5)


async def test_public_room_join_makes_a_membership(ann_cookie, user):
    await joined_socket(ann_cookie)
    assert await database_sync_to_async(Membership.objects.filter(user=user, room__slug="general").exists)()


async def test_logout_closes_that_sessions_sockets_with_4401(user, general):
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = client.cookies["sessionid"].value
    other_session = await database_sync_to_async(session_cookie)(user)
    sock, _ = await joined_socket(cookie)
    other_sock, _ = await joined_socket(other_session)
    await database_sync_to_async(client.post)("/accounts/logout/")
    assert (await sock.comm.receive_output(2))["code"] == 4401
    await assert_alive(other_sock)


# --- bad input: every error code, socket open, nothing stored ------------------------------


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('"text"', "bad_json"),
        ('{"type": "shout"}', "bad_frame"),
        ('{"room": "general"}', "bad_frame"),
        ('{"type": "send", "room": "general", "body": 5, "client_id": "x"}', "bad_frame"),
        ('{"type": "send", "room": "general", "body": "hi"}', "bad_frame"),
        ('{"type": "edit", "id": true, "body": "x"}', "bad_frame"),
        ('{"type": "join", "room": "general", "since": "3"}', "bad_frame"),
        ('{"type": "ping", "ref": 7}', "bad_frame"),
        ('{"type": "ping", "ref": "' + "r" * 65 + '"}', "bad_frame"),
        ('{"type": "send", "room": "general", "body": "   ", "client_id": "x"}', "invalid"),
        ('{"type": "send", "room": "general", "body": "' + "é" * 4001 + '", "client_id": "x"}', "invalid"),
        ('{"type": "send", "room": "general", "body": "hi", "client_id": ""}', "invalid"),
        ('{"type": "send", "room": "general", "body": "hi", "client_id": "' + "c" * 65 + '"}', "invalid"),
        ('{"type": "join", "room": "Bad Slug!"}', "invalid"),
        ('{"type": "join", "room": "nowhere"}', "not_found"),
        ('{"type": "edit", "id": 999999, "body": "x"}', "not_found"),
        ('{"type": "delete", "id": 999999}', "not_found"),
        ('{"type": "send", "room": "elsewhere", "body": "hi", "client_id": "x"}', "not_joined"),
        ('{"type": "typing", "room": "elsewhere"}', "not_joined"),
        ('{"type": "read", "room": "elsewhere", "seq": 1}', "not_joined"),
    ],
)
async def test_bad_frames_get_their_error_code_and_change_nothing(ann_cookie, raw, code):
    ann, _ = await joined_socket(ann_cookie)
    await ann.send_raw(raw)
    frame = await ann.recv()
    assert frame["type"] == "error" and frame["code"] == code, frame
    assert frame["detail"]
    await assert_alive(ann)
    assert await message_count() == 0


async def test_error_echoes_the_ref_of_a_parsed_frame(ann_cookie):
    ann, _ = await joined_socket(ann_cookie)
    await ann.send(type="send", room="general", body="", client_id="x", ref="mine")
    assert (await ann.recv())["ref"] == "mine"


async def test_binary_and_oversized_frames(ann_cookie):
    ann, _ = await joined_socket(ann_cookie)
    await ann.send_raw(bytes_data=b'{"type": "ping"}')
    assert (await ann.recv())["code"] == "bad_json"
    await ann.send_raw(json.dumps({"type": "ping", "pad": "x" * (64 * 1024)}))
    assert (await ann.recv())["code"] == "too_large"
    await assert_alive(ann)


async def test_a_body_of_4000_code_points_is_accepted(ann_cookie):
    ann, _ = await joined_socket(ann_cookie)
    await ann.send(type="send", room="general", body="😀" * 4000, client_id="long")
    assert (await ann.recv_until("ack"))["seq"] == 1


async def test_private_room_is_not_found_for_non_members(ann_cookie, other):
    await database_sync_to_async(make_room)(owner=other, slug="secret", private=True)
    ann, connected, _ = await open_socket(cookie=ann_cookie)
    error = await ann.join("secret")
    assert error["code"] == "not_found"
    assert error["detail"] == (await ann.join("no-such-room"))["detail"]


async def test_editing_anothers_message_is_forbidden(ann_cookie, other):
    message = await post("general", other, "bob's", "c1")
    ann, _ = await joined_socket(ann_cookie)
    await ann.send(type="edit", id=message.pk, body="mine now", ref="e")
    assert (await ann.recv()) | {"detail": ""} == {"type": "error", "code": "forbidden", "detail": "", "ref": "e"}
    await ann.send(type="delete", id=message.pk)
    assert (await ann.recv())["code"] == "forbidden"
    assert await database_sync_to_async(lambda: Message.objects.get(pk=message.pk).body)() == "bob's"


async def test_banned_user_cannot_join(ann_cookie, user, general):
    await database_sync_to_async(RoomBan.objects.create)(room=general, user=user)
    ann, _, _ = await open_socket(cookie=ann_cookie)
    assert (await ann.join("general"))["code"] == "forbidden"


async def test_muted_user_reads_but_cannot_post(ann_cookie, user, general):
    ann, _ = await joined_socket(ann_cookie)
    await database_sync_to_async(Mute.objects.create)(room=general, user=user)
    await ann.send(type="send", room="general", body="hi", client_id="x")
    assert (await ann.recv())["code"] == "muted"
    assert await message_count() == 0


async def test_locked_room_refuses_members_posts(ann_cookie, general):
    ann, _ = await joined_socket(ann_cookie)
    await database_sync_to_async(Room.objects.filter(pk=general.pk).update)(locked=True)
    await ann.send(type="send", room="general", body="hi", client_id="x")
    assert (await ann.recv())["code"] == "room_locked"
    assert await message_count() == 0


async def test_database_errors_answer_unavailable_and_other_errors_server_error(ann_cookie, monkeypatch):
    from django.db import OperationalError

    ann, _ = await joined_socket(ann_cookie)

    def down(posts, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "message_post_many", down)
    await ann.send(type="send", room="general", body="hi", client_id="x")
    assert (await ann.recv())["code"] == "unavailable"

    def broken(posts, **kwargs):
        raise KeyError("bug")

    monkeypatch.setattr(services, "message_post_many", broken)
    await ann.send(type="send", room="general", body="hi", client_id="x")
    assert (await ann.recv())["code"] == "server_error"
    await assert_alive(ann)


async def test_posting_rate_gives_rate_limited_with_retry_after(ann_cookie, settings):
    settings.CHAT_POST_RATE = "3/10s"
    ann, _ = await joined_socket(ann_cookie)
    for i in range(3):
        await ann.send(type="send", room="general", body=f"m{i}", client_id=f"c{i}")
        await ann.recv_until("ack")
    await ann.send(type="send", room="general", body="too many", client_id="c3")
    error = await ann.recv_until("error")
    assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= 10
    # A retry of a stored message is not counted and is still acked.
    await ann.send(type="send", room="general", body="m0", client_id="c0")
    assert (await ann.recv_until("ack"))["seq"] == 1
    assert await message_count() == 3


async def test_repeated_rate_limited_closes_with_4429(ann_cookie, settings):
    settings.CHAT_POST_RATE = "1/60s"
    ann, _ = await joined_socket(ann_cookie)
    for i in range(20):
        await ann.send(type="send", room="general", body="spam", client_id=f"s{i}")
    codes = []
    while True:
        out = await ann.comm.receive_output(2)
        if out["type"] == "websocket.close":
            assert out["code"] == 4429
            break
        codes.append(json.loads(out["text"]).get("code"))
    assert codes.count("rate_limited") > 5
    assert await message_count() == 1


async def test_frame_flood_is_rate_limited(ann_cookie, settings):
    settings.CHAT_FRAME_BURST = 5
    settings.CHAT_FRAME_RATE = 0.1
    ann, _ = await joined_socket(ann_cookie)  # the join spent one token
    for _ in range(6):
        await ann.send(type="ping")
    frames = [await ann.recv() for _ in range(6)]
    assert [f["type"] for f in frames].count("pong") == 4
    assert frames[-1]["code"] == "rate_limited"


# --- typing -------------------------------------------------------------------------------


async def test_typing_reaches_the_others_once_per_3_s_and_not_the_typist(ann_cookie, bob_cookie, user):
    ann, _ = await joined_socket(ann_cookie)
    ann_tab2, _ = await joined_socket(await database_sync_to_async(session_cookie)(user))
    bob, _ = await joined_socket(bob_cookie)
    for _ in range(3):
        await ann.send(type="typing", room="general")
    await ann_tab2.send(type="typing", room="general")  # the same user from another socket
    assert await bob.recv() == {"type": "typing", "room": "general", "user": "ann"}
    assert await bob.silent(0.5)
    assert await ann.silent(0.1) and await ann_tab2.silent(0.1)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_a_ready_made_event_frame_is_the_frame_a_websocket_library_builds(size):
    from websockets.frames import Frame, Opcode

    from chat.protocol import websocket_text_frame

    payload = b"a" * size
    assert websocket_text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
