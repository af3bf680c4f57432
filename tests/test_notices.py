"""Notices (PROTOCOL.md 9): the REST door, the stores, each socket's conflated delivery
(chat.realtime.notices.NoticeOutbox) and the frames a joined socket gets."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat import protocol, realtime, services
from chat.models import Membership
from chat.realtime import notices as notices_module
from chat.realtime.notices import LocalNotices, NoticeOutbox, RedisNotices
from tests.conftest import open_socket, redis_url
from tests.factories import make_room, make_user


@pytest.fixture(autouse=True)
def _fresh_store():
    """The in-memory store lives as long as the process: each test starts with none (the
    Redis one is emptied by conftest's _fresh_hub, with every chat:* key)."""
    notices_module._stores.clear()
    yield
    notices_module._stores.clear()


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def publish(user, slug, key, data):
    return api(user).post(f"/api/v1/rooms/{slug}/notices/", {"key": key, "data": data}, format="json")


def notice(key: str, value, at: float | None = None) -> protocol.Notice:
    return protocol.notice_encode(room="r", key=key, data=value, at=time.time() if at is None else at)


# --- the REST door ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_owner_publishes_and_every_reader_lists_the_latest_value_per_key():
    owner, reader = make_user(), make_user()
    room = make_room(owner=owner, slug="prices")
    first = publish(owner, "prices", "ACME", {"bid": 1})
    assert first.status_code == 200
    body = first.json()
    assert body["room"] == "prices" and body["key"] == "ACME" and body["data"] == {"bid": 1} and body["at"].endswith("Z")
    publish(owner, "prices", "ACME", {"bid": 2})
    publish(owner, "prices", "INIT", [1, "two", None])
    listed = api(reader).get(f"/api/v1/rooms/{room.slug}/notices/").json()["results"]
    assert [(n["key"], n["data"]) for n in listed] == [("ACME", {"bid": 2}), ("INIT", [1, "two", None])]
    # Notices are not messages: nothing in the history, the room's seq unmoved.
    assert api(reader).get("/api/v1/rooms/prices/messages/").json()["results"] == []
    room.refresh_from_db()
    assert room.seq == 0


@pytest.mark.django_db
def test_bad_keys_and_oversized_data_are_refused_and_nothing_is_kept():
    owner = make_user()
    make_room(owner=owner, slug="prices")
    for key in ["", "k" * 65, "new\nline", "tab\there", "nul\x00", 5, None]:
        response = publish(owner, "prices", key, 1)
        assert response.status_code == 400, key
        assert response.json()["code"] == "invalid"
    assert publish(owner, "prices", "k" * 64, 1).status_code == 200
    assert publish(owner, "prices", "ÄÖ € 株", 1).status_code == 200
    big = publish(owner, "prices", "big", "x" * 4096)
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    assert publish(owner, "prices", "fits", "x" * 4094).status_code == 200  # 4,096 bytes with its quotes
    assert publish(owner, "prices", "nul", {"a": "\x00"}).json()["code"] == "invalid"
    missing = api(owner).post("/api/v1/rooms/prices/notices/", {"key": "k"}, format="json")
    assert missing.status_code == 400 and missing.json()["code"] == "invalid"
    keys = {n["key"] for n in api(owner).get("/api/v1/rooms/prices/notices/").json()["results"]}
    assert keys == {"k" * 64, "ÄÖ € 株", "fits"}


@pytest.mark.django_db
def test_only_owners_moderators_and_staff_publish():
    owner, moderator, member, staff = make_user(), make_user(), make_user(), make_user(is_staff=True, is_superuser=True)
    room = make_room(owner=owner, slug="prices")
    Membership.objects.create(room=room, user=moderator, role=Membership.Role.MODERATOR)
    Membership.objects.create(room=room, user=member)
    denied = publish(member, "prices", "ACME", 1)
    assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    assert publish(moderator, "prices", "ACME", 2).status_code == 200
    assert publish(staff, "prices", "ACME", 3).status_code == 200
    secret = make_room(owner=owner, slug="secret", private=True)
    assert publish(member, secret.slug, "ACME", 1).status_code == 404  # private rooms do not exist for others
    assert api(member).get("/api/v1/rooms/secret/notices/").status_code == 404
    assert APIClient().post("/api/v1/rooms/prices/notices/", {"key": "k", "data": 1}, format="json").status_code == 401
    assert [n["data"] for n in api(member).get("/api/v1/rooms/prices/notices/").json()["results"]] == [3]


@pytest.mark.django_db
def test_a_bot_publishes_only_in_rooms_it_is_a_member_of():
    owner = make_user()
    room = make_room(owner=owner, slug="prices")
    bot, _ = services.bot_create(owner=owner, username="feeder")
    bot = type(bot).objects.select_related("chat_bot").get(pk=bot.pk)
    refused = publish(bot, "prices", "ACME", 1)  # a public room it has not joined
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    Membership.objects.create(room=room, user=bot)
    assert publish(bot, "prices", "ACME", 2).status_code == 200
    assert [n["data"] for n in api(owner).get("/api/v1/rooms/prices/notices/").json()["results"]] == [2]


@pytest.mark.django_db
def test_a_room_holds_at_most_chat_notice_max_keys_keys(settings):
    settings.CHAT_NOTICE_MAX_KEYS = 3
    owner = make_user()
    make_room(owner=owner, slug="prices")
    for key in "abc":
        assert publish(owner, "prices", key, 1).status_code == 200
    over = publish(owner, "prices", "d", 1)
    assert over.status_code == 400 and over.json()["code"] == "invalid" and "3" in over.json()["detail"]
    assert publish(owner, "prices", "a", 2).status_code == 200  # an existing key still updates


# --- the stores (both configurations) ---------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield LocalNotices()
        return
    import redis

    store = RedisNotices(redis_url())
    try:
        store.redis.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at the tests' REDIS_URL / CHAT_TEST_REDIS_URL")
    yield store
    store.redis.delete("chat:notices:9001", "chat:notices:9002")


def test_a_store_keeps_the_newest_value_per_key_caps_keys_and_forgets_after_its_ttl(store):
    assert store.put(9001, notice("a", 1, at=10.0), max_keys=2, ttl=60) == 1
    assert store.put(9001, notice("a", 2, at=11.0), max_keys=2, ttl=60) == 1
    assert store.put(9001, notice("a", 0, at=10.5), max_keys=2, ttl=60) == -1  # older: ignored
    assert store.put(9001, notice("b", 1, at=12.0), max_keys=2, ttl=60) == 1
    assert store.put(9001, notice("c", 1, at=13.0), max_keys=2, ttl=60) == 0  # a third key: refused
    kept = {n.key: json.loads(n.text)["data"] for n in store.all(9001)}
    assert kept == {"a": 2, "b": 1}
    assert {n.key: n.at for n in store.all(9001)} == {"a": 11.0, "b": 12.0}
    assert store.all(9002) == []
    store.put(9002, notice("x", 1), max_keys=2, ttl=1)
    assert len(store.all(9002)) == 1
    time.sleep(1.1)
    assert store.all(9002) == []


# --- one socket's outbox (conflation and the per-key rate) ------------------------------


class SlowSocket:
    """A socket as an outbox sees it: ``busy`` plays the server's unsent backlog."""

    def __init__(self):
        self.busy = False
        self.sent: list[protocol.Notice] = []

    def notice_busy(self) -> bool:
        return self.busy

    async def send_notice(self, notice: protocol.Notice) -> None:
        self.sent.append(notice)


def values(sent, key):
    return [json.loads(n.text)["data"] for n in sent if n.key == key]


async def test_a_busy_socket_keeps_one_pending_value_per_key_and_gets_the_newest_when_free():
    socket = SlowSocket()
    outbox = NoticeOutbox(socket, rate=0)  # no per-key limit: only the socket's backlog holds back
    await outbox.start([])
    socket.busy = True
    for i in range(1000):
        await outbox.offer(notice(f"k{i % 10}", i))
        assert len(outbox.pending) <= 10
    assert socket.sent == []
    socket.busy = False
    await asyncio.sleep(0.2)  # the outbox looks at a busy socket again every BUSY_RETRY
    assert sorted(values(socket.sent, k)[0] for k in [f"k{j}" for j in range(10)]) == list(range(990, 1000))
    assert len(socket.sent) == 10 and outbox.pending == {}
    outbox.close()


async def test_a_socket_that_stays_busy_after_each_frame_still_gets_every_key_in_the_end():
    class OneAtATime(SlowSocket):
        async def send_notice(self, notice):
            await super().send_notice(notice)
            self.busy = True  # the frame filled the buffer
            asyncio.get_running_loop().call_later(0.01, setattr, self, "busy", False)

    socket = OneAtATime()
    outbox = NoticeOutbox(socket, rate=0)
    await outbox.start([notice(f"k{i}", i) for i in range(5)])
    for i in range(5):
        await outbox.offer(notice(f"k{i}", 100 + i))
    for _ in range(100):
        if not outbox.pending:
            break
        await asyncio.sleep(0.02)
    assert {k: values(socket.sent, k)[-1] for k in [f"k{i}" for i in range(5)]} == {f"k{i}": 100 + i for i in range(5)}
    assert len(socket.sent) <= 10


async def test_at_most_chat_notice_rate_frames_per_key_and_second_and_the_newest_arrives():
    socket = SlowSocket()
    outbox = NoticeOutbox(socket, rate=5)
    await outbox.start([])
    for i in range(50):  # 50 updates of each of two keys in one second
        await outbox.offer(notice("a", i))
        await outbox.offer(notice("b", -i))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.25)  # one interval (0.2 s) after the last update
    for key, last in [("a", 49), ("b", -49)]:
        got = values(socket.sent, key)
        assert 4 <= len(got) <= 8, got
        assert got[-1] == last
        assert got == sorted(got, reverse=key == "b")  # never an older value after a newer one
    outbox.close()


