"""chat.realtime.feed: one room's events in seq order, once each, gaps filled from the database."""

from __future__ import annotations

import asyncio

import pytest

from chat import metrics, selectors, services
from chat.db import db_call
from chat.protocol import RoomEventFrame
from chat.realtime import RoomFeed, Subscription
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    """Records what a subscription sends it."""

    def __init__(self, *, broken: bool = False):
        self.seqs: list[int] = []
        self.texts: list[str] = []
        self.failed = False
        self.broken = broken

    async def send_event(self, frame: RoomEventFrame) -> None:
        if self.broken:
            raise ConnectionError("gone")
        self.seqs.append(frame.seq)
        self.texts.append(frame.text)

    async def fail(self) -> None:
        self.failed = True


def _room_with_posts(n: int) -> int:
    ann = make_user()
    room = make_room(owner=ann)
    for i in range(n):
        services.message_post(room=room, author=ann, body=f"post {i + 1}", client_id=f"c{i}")
    return room.pk


async def room_frames(n: int) -> tuple[int, list[RoomEventFrame]]:
    """A room with ``n`` stored posts, and their frames as the database gives them."""
    room_id = await db_call(_room_with_posts)(n)
    return room_id, await db_call(selectors.event_frames)(room_id=room_id, after=0, upto=n)


class Feed:
    """A started RoomFeed with one live subscription, whose fills come back through a queue."""

    def __init__(self, room_id: int, *, seq: int = 0, fill_delay: float = 60.0):
        self.refills: asyncio.Queue[list[RoomEventFrame]] = asyncio.Queue()
        self.dropped: list[Subscription] = []
        self.feed = RoomFeed(room_id, "room", fill_delay=fill_delay, refill=self.refills.put_nowait, drop=self.dropped.append)
        self.feed.start(seq)
        self.socket = Socket()
        self.sub = Subscription(self.socket, room_id)
        self.feed.subs.add(self.sub)

    async def go_live(self, last: int = 0) -> None:
        await self.sub.start(last=last)

    async def refill(self) -> None:
        """Apply the next fill the feed read from the database (as its owner does)."""
        await self.feed.accept(await asyncio.wait_for(self.refills.get(), 5))


async def test_events_arriving_out_of_order_are_delivered_in_seq_order():
    room_id, (f1, f2, f3, f4) = await room_frames(4)
    feed = Feed(room_id)
    await feed.go_live()
    for frames in ([f3], [f2], [f4], [f1]):
        await feed.feed.accept(frames)
    assert feed.socket.seqs == [1, 2, 3, 4]
    assert feed.feed.pending == {}
    feed.feed.close()


async def test_duplicates_and_events_already_delivered_are_dropped():
    room_id, (f1, f2, f3) = await room_frames(3)
    feed = Feed(room_id)
    await feed.go_live()
    await feed.feed.accept([f1, f1])
    await feed.feed.accept([f1, f2])
    await feed.feed.accept([f2, f3, f3])
    await feed.feed.accept([f1])
    assert feed.socket.seqs == [1, 2, 3]
    feed.feed.close()


async def test_events_up_to_the_seq_the_feed_started_at_are_not_delivered():
    room_id, (f1, f2, f3) = await room_frames(3)
    feed = Feed(room_id, seq=2)
    await feed.go_live(last=2)
    await feed.feed.accept([f1, f2, f3])
    assert feed.socket.seqs == [3]


async def test_a_gap_that_does_not_close_is_filled_from_the_database():
    room_id, (f1, f2, f3, f4) = await room_frames(4)
    feed = Feed(room_id, fill_delay=0.0)
    await feed.go_live()
    await feed.feed.accept([f1, f4])  # 2 and 3 never arrive
    assert feed.socket.seqs == [1]
    await feed.refill()
    assert feed.socket.seqs == [1, 2, 3, 4]
    assert feed.socket.texts[1:3] == [f2.text, f3.text]  # as stored: the same frames


async def test_a_fill_that_finds_the_gap_closed_reads_nothing():
    room_id, (f1, f2, f3) = await room_frames(3)
    feed = Feed(room_id, fill_delay=0.0)
    await feed.go_live()
    await feed.feed.accept([f1, f3])
    fill = feed.feed.filling
    assert fill is not None
    await feed.feed.accept([f2])  # arrives before the fill has run
    await fill
    assert feed.refills.empty()
    assert feed.socket.seqs == [1, 2, 3]


