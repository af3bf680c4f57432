"""Real uvicorn processes (CHAT_SERVER=uvicorn) on the test database: every guarantee the
Daphne tests check in test_processes.py and test_operations.py, under the other server.

uvicorn runs with deploy/worker's flags (harness/processes.py: UVICORN_FLAGS), including
``--ws chat.serving:WebSocketProtocol`` (chat/serving/uvicorn.py explains why)."""

import asyncio
import json
import signal
import socket
import time
import urllib.request

import pytest
import websockets

from tests.conftest import redis_url
from tests.factories import make_token, make_user
from tests.servers import servers, sigterm_drain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

UVICORN = {"server": "uvicorn"}


@pytest.fixture
def tokens(general):
    return make_token(make_user("ann")), make_token(make_user("bob"))


def _connect(server, token, **kwargs):
    return websockets.connect(
        f"{server.ws}/ws/chat/", additional_headers={"Authorization": f"Token {token}"}, proxy=None, **kwargs
    )


async def _recv(ws, type_, timeout=5):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == type_:
            return frame


async def _recv_all(ws, *types, timeout=5):
    """The first frame of each of ``types``, in whatever order they come."""
    got = {}
    while set(types) - set(got):
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        got.setdefault(frame["type"], frame)
    return got


async def _join(ws, room="general"):
    await ws.send(json.dumps({"type": "join", "room": room}))
    return await _recv(ws, "joined")


def _metrics(server) -> dict[str, float]:
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {n: float(v) for n, _, v in (line.rpartition(" ") for line in lines if line and not line.startswith("#"))}


def _raw_handshake(port: int, token: str, path: str = "/ws/chat/general/") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Token {token}\r\n\r\n"
    ).encode()


async def test_two_users_exchange_a_message(tokens, tmp_path):
    ann_token, bob_token = tokens
    with servers(1, redis_url=None, log_dir=tmp_path, **UVICORN) as (server,):
        async with _connect(server, ann_token) as ann, _connect(server, bob_token) as bob:
            await _join(ann)
            assert (await _join(bob))["online"] == ["ann", "bob"]
            await ann.send(json.dumps({"type": "send", "room": "general", "body": " hi bob ", "client_id": "c1", "ref": "r1"}))
            frames = await _recv_all(ann, "ack", "message")  # the sender gets the broadcast too
            ack = frames["ack"]
            assert ack["ref"] == "r1" and ack["client_id"] == "c1"
            for message in (frames["message"], await _recv(bob, "message")):
                assert message["seq"] == ack["seq"] and message["message"]["id"] == ack["id"]
                assert message["message"]["body"] == "hi bob" and message["message"]["author"]["username"] == "ann"


async def test_a_message_sent_to_one_process_reaches_a_client_of_the_other(tokens, tmp_path):
    # Like test_processes.py: REDIS_URL, or the machine's local Redis.
    ann_token, bob_token = tokens
    with servers(2, redis_url=redis_url(), log_dir=tmp_path, **UVICORN) as (a, b):
        async with _connect(a, ann_token) as ann, _connect(b, bob_token) as bob:
            for ws in (ann, bob):
                await _join(ws)
            loop = asyncio.get_running_loop()
            await ann.send(json.dumps({"type": "send", "room": "general", "body": "across", "client_id": "x1"}))
            ack = (await _recv_all(ann, "ack", "message"))["ack"]
            sent_at = loop.time()
            message = await _recv(bob, "message")
            latency = loop.time() - sent_at
            assert message["message"]["id"] == ack["id"] and message["message"]["body"] == "across"
            assert latency < 0.4, latency  # faster than the database poll: it came over Redis
            await bob.send(json.dumps({"type": "send", "room": "general", "body": "back", "client_id": "y1"}))
            assert (await _recv(ann, "message"))["message"]["body"] == "back"