async def test_a_paused_outbox_sends_nothing_until_started_then_the_newest_of_each_key():
    socket = SlowSocket()
    outbox = NoticeOutbox(socket, rate=20)
    await outbox.offer(notice("a", 1, at=5.0))
    assert socket.sent == []
    await outbox.start([notice("a", 0, at=4.0), notice("b", 7, at=4.0)])  # the feed's: older for "a"
    assert sorted((n.key, json.loads(n.text)["data"]) for n in socket.sent) == [("a", 1), ("b", 7)]
    outbox.close()
    await outbox.offer(notice("c", 2))  # a new key: nothing would hold it back but the close
    assert len(socket.sent) == 2 and outbox.pending == {}


# --- sockets, end to end (the hub, the consumer) ----------------------------------------


@database_sync_to_async
def _prices():
    owner = make_user()
    make_room(owner=owner, slug="prices")
    reader = make_user()
    from django.test import Client

    cookies = []
    for user in (owner, reader):
        client = Client()
        client.force_login(user)
        cookies.append(client.cookies["sessionid"].value)
    return owner, cookies


async def _joined(cookie, room="prices"):
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected
    assert (await sock.join(room))["type"] == "joined"
    return sock


@database_sync_to_async
def _publish(owner, key, data):
    response = publish(owner, "prices", key, data)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
