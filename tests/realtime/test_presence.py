"""chat.realtime.presence: who is online in which room, across server processes (PROTOCOL.md 3.3, item 6)."""

from __future__ import annotations

import asyncio
import types
import uuid

import pytest
from channels.db import database_sync_to_async

from chat.realtime import presence
from tests.conftest import open_socket, redis_url, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock(monkeypatch):
    """presence's clock, moved by hand: now[0] is time.time(), now[1] time.monotonic()."""
    now = [1_000_000.0, 500.0]
    monkeypatch.setattr(presence, "time", types.SimpleNamespace(time=lambda: now[0], monotonic=lambda: now[1]))
    return now


@pytest.fixture
async def redis_stores():
    """Two RedisPresence stores (two server processes) on the tests' Redis, and a room id of
    their own; the room's keys are deleted afterwards."""
    a, b = presence.RedisPresence(redis_url()), presence.RedisPresence(redis_url())
    room_id = 10**9 + uuid.uuid4().int % 10**9
    yield a, b, room_id
    keys = [k async for k in a.redis.scan_iter(f"{presence.RedisPresence.PREFIX}{room_id}:*")]
    if keys:
        await a.redis.delete(*keys)
    await a.close()
    await b.close()


async def test_a_user_is_online_while_any_process_has_them_and_first_and_last_are_told(redis_stores):
    a, b, room = redis_stores
    assert await a.add(room, 7, "ann") is True  # first socket anywhere: announce
    assert await b.add(room, 7, "ann") is False  # online already through process a
    assert await a.online(room) == {"ann"}
    assert await a.remove(room, 7, "ann") is False  # still online through b
    assert await b.online(room) == {"ann"}
    assert await b.remove(room, 7, "ann") is True  # the last one: announce offline
    assert await a.online(room) == set()


async def test_the_entries_of_a_process_that_stops_renewing_lapse(redis_stores, clock):
    a, b, room = redis_stores
    await a.add(room, 7, "ann")
    await b.add(room, 8, "bob")
    clock[0] += presence.TTL / 2
    await b.renew([(room, 8, "bob")])  # b is alive; a died without a word
    clock[0] += presence.TTL / 2 + 1
    assert await b.online(room) == {"bob"}


async def test_the_rest_api_reads_the_same_online_users_as_the_sockets(redis_stores, settings):
    a, _, room = redis_stores
    settings.REDIS_URL = redis_url()
    await a.add(room, 7, "ann")
    assert await database_sync_to_async(presence.room_online)(room_id=room) == ["ann"]


async def test_typing_is_allowed_once_per_interval_whatever_process(redis_stores):
    a, b, room = redis_stores
    assert await a.typing_allowed(room, 7, 60.0) is True
    assert await b.typing_allowed(room, 7, 60.0) is False
    assert await b.typing_allowed(room, 8, 60.0) is True
    await a.redis.delete(f"chat:typing:{room}:7", f"chat:typing:{room}:8")


async def test_the_local_store_lapses_entries_and_throttles_typing(clock):
    store = presence.LocalPresence()
    assert await store.add(1, 7, "ann") is True
    assert await store.add(1, 7, "ann") is False
    assert await store.online(1) == {"ann"}
    clock[0] += presence.TTL + 1
    assert await store.online(1) == set()
    assert await store.typing_allowed(1, 7, 3.0) is True
    assert await store.typing_allowed(1, 7, 3.0) is False
    clock[1] += 3.0
    assert await store.typing_allowed(1, 7, 3.0) is True


async def settle():
    """Let the tracker's task apply what is queued (the local store never waits)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_tracker_announces_the_first_socket_and_the_last_not_the_ones_between():
    announced = []
    tracker = presence.PresenceTracker(presence.LocalPresence(), announce=lambda *change: announced.append(change))
    task = asyncio.get_running_loop().create_task(tracker.run())
    try:
        tracker.count(1, 7, "ann", +1)
        tracker.count(1, 7, "ann", +1)  # a second tab
        await settle()
        tracker.count(1, 7, "ann", -1)
        await settle()
        assert announced == [(1, "ann", True)]
        tracker.count(1, 7, "ann", -1)
        await settle()
        assert announced == [(1, "ann", True), (1, "ann", False)]
        # A leave and a quick re-join, queued before the task runs: applied in order, online at the end.
        tracker.count(1, 7, "ann", +1)
        tracker.count(1, 7, "ann", -1)
        tracker.count(1, 7, "ann", +1)
        await settle()
        assert announced[-1] == (1, "ann", True)
        assert await tracker.store.online(1) == {"ann"}
    finally:
        task.cancel()


# --- through the sockets --------------------------------------------------------------------


async def joined_socket(cookie, room="general"):
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected
    joined = await sock.join(room)
    assert joined["type"] == "joined"
    return sock, joined


async def test_presence_with_two_tabs_of_one_user(ann_cookie, bob_cookie, user):
    bob, joined = await joined_socket(bob_cookie)
    assert joined["online"] == ["bob"]
    ann_tab1, joined = await joined_socket(ann_cookie)
    assert joined["online"] == ["ann", "bob"]
    assert await bob.recv_any() == {"type": "presence", "room": "general", "user": "ann", "online": True}
    ann_tab2, _ = await joined_socket(await database_sync_to_async(session_cookie)(user))
    await ann_tab1.close()
    assert await bob.comm.receive_nothing(0.5)  # a second tab, then one of two tabs closing: no change
    await ann_tab2.close()
    assert await bob.recv_any() == {"type": "presence", "room": "general", "user": "ann", "online": False}
    # A user's own sockets are not told about themselves.
    assert await ann_tab1.comm.receive_nothing(0.1)


async def test_leaving_a_room_announces_the_user_offline(ann_cookie, bob_cookie):
    bob, _ = await joined_socket(bob_cookie)
    ann, _ = await joined_socket(ann_cookie)
    assert (await bob.recv_any())["online"] is True
    await ann.send(type="leave", room="general")
    assert await bob.recv_any() == {"type": "presence", "room": "general", "user": "ann", "online": False}
