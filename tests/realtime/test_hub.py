"""chat.realtime.hub and publish: the process's hub delivers what services publish after commit
to every socket concerned, in order, once; user events to every socket of the user."""

from __future__ import annotations

import asyncio
import json

import pytest

from chat import protocol, realtime, services
from chat.db import db_call
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    """A connected socket as the hub sees it (realtime.Socket), recording what it is sent."""

    def __init__(self, user_id: int, username: str):
        self.user_id = user_id
        self.username = username
        self.frames: asyncio.Queue[dict] = asyncio.Queue()
        self.events: asyncio.Queue[protocol.UserEvent] = asyncio.Queue()
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        self.frames.put_nowait(json.loads(text))

    async def send_event(self, frame: protocol.RoomEventFrame) -> None:
        self.frames.put_nowait(json.loads(frame.text))

    async def user_event(self, event: protocol.UserEvent) -> None:
        self.events.put_nowait(event)

    async def fail(self) -> None:
        await self.close(protocol.CLOSE_INTERNAL_ERROR)

    async def close(self, code: int) -> None:
        self.closed = code

    async def next(self, kind: str) -> dict:
        """The next frame of type ``kind`` (others, e.g. presence, are skipped)."""
        while True:
            frame = await asyncio.wait_for(self.frames.get(), 3)
            if frame["type"] == kind:
                return frame

    def nothing_more(self, kind: str) -> bool:
        """True if no frame of type ``kind`` is waiting."""
        return not any(f["type"] == kind for f in self.drain())

    def drain(self) -> list[dict]:
        frames = []
        while not self.frames.empty():
            frames.append(self.frames.get_nowait())
        return frames


def _setup():
    """Two users and ann's public room (the hub delivers to whatever the consumer subscribed:
    who may join is the consumer's and the rules' question, not the hub's)."""
    ann, bob = make_user("ann"), make_user("bob")
    return ann, bob, make_room(owner=ann, slug="lobby")


@pytest.fixture
async def lobby():
    return await db_call(_setup)()


async def joined(hub, socket, room) -> realtime.Subscription:
    await hub.user_attach(socket)
    sub = await hub.subscribe(socket, room.pk, room.slug)
    await sub.start(last=room.seq)
    return sub


def post(room, author, body):
    return db_call(services.message_post)(room=room, author=author, body=body, client_id=body)


async def test_posts_committed_in_one_room_reach_each_of_its_sockets_once_in_order(lobby):
    ann, bob, room = lobby
    hub = await realtime.ahub()
    ann_socket, bob_socket = Socket(ann.pk, "ann"), Socket(bob.pk, "bob")
    await joined(hub, ann_socket, room)
    await joined(hub, bob_socket, room)
    for body in ("one", "two", "three"):
        await post(room, ann, body)
    for socket in (ann_socket, bob_socket):
        got = [await socket.next("message") for _ in range(3)]
        assert [(f["seq"], f["message"]["body"]) for f in got] == [(1, "one"), (2, "two"), (3, "three")]
        await asyncio.sleep(0.05)
        assert socket.nothing_more("message")


async def test_a_socket_that_left_gets_nothing_more(lobby):
    ann, bob, room = lobby
    hub = await realtime.ahub()
    ann_socket, bob_socket = Socket(ann.pk, "ann"), Socket(bob.pk, "bob")
    await joined(hub, ann_socket, room)
    bob_sub = await joined(hub, bob_socket, room)
    hub.unsubscribe(bob_sub)
    await post(room, ann, "after bob left")
    assert (await ann_socket.next("message"))["message"]["body"] == "after bob left"
    assert bob_socket.nothing_more("message")


async def test_the_first_join_of_a_user_is_announced_to_the_others_not_to_the_user(lobby):
    ann, bob, room = lobby
    hub = await realtime.ahub()
    ann_socket, bob_socket = Socket(ann.pk, "ann"), Socket(bob.pk, "bob")
    await joined(hub, ann_socket, room)
    await joined(hub, bob_socket, room)
    assert await ann_socket.next("presence") == {"type": "presence", "room": "lobby", "user": "bob", "online": True}
    assert await hub.online(room.pk, including="ann") == ["ann", "bob"]
    await asyncio.sleep(0.05)
    assert not any(f["type"] == "presence" and f["user"] == "bob" for f in bob_socket.drain())


async def test_a_user_event_reaches_every_socket_of_that_user_only(lobby):
    ann, bob, room = lobby
    hub = await realtime.ahub()
    tabs = [Socket(ann.pk, "ann"), Socket(ann.pk, "ann")]
    bob_socket = Socket(bob.pk, "bob")
    for socket in (*tabs, bob_socket):
        await hub.user_attach(socket)
    event = protocol.kick_event(room_id=room.pk, reason="You were removed.")
    realtime.user_event_publish(user_id=ann.pk, event=event)
    for tab in tabs:
        assert await asyncio.wait_for(tab.events.get(), 3) == event
    await asyncio.sleep(0.05)
    assert bob_socket.events.empty()


async def test_typing_goes_to_the_rooms_other_sockets(lobby):
    ann, bob, room = lobby
    hub = await realtime.ahub()
    ann_socket, bob_socket = Socket(ann.pk, "ann"), Socket(bob.pk, "bob")
    await joined(hub, ann_socket, room)
    await joined(hub, bob_socket, room)
    text = protocol.encode(protocol.typing_frame(room="lobby", user="ann"))
    realtime.room_ephemeral_publish(room_id=room.pk, text=text, except_user=ann.pk)
    assert await bob_socket.next("typing") == {"type": "typing", "room": "lobby", "user": "ann"}
    await asyncio.sleep(0.05)
    assert ann_socket.nothing_more("typing")


async def test_shutdown_closes_every_socket_of_the_process(lobby):
    ann, bob, room = lobby
    hub = await realtime.ahub()
    sockets = [Socket(ann.pk, "ann"), Socket(bob.pk, "bob")]
    for socket in sockets:
        await hub.user_attach(socket)
    assert realtime.current_hub() is hub
    assert await hub.close_all(protocol.CLOSE_GOING_AWAY) == 2
    assert [s.closed for s in sockets] == [1001, 1001]


async def test_users_attaching_at_once_each_get_their_own_events_and_a_room_its_posts_in_order(lobby, caplog):
    # A reconnect storm's attaches: the hub's layer writes of different groups run at once,
    # each group's in order (a user group's add before that user's event; a room's posts).
    ann, bob, room = lobby
    hub = await realtime.ahub()
    sockets = [Socket(10_000 + i, f"u{i}") for i in range(150)]
    listener = Socket(bob.pk, "bob")
    await asyncio.gather(*(hub.user_attach(s) for s in sockets), joined(hub, listener, room))
    events = {s.user_id: protocol.kick_event(room_id=room.pk, reason=f"for {s.username}") for s in sockets}
    for user_id, event in events.items():
        realtime.user_event_publish(user_id=user_id, event=event)
    for i in range(5):
        await post(room, ann, f"m{i}")
    for s in sockets:
        assert await asyncio.wait_for(s.events.get(), 5) == events[s.user_id]
    assert [(await listener.next("message"))["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
    assert "timed out" not in caplog.text
