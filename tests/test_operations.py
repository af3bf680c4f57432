"""Operations: /metrics, /healthz's timeout, the per-user socket limit, slow sockets, and
Daphne's SIGTERM drain (chat/metrics.py, chat/serving/, deploy/)."""

import asyncio
import json
import socket
import time

import pytest
import websockets
from django.test import Client
from prometheus_client import REGISTRY

from chat import serving, views
from tests.conftest import open_socket
from tests.factories import make_token, make_user
from tests.servers import servers, sigterm_drain


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- /metrics -------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_answer_a_local_scraper_in_prometheus_format():
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in ("chat_sockets_open", "chat_messages_stored_total", "chat_broadcast_seconds_bucket", "process_resident_memory_bytes"):
        assert name in text


@pytest.mark.django_db
def test_metrics_refuse_requests_through_the_proxy_unless_staff():
    through_proxy = {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert Client().get("/metrics", **through_proxy).status_code == 403
    assert Client().get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    member = Client()
    member.force_login(make_user("ann"))
    assert member.get("/metrics", **through_proxy).status_code == 403
    staff = Client()
    staff.force_login(make_user("root", is_staff=True))
    assert staff.get("/metrics", **through_proxy).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_socket_traffic_is_counted(ann_cookie):
    before = {
        "stored": sample("chat_messages_stored_total"),
        "joins": sample("chat_joins_total", kind="live"),
        "live": sample("chat_deliveries_total", path="live"),
        "bad_json": sample("chat_errors_total", code="bad_json"),
        "store": sample("chat_store_seconds_count"),
        "open": sample("chat_sockets_open"),
    }
    sock, connected, _ = await open_socket(cookie=ann_cookie)
    assert connected
    await sock.join("general")
    assert sample("chat_sockets_open") == before["open"] + 1
    await sock.send(type="send", room="general", body="counted", client_id="c1")
    seen = set()
    while not {"ack", "message"} <= seen:
        seen.add((await sock.recv())["type"])
    await sock.send_raw("not json")
    assert (await sock.recv_until("error"))["code"] == "bad_json"
    assert sample("chat_messages_stored_total") == before["stored"] + 1
    assert sample("chat_joins_total", kind="live") == before["joins"] + 1
    assert sample("chat_deliveries_total", path="live") == before["live"] + 1
    assert sample("chat_errors_total", code="bad_json") == before["bad_json"] + 1
    assert sample("chat_store_seconds_count") == before["store"] + 1
    await sock.close()
    assert sample("chat_sockets_open") == before["open"]


# --- /healthz -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_503_within_its_timeout_when_a_check_hangs(monkeypatch):
    from django.test import RequestFactory

    async def hang():
        await asyncio.sleep(30)

    monkeypatch.setattr(views, "_layer_check", hang)
    started = time.monotonic()
    response = await views.healthz(RequestFactory().get("/healthz"))
    assert time.monotonic() - started < views.HEALTH_TIMEOUT + 1
    assert response.status_code == 503
    assert json.loads(response.content) == {"db": "ok", "channel_layer": "error: timeout"}


@pytest.mark.django_db(transaction=True)
async def test_healthz_is_ok_when_both_answer():
    from django.test import RequestFactory

    response = await views.healthz(RequestFactory().get("/healthz"))
    assert (response.status_code, json.loads(response.content)) == (200, {"db": "ok", "channel_layer": "ok"})


# --- connection limit -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_one_socket_over_the_per_user_limit_is_closed_with_4429(settings, ann_cookie):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    first, _, _ = await open_socket(cookie=ann_cookie)
    second, _, _ = await open_socket(cookie=ann_cookie)
    assert (await first.join("general"))["type"] == "joined"
    third, connected, _ = await open_socket(cookie=ann_cookie)
    assert connected
    error = await third.recv()
    assert error["type"] == "error" and error["code"] == "rate_limited"
    assert (await third.comm.receive_output(2)) == {"type": "websocket.close", "code": 4429}
    # The first two are unaffected; closing one makes room again.
    await first.send(type="ping")
    assert (await first.recv())["type"] == "pong"
    await second.close()
    fourth, _, _ = await open_socket(cookie=ann_cookie)
    assert (await fourth.join("general"))["type"] == "joined"
    await first.close()
    await fourth.close()


# --- close codes and slow sockets (units) ---------------------------------------------


class FakeProtocol:
    STATE_OPEN = 3

    def __init__(self):
        self.state = self.STATE_OPEN
        self.frames = []

    def sendCloseFrame(self, code=None, isReply=False):  # noqa: N802 (Autobahn's name)
        self.frames.append(code)
        self.state = 4


def _daphne_send(protocol):
    import functools

    async def handle_reply(protocol, message):
        raise AssertionError("went through ASGI")

    return functools.partial(handle_reply, protocol)


def test_1001_and_1011_bypass_autobahns_close_code_check_but_4401_does_not():
    protocol = FakeProtocol()
    send = _daphne_send(protocol)
    assert serving.close_directly(send, 4401) is False
    assert serving.close_directly(send, 1001) is True
    assert protocol.frames == [1001]
    assert serving.close_directly(send, 1011) is True  # already closing: no second frame
    assert protocol.frames == [1001]
    assert serving.close_directly(lambda message: None, 1011) is False  # not Daphne


def test_a_socket_is_too_slow_after_staying_behind_or_at_the_hard_cap(settings, monkeypatch):
    settings.CHAT_SEND_BACKLOG, settings.CHAT_SEND_BACKLOG_MAX, settings.CHAT_SLOW_SOCKET_SECONDS = 100, 1000, 5
    now = [0.0]
    monkeypatch.setattr(serving.time, "monotonic", lambda: now[0])
    backlog = [0]
    check = serving.SlowSocketCheck(lambda: backlog[0])
    backlog[0] = 500
    assert not check.too_slow()
    now[0] = 4.9
    assert not check.too_slow()
    backlog[0] = 50  # it caught up: the clock starts again
    assert not check.too_slow()
    backlog[0], now[0] = 500, 6.0
    assert not check.too_slow()
    now[0] = 11.0
    assert check.too_slow()
    backlog[0] = 1000
    assert serving.SlowSocketCheck(lambda: backlog[0]).too_slow()


# --- real Daphne processes ------------------------------------------------------------


@pytest.fixture
def tokens(general) -> list[str]:
    return [make_token(make_user(name)) for name in ("ann", "bob")]


async def _recv(ws, type_, timeout=5):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == type_:
            return frame


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
async def test_sigterm_closes_every_socket_with_1001_stops_listening_and_exits(tokens, tmp_path):
    with servers(1, redis_url=None, log_dir=tmp_path) as (server,):
        sockets = [
            await websockets.connect(f"{server.ws}/ws/chat/general/", additional_headers={"Authorization": f"Token {t}"}, proxy=None)
            for t in tokens
        ]
        for ws in sockets:
            await _recv(ws, "joined")
        codes, refused, returncode, took = await sigterm_drain(server, sockets)
        assert codes == [1001] * len(sockets)
        # The listener went first: a new connection is refused, so a proxy tries another worker.
        assert refused
        assert returncode == 0
        assert took < 10


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
async def test_a_socket_that_stops_reading_is_closed_and_memory_stays_bounded(tokens, tmp_path):
    """The slow socket's backlog passes CHAT_SEND_BACKLOG for CHAT_SLOW_SOCKET_SECONDS and it is
    closed; a socket that reads keeps up meanwhile."""
    from tests.faults.cluster import rss_bytes

    slow_token, fast_token = tokens
    env = {
        "CHAT_SEND_BACKLOG": str(256 * 1024), "CHAT_SLOW_SOCKET_SECONDS": "1", "CHAT_SEND_BACKLOG_MAX": str(8 * 2**20),
        "CHAT_FRAME_RATE": "1000", "CHAT_FRAME_BURST": "1000",
    }
    with servers(1, redis_url=None, log_dir=tmp_path, extra_env=env) as (server,):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        raw.sendall(
            (
                "GET /ws/chat/general/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Token {slow_token}\r\n\r\n"
            ).encode()
        )
        assert raw.recv(12).endswith(b"101")
        # From here on the raw socket reads nothing.
        async with websockets.connect(
            f"{server.ws}/ws/chat/general/", additional_headers={"Authorization": f"Token {fast_token}"}, proxy=None,
            max_size=None,
        ) as fast:
            await _recv(fast, "joined")
            rss_before = rss_bytes(server.process.pid)
            body = "x" * 3900
            seq = 0
            deadline = time.monotonic() + 60
            closed, slowest = 0.0, 0.0
            while time.monotonic() < deadline:
                for _ in range(20):
                    seq += 1
                    await fast.send(json.dumps({"type": "send", "room": "general", "body": body, "client_id": f"c{seq}"}))
                    seen = set()  # the reading socket keeps up: its own message and the ack
                    posted = time.monotonic()
                    while not {"ack", "message"} <= seen:
                        seen.add(json.loads(await asyncio.wait_for(fast.recv(), 15))["type"])
                    slowest = max(slowest, time.monotonic() - posted)
                closed = json.loads(await asyncio.to_thread(_metrics, server.http)).get('chat_sockets_closed_total{code="1011"}', 0)
                if closed:
                    break
            assert closed == 1, "the slow socket was not closed"
            assert slowest < 5, f"the reading socket waited {slowest:.1f} s for its own message"
            growth = rss_bytes(server.process.pid) - rss_before
            assert growth < 64 * 2**20, f"memory grew by {growth / 2**20:.0f} MiB"
        raw.close()


def _metrics(base: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return json.dumps({n: float(v) for n, _, v in (line.rpartition(" ") for line in lines if line and not line.startswith("#"))})


# --- load shedding (CHAT_MAX_CONNECTIONS) ---------------------------------------------


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
async def test_a_socket_over_max_connections_is_closed_with_1013_and_counted(tokens, tmp_path):
    """Over the process's limit a socket is accepted and closed with 1013 "try again later"
    (through Daphne, which refuses that code over ASGI); one closing makes room again."""
    headers = [{"Authorization": f"Token {t}"} for t in tokens]
    with servers(1, redis_url=None, log_dir=tmp_path, extra_env={"CHAT_MAX_CONNECTIONS": "2"}) as (server,):
        url = f"{server.ws}/ws/chat/general/"
        first = await websockets.connect(url, additional_headers=headers[0], proxy=None)
        second = await websockets.connect(url, additional_headers=headers[1], proxy=None)
        await _recv(first, "joined")
        await _recv(second, "joined")
        async with websockets.connect(url, additional_headers=headers[0], proxy=None) as third:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(third.recv(), 5)
        assert closed.value.rcvd.code == 1013
        metrics = server.metrics()
        assert metrics['chat_sockets_refused_total{reason="max_connections"}'] == 1
        assert metrics["chat_sockets_open"] == 2
        # The two open sockets are unaffected; closing one makes room.
        await first.send(json.dumps({"type": "ping"}))
        assert (await _recv(first, "pong"))["type"] == "pong"
        await second.close()
        await asyncio.sleep(0.2)
        async with websockets.connect(url, additional_headers=headers[1], proxy=None) as fourth:
            assert (await _recv(fourth, "joined"))["room"] == "general"
        await first.close()