async def test_a_subscription_buffers_until_started_then_catches_up_from_the_database():
    """The socket read seq 1 from the database while events 2-4 went by; 3 and 4 reached the
    buffer, 2 did not (delivered before the subscription existed): 2 is read from the database."""
    room_id, (f1, f2, f3, f4) = await room_frames(4)
    socket = Socket()
    sub = Subscription(socket, room_id)
    await sub.offer(f3)
    await sub.offer(f4)
    assert socket.seqs == []
    await sub.start(last=1)
    assert socket.seqs == [2, 3, 4]
    await sub.offer(f4)  # a late duplicate
    await sub.offer(RoomEventFrame(seq=5, text="{}"))
    assert socket.seqs == [2, 3, 4, 5]


async def test_a_gap_the_database_no_longer_holds_fails_the_socket():
    room_id, _ = await room_frames(0)
    socket = Socket()
    sub = Subscription(socket, room_id)
    await sub.offer(RoomEventFrame(seq=3, text="{}"))
    await sub.start(last=0)
    assert socket.failed and socket.seqs == []


async def test_a_socket_whose_delivery_fails_is_dropped_and_the_others_still_get_the_event():
    room_id, (f1,) = await room_frames(1)
    feed = Feed(room_id)
    await feed.go_live()
    broken = Subscription(Socket(broken=True), room_id)
    await broken.start(last=0)
    feed.feed.subs.add(broken)
    await feed.feed.accept([f1])
    assert feed.dropped == [broken]
    assert feed.socket.seqs == [1]


class FastSocket(Socket):
    """A socket that takes ready-made frames (a server's frame writer): the feed writes a run
    of events to it in one write_now() call; ``slow_after`` writes, it reports being too slow."""

    def __init__(self, *, slow_after: int | None = None, broken: bool = False):
        super().__init__(broken=broken)
        self.write_frame = object()  # not None: the server takes ready-made frames
        self.writes: list[bytes] = []
        self.slow_after = slow_after
        self.closed_slow = 0

    def write_now(self, wire: bytes) -> bool:
        if self.broken:
            raise ConnectionError("gone")
        self.writes.append(wire)
        return self.slow_after is None or len(self.writes) < self.slow_after

    async def close_slow(self) -> None:
        self.closed_slow += 1


async def test_a_run_of_events_reaches_each_fast_socket_as_one_write_in_seq_order():
    room_id, (f1, f2, f3, f4) = await room_frames(4)
    feed = Feed(room_id)
    await feed.go_live()  # a test socket: every frame through send_event
    fast = [FastSocket() for _ in range(3)]
    for socket in fast:
        sub = Subscription(socket, room_id)
        await sub.start(last=0)
        feed.feed.subs.add(sub)
    before = metrics.DELIVERIES_LIVE._value.get()
    await feed.feed.accept([f3, f1, f2])
    await feed.feed.accept([f4, f3])
    for socket in fast:
        assert socket.writes == [f1.wire + f2.wire + f3.wire, f4.wire]
        assert socket.seqs == []  # nothing went the slow way as well
    assert feed.socket.seqs == [1, 2, 3, 4]
    assert metrics.DELIVERIES_LIVE._value.get() - before == 4 * 4
    feed.feed.close()


async def test_a_fast_socket_that_is_behind_gets_each_frame_through_its_catch_up_then_runs_fast():
    room_id, (f1, f2, f3, f4) = await room_frames(4)
    feed = Feed(room_id, seq=0)
    await feed.go_live()
    late = FastSocket()
    sub = Subscription(late, room_id)
    feed.feed.subs.add(sub)  # buffering: it has not read the room's seq yet
    await feed.feed.accept([f1, f2])
    assert late.writes == [] and late.seqs == []
    await sub.start(last=1)  # it had 1: 2 comes from the buffer
    assert late.seqs == [2]
    await feed.feed.accept([f3, f4])
    assert late.writes == [f3.wire + f4.wire] and late.seqs == [2]
    assert feed.socket.seqs == [1, 2, 3, 4]


async def test_a_fast_socket_too_far_behind_is_closed_and_one_that_raises_is_dropped():
    room_id, (f1, f2) = await room_frames(2)
    feed = Feed(room_id)
    await feed.go_live()
    slow, broken = FastSocket(slow_after=2), FastSocket(broken=True)
    subs = [Subscription(slow, room_id), Subscription(broken, room_id)]
    for sub in subs:
        await sub.start(last=0)
        feed.feed.subs.add(sub)
    await feed.feed.accept([f1])
    assert slow.closed_slow == 0
    assert feed.dropped == [subs[1]]
    feed.feed.subs.discard(subs[1])  # as the hub's unsubscribe does
    await feed.feed.accept([f2])
    assert slow.writes == [f1.wire, f2.wire] and slow.closed_slow == 1
    assert feed.socket.seqs == [1, 2]