async def test_a_joined_socket_gets_each_notice_and_a_later_one_gets_the_current_values_after_joined():
    owner, (owner_cookie, reader_cookie) = await _prices()
    first = await _joined(reader_cookie)
    published = await _publish(owner, "ACME", {"bid": 1.5})
    frame = await first.recv()
    assert frame == {"type": "notice", **published}
    await _publish(owner, "INIT", "up")
    await _publish(owner, "ACME", {"bid": 1.6})
    got = [await first.recv(), await first.recv()]
    assert [(f["key"], f["data"]) for f in got] == [("INIT", "up"), ("ACME", {"bid": 1.6})]

    later, connected, _ = await open_socket(cookie=owner_cookie)
    await later.send(type="join", room="prices", ref="j")
    assert (await later.recv())["type"] == "joined"
    after = [await later.recv(), await later.recv()]
    assert sorted((f["type"], f["key"], f["data"]) for f in after) == [
        ("notice", "ACME", {"bid": 1.6}), ("notice", "INIT", "up")
    ]
    assert await later.silent()
    # Messages still flow as before, with their seq; notices never took one.
    await later.send(type="send", room="prices", body="hi", client_id="c1")
    assert (await first.recv_until("message"))["seq"] == 1
    # A socket that left gets no more notices.
    await first.send(type="leave", room="prices")
    assert (await first.recv_until("left"))["room"] == "prices"
    await _publish(owner, "ACME", {"bid": 1.7})
    assert (await later.recv_until("notice"))["data"] == {"bid": 1.7}
    assert await first.silent()
    for sock in (first, later):
        await sock.close()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_gets_at_most_the_rate_per_key_and_the_newest_value_last(settings):
    settings.CHAT_NOTICE_RATE = 5
    owner, (_owner_cookie, reader_cookie) = await _prices()
    reader = await _joined(reader_cookie)
    for i in range(50):
        await _publish(owner, "ACME", i)
    frames = []
    while not await reader.comm.receive_nothing(0.5):
        frames.append(await reader.recv_any())
    got = [f["data"] for f in frames if f["type"] == "notice"]
    assert got[-1] == 49 and got == sorted(got)
    # 50 updates took this long; 5 per second may reach the socket, plus the first at once.
    assert len(got) < 50
    await reader.close()