async def test_sigterm_closes_every_socket_with_1001_stops_listening_and_exits_0(tokens, tmp_path):
    with servers(1, redis_url=None, log_dir=tmp_path, **UVICORN) as (server,):
        sockets = [await _connect(server, t) for t in tokens]
        for ws in sockets:
            await _join(ws)
        codes, refused, returncode, took = await sigterm_drain(server, sockets)
        # uvicorn on its own closes with 1012; the drain in chat/serving/drain.py with 1001.
        assert codes == [1001] * len(sockets)
        # The listener went first: a new connection is refused, so a proxy tries another worker.
        assert refused
        # 0, not -15: uvicorn on its own re-raises SIGTERM after shutting down.
        assert returncode == 0
        assert took < 5
        assert "closed 2 socket(s) with 1001" in server.log.read_text()


async def test_a_socket_that_stops_reading_is_closed_and_the_others_keep_receiving(tokens, tmp_path):
    """uvicorn's own send waits for a socket that does not read (flow control), which would
    stall the hub's fan-out for every socket; here the slow socket's backlog passes
    CHAT_SEND_BACKLOG for CHAT_SLOW_SOCKET_SECONDS, it is closed with 1011 and its connection
    let go, and the reading socket gets every message in order, without waiting, meanwhile."""
    slow_token, fast_token = tokens
    env = {
        "CHAT_SEND_BACKLOG": str(256 * 1024), "CHAT_SLOW_SOCKET_SECONDS": "1", "CHAT_SEND_BACKLOG_MAX": str(8 * 2**20),
        "CHAT_FRAME_RATE": "1000", "CHAT_FRAME_BURST": "1000",
    }
    with servers(1, redis_url=None, log_dir=tmp_path, extra_env=env, **UVICORN) as (server,):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        raw.sendall(_raw_handshake(server.port, slow_token))
        assert raw.recv(12).endswith(b"101")
        # From here on the raw socket reads nothing.
        async with _connect(server, fast_token, max_size=None) as fast:
            last = (await _join(fast))["seq"]
            body = "x" * 3900
            sent, slowest, closed = 0, 0.0, 0.0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not closed:
                for _ in range(20):
                    sent += 1
                    posted = time.monotonic()
                    await fast.send(json.dumps({"type": "send", "room": "general", "body": body, "client_id": f"c{sent}"}))
                    seen = set()
                    while not {"ack", "message"} <= seen:
                        frame = json.loads(await asyncio.wait_for(fast.recv(), 15))
                        seen.add(frame["type"])
                        if frame["type"] == "message":
                            assert frame["seq"] == last + 1, (frame["seq"], last)
                            last = frame["seq"]
                    slowest = max(slowest, time.monotonic() - posted)
                closed = (await asyncio.to_thread(_metrics, server)).get('chat_sockets_closed_total{code="1011"}', 0)
            assert closed == 1, f"the slow socket was not closed after {sent} messages"
            assert slowest < 5, f"the reading socket waited {slowest:.1f} s for its own message"
            # The reading socket still gets everything after the slow one went.
            await fast.send(json.dumps({"type": "send", "room": "general", "body": "after", "client_id": "after"}))
            assert (await _recv(fast, "message"))["seq"] == last + 1
        # The server lets go of the slow connection (it aborts it when the close frame
        # cannot leave): reading now ends in EOF or a reset, not in a wait.
        raw.settimeout(20)
        received, ended = 0, time.monotonic() + 30
        with pytest.raises((ConnectionResetError, EOFError)):
            while time.monotonic() < ended:
                chunk = raw.recv(1 << 20)
                if not chunk:
                    raise EOFError
                received += len(chunk)
        raw.close()
        assert received > 256 * 1024  # it had fallen behind by more than CHAT_SEND_BACKLOG


