"""Two real Daphne processes on the real Redis and the test database."""

import asyncio
import json

import pytest
import websockets

from tests.conftest import redis_url
from tests.factories import make_token, make_user
from tests.servers import servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.fixture
def tokens(general):
    return make_token(make_user("ann")), make_token(make_user("bob"))


async def _recv(ws, type_, timeout=5):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == type_:
            return frame


async def test_a_message_sent_to_one_process_reaches_a_client_of_the_other(tokens, tmp_path):
    ann_token, bob_token = tokens
    with servers(2, redis_url=redis_url(), log_dir=tmp_path) as (a, b):
        async with (
            websockets.connect(f"{a.ws}/ws/chat/", additional_headers={"Authorization": f"Token {ann_token}"}) as ann,
            websockets.connect(f"{b.ws}/ws/chat/", additional_headers={"Authorization": f"Token {bob_token}"}) as bob,
        ):
            for ws in (ann, bob):
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                await _recv(ws, "joined")
            loop = asyncio.get_running_loop()
            await ann.send(json.dumps({"type": "send", "room": "general", "body": "across", "client_id": "x1"}))
            ack = await _recv(ann, "ack")
            sent_at = loop.time()
            message = await _recv(bob, "message")
            latency = loop.time() - sent_at
            assert message["message"]["id"] == ack["id"] and message["message"]["body"] == "across"
            # Faster than the database poll (0.5-1 s): it came over Redis.
            assert latency < 0.4, latency
            # B timed bob's delivery from the commit time in the layer message (metrics.DELIVERY_SECONDS).
            b_metrics = await asyncio.to_thread(b.metrics)
            assert b_metrics["chat_delivery_seconds_count"] == 1 and b_metrics.get("chat_ack_seconds_count", 0) == 0
            # And back the other way.
            await bob.send(json.dumps({"type": "send", "room": "general", "body": "back", "client_id": "y1"}))
            assert (await _recv(ann, "message"))["message"]["body"] == "back"


async def _recv_presence(ws, timeout):
    return await _recv(ws, "presence", timeout)


async def test_presence_across_processes_and_after_one_is_killed(tokens, tmp_path):
    """Users on different processes see each other; a killed process's users go offline
    within 30 s (its presence entries lapse and the survivors' sweeps notice)."""
    ann_token, bob_token = tokens
    with servers(2, redis_url=redis_url(), log_dir=tmp_path) as (a, b):
        async with websockets.connect(f"{b.ws}/ws/chat/", additional_headers={"Authorization": f"Token {bob_token}"}) as bob:
            await bob.send(json.dumps({"type": "join", "room": "general"}))
            assert (await _recv(bob, "joined"))["online"] == ["bob"]
            ann = await websockets.connect(f"{a.ws}/ws/chat/", additional_headers={"Authorization": f"Token {ann_token}"})
            await ann.send(json.dumps({"type": "join", "room": "general"}))
            assert (await _recv(ann, "joined"))["online"] == ["ann", "bob"]
            assert await _recv_presence(bob, 3) == {"type": "presence", "room": "general", "user": "ann", "online": True}

            a.process.kill()  # no close frames, no clean-up: a crashed server
            started = asyncio.get_running_loop().time()
            gone = await _recv_presence(bob, 35)
            assert gone == {"type": "presence", "room": "general", "user": "ann", "online": False}
            assert asyncio.get_running_loop().time() - started <= 30


async def test_a_vanished_tcp_connection_goes_offline_within_30_s(tokens, tmp_path):
    """A client that stops answering (no close frame, no pong) counts as gone."""
    ann_token, bob_token = tokens
    with servers(1, redis_url=redis_url(), log_dir=tmp_path) as (server,):
        async with websockets.connect(f"{server.ws}/ws/chat/", additional_headers={"Authorization": f"Token {bob_token}"}) as bob:
            await bob.send(json.dumps({"type": "join", "room": "general"}))
            await _recv(bob, "joined")
            # A raw socket: handshake and join by hand, then silence, as if the network vanished.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                (
                    "GET /ws/chat/general/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    f"Sec-WebSocket-Version: 13\r\nAuthorization: Token {ann_token}\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            assert b"101" in (await reader.readline())
            assert (await _recv_presence(bob, 5))["online"] is True
            started = asyncio.get_running_loop().time()
            gone = await _recv_presence(bob, 35)
            assert gone["user"] == "ann" and gone["online"] is False
            assert asyncio.get_running_loop().time() - started <= 30
            writer.close()


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
async def test_room_events_arrive_intact_as_frames_built_once(tokens, tmp_path, server):
    """Live events and replays reach a real server's sockets as frames built once for every
    socket (serving.frame_writer): short, 2-byte-length and 16 KB frames arrive intact, in order."""
    ann_token, bob_token = tokens
    bodies = ["hi", "x" * 200, "😀" * 4000]
    with servers(1, redis_url=None, log_dir=tmp_path, server=server) as (a,):
        headers = {"Authorization": f"Token {bob_token}"}
        async with (
            websockets.connect(f"{a.ws}/ws/chat/", additional_headers={"Authorization": f"Token {ann_token}"}) as ann,
            websockets.connect(f"{a.ws}/ws/chat/", additional_headers=headers) as bob,
        ):
            for ws in (ann, bob):
                await ws.send(json.dumps({"type": "join", "room": "general"}))
                await _recv(ws, "joined")
            for i, body in enumerate(bodies):
                await ann.send(json.dumps({"type": "send", "room": "general", "body": body, "client_id": f"c{i}"}))
            live = [await _recv(bob, "message") for _ in bodies]
            assert [(m["seq"], m["message"]["body"]) for m in live] == list(enumerate(bodies, start=1))
        async with websockets.connect(f"{a.ws}/ws/chat/", additional_headers=headers) as again:
            await again.send(json.dumps({"type": "join", "room": "general", "since": 0}))
            await _recv(again, "joined")
            replayed = [await _recv(again, "message") for _ in bodies]
            assert [(m["seq"], m["message"]["body"]) for m in replayed] == list(enumerate(bodies, start=1))