@pytest.mark.django_db(transaction=True)
async def test_with_redis_notices_of_other_processes_arrive_and_joiners_read_the_shared_store(settings):
    """What another process publishes: its value in the Redis hash, its layer message to the
    room's group. This process's sockets get it, and one joining later reads the hash."""
    if not settings.REDIS_URL:
        pytest.skip("runs in the Redis configuration (REDIS_URL set)")
    from channels.layers import get_channel_layer

    owner, (_owner_cookie, reader_cookie) = await _prices()
    room_id = await database_sync_to_async(lambda: services.Room.objects.get(slug="prices").pk)()
    reader = await _joined(reader_cookie)
    elsewhere = notice("ACME", "from-elsewhere")
    realtime.notice_store().put(room_id, elsewhere, max_keys=10, ttl=60)
    await get_channel_layer().group_send(
        realtime.room_group(room_id), protocol.room_notice_message(room_id=room_id, notice=elsewhere)
    )
    assert (await reader.recv_until("notice", timeout=5))["data"] == "from-elsewhere"
    await reader.close()
    # The room's last socket has gone: its feed closed. The next join reads the store.
    realtime.notice_store().put(room_id, notice("INIT", "stored-only"), max_keys=10, ttl=60)
    again = await _joined(reader_cookie)
    got = {(await again.recv())["key"], (await again.recv())["key"]}
    assert got == {"ACME", "INIT"}
    await again.close()


# --- a real server, a socket that stops reading -----------------------------------------


def _ws_frames(data: bytes) -> list[dict]:
    """The text frames in ``data`` (a server's unmasked frames), parsed; pings (Daphne's
    carry random bytes) and any other control frame are skipped."""
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode = data[i] & 0x0F
        n, i = data[i + 1] & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        if i + n > len(data):
            break
        if opcode == 0x1:
            frames.append(json.loads(data[i:i + n]))
        i += n
    return frames


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_socket_that_stops_reading_gets_the_newest_value_of_each_key_not_a_backlog(tmp_path, settings):
    """No per-key rate here (CHAT_NOTICE_RATE=0): only the server's unsent bytes hold notices
    back. The server keeps one pending value per key for the stalled socket; once it reads
    again it gets those, the newest of each key."""
    import http.client
    import socket

    if settings.REDIS_URL:
        pytest.skip("one server's socket buffering does not depend on the layer: runs in the SQLite configuration")

    from tests.factories import make_token
    from tests.servers import servers

    owner = make_user()
    make_room(owner=owner, slug="prices")
    token = make_token(owner)
    keys, filler = 4, "x" * 3900
    with servers(1, redis_url=None, log_dir=tmp_path, extra_env={"CHAT_NOTICE_RATE": "0"}) as (server,):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        raw.sendall(
            (
                "GET /ws/chat/prices/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Token {token}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1)
        assert b" 101 " in head
        time.sleep(0.5)  # joined (the room has no notices yet); from here on the socket reads nothing
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        # One connection per key, used from one thread per key: a round's keys are published
        # at once (each key's values still in order), so the buffers fill well within the
        # stalled socket's ping timeout, even on a loaded machine.
        conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(keys)]

        def call(conn, method, path, body=None):
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            assert response.status == 200
            return response.read()

        def publish(k, i):
            call(conns[k], "POST", "/api/v1/rooms/prices/notices/", json.dumps({"key": f"k{k}", "data": {"i": i, "pad": filler}}))

        # The kernel's buffers take the first megabytes; publish until the server holds values
        # back (its conflated counter moves), then ten more rounds.
        rounds, extra = 0, None
        with ThreadPoolExecutor(keys) as pool:
            while rounds < 1500 and (extra is None or extra > 0):
                list(pool.map(publish, range(keys), [rounds] * keys))
                rounds += 1
                if extra is not None:
                    extra -= 1
                elif rounds % 10 == 0 and b"\nchat_notices_conflated_total 0.0" not in call(conns[0], "GET", "/metrics"):
                    extra = 10
        assert extra == 0, "the server never held a notice back"
        for conn in conns:
            conn.close()
        raw.settimeout(2)
        data = b""
        while True:
            try:
                chunk = raw.recv(1 << 16)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        raw.close()
    notices = [f for f in _ws_frames(data) if f["type"] == "notice"]
    last = {}
    for frame in notices:
        assert frame["data"]["i"] >= last.get(frame["key"], -1)  # never an older value after a newer one
        last[frame["key"]] = frame["data"]["i"]
    assert last == {f"k{k}": rounds - 1 for k in range(keys)}
    assert len(notices) < keys * rounds, "every update was sent: no conflation"