async def test_a_client_that_stops_answering_pings_is_dropped(tokens, tmp_path):
    """A raw TCP client that completes the handshake and then goes silent (no pong, no
    close) is dropped and its user goes offline. Pings every 2 s with a 3 s timeout instead
    of deploy/worker's 10 + 15 s, to keep the test short."""
    ann_token, bob_token = tokens
    flags = ["--ws-ping-interval", "2", "--ws-ping-timeout", "3"]
    with servers(1, redis_url=None, log_dir=tmp_path, extra_flags=flags, **UVICORN) as (server,):
        async with _connect(server, bob_token) as bob:  # answers pings (the websockets client does)
            await _join(bob)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_raw_handshake(server.port, ann_token))
            await writer.drain()
            assert b"101" in await reader.readline()
            assert (await _recv(bob, "presence", 5)) == {"type": "presence", "room": "general", "user": "ann", "online": True}
            started = asyncio.get_running_loop().time()
            gone = await _recv(bob, "presence", 20)
            assert gone == {"type": "presence", "room": "general", "user": "ann", "online": False}
            assert asyncio.get_running_loop().time() - started <= 12
            writer.close()
            # bob, who answers pings, is still connected and served.
            await bob.send(json.dumps({"type": "ping"}))
            await _recv(bob, "pong")


async def test_a_client_gone_while_its_frame_is_handled_goes_offline(tokens, tmp_path):
    """The client sends a message and resets the connection at once, so frames go to a
    socket that is gone before its consumer has seen ``websocket.disconnect``. uvicorn's
    own send raises ClientDisconnected there (into the hub's fan-out, or the consumer,
    which then dies without detaching from the hub: a ghost that stays online and that the
    SIGTERM drain trips over). chat.serving.WebSocketProtocol drops the frame, as Daphne does."""
    ann_token, bob_token = tokens
    with servers(1, redis_url=None, log_dir=tmp_path, **UVICORN) as (server,):
        async with _connect(server, bob_token) as bob:
            await _join(bob)
            for i in range(3):
                ann = await _connect(server, ann_token)
                await _join(ann)
                assert (await _recv(bob, "presence"))["online"] is True
                await ann.send(json.dumps({"type": "send", "room": "general", "body": f"bye {i}", "client_id": f"gone{i}"}))
                ann.transport.abort()  # a reset, no close frame
                assert (await _recv(bob, "message"))["message"]["body"] == f"bye {i}"
                gone = await _recv(bob, "presence", 10)
                assert gone == {"type": "presence", "room": "general", "user": "ann", "online": False}
            await asyncio.sleep(0.5)
            assert (await asyncio.to_thread(_metrics, server))["chat_sockets_open"] == 1  # bob's
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(bob.recv(), 5)
            assert closed.value.rcvd.code == 1001
        assert await asyncio.to_thread(server.process.wait, 15) == 0
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "closed 1 socket(s) with 1001" in log


CLOSE_APP = """
import sys, uvicorn
from chat.serving import WebSocketProtocol

async def app(scope, receive, send):
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "hello"})
    await send({"type": "websocket.close", "code": int(scope["path"].strip("/"))})
    while (await receive())["type"] != "websocket.disconnect":
        pass

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), ws=WebSocketProtocol, lifespan="off", log_level="warning")
"""


@pytest.mark.parametrize("code", [1001, 1011])
async def test_a_plain_asgi_close_with_1001_or_1011_reaches_the_client(code, tmp_path):
    """Daphne needs serving.close_directly() for these two codes; under uvicorn the ASGI
    ``websocket.close`` carries them (close_directly() returns False and the consumer uses it)."""
    import subprocess
    import sys

    from tests.servers import ROOT, free_port

    port = free_port()
    log = tmp_path / "close-app.log"
    process = subprocess.Popen([sys.executable, "-c", CLOSE_APP, str(port)], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
        async with websockets.connect(f"ws://127.0.0.1:{port}/{code}", proxy=None) as ws:
            assert await ws.recv() == "hello"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    finally:
        process.terminate()
        process.wait(10)
