"""One room's ordered, gap-free stream of events in this process, and each socket's place in it
(PROTOCOL.md 3.3, item 3).

- RoomFeed takes a room's events in any order and from any source (this process's own
  commits, the channel layer, the database) and hands each one on exactly once, in seq
  order: it holds early arrivals, drops what it has delivered already, and reads a gap from
  the database if the missing event has not arrived within its fill delay.
- Subscription is one socket's place in one feed. It buffers until the socket has read the
  room's seq from the database, then sends seq ``last + 1`` next; a frame beyond that
  (the socket was behind) is preceded by the missing ones, read from the database.

Both run on the hub's event loop; neither talks to the channel layer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Protocol

from .. import metrics
from ..db import db_call
from ..protocol import Notice, RoomEventFrame
from ..selectors import event_frames

log = logging.getLogger(__name__)


class EventSocket(Protocol):
    """What a subscription needs of its socket (ChatConsumer).

    A socket may also offer the feed's fast path: ``write_frame`` not None (the server takes
    ready-made frames) and ``write_now(wire) -> bool``, which writes one or more whole frames
    at once without awaiting and returns False if the socket must now be closed as too slow
    (``close_slow()``). Sockets without them (tests) get every frame through send_event().
    """

    async def send_event(self, frame: RoomEventFrame) -> None: ...

    async def fail(self) -> None: ...


class Subscription:
    """One socket's place in one room's stream.

    Until start() the subscription buffers; afterwards it sends frame ``last + 1`` next,
    skips anything at or below ``last`` and fills any gap from the database.
    """

    __slots__ = ("socket", "room_id", "last", "buffer", "_catching_up", "outbox", "fast")

    def __init__(self, socket: EventSocket, room_id: int):
        self.socket = socket
        self.room_id = room_id
        # The feed may write to the socket itself (see EventSocket); known once it is accepted.
        self.fast = getattr(socket, "write_frame", None) is not None and hasattr(socket, "write_now")
        self.outbox = None  # the socket's notices of the room (notices.NoticeOutbox), set by the hub
        self.last = 0
        self.buffer: list[RoomEventFrame] | None = []
        self._catching_up: asyncio.Task | None = None

    async def offer(self, frame: RoomEventFrame) -> bool:
        """Take a frame from the feed (called in seq order); True if it went to the socket now."""
        if self.buffer is not None:
            self.buffer.append(frame)
        elif frame.seq == self.last + 1:
            self.last = frame.seq
            await self.socket.send_event(frame)
            metrics.DELIVERIES_LIVE.inc()
            return True
        elif frame.seq > self.last:
            self.buffer = [frame]
            # Held here: the event loop keeps only weak references to tasks.
            self._catching_up = asyncio.get_running_loop().create_task(self.catch_up())
        return False

    async def start(self, *, last: int) -> None:
        """Go live after ``last`` (the seq the socket has), delivering what arrived meanwhile."""
        self.last = last
        await self.catch_up()

    async def catch_up(self) -> None:
        """Deliver the buffer in order, filling gaps from the database, then go live.

        A gap that the database no longer holds fails the socket (it reconnects and resumes).
        """
        try:
            while self.buffer:
                frames, self.buffer = sorted(self.buffer, key=lambda f: f.seq), []
                for frame in frames:
                    if frame.seq <= self.last:
                        continue
                    if frame.seq > self.last + 1:
                        await self._fill_upto(frame.seq - 1)
                    self.last = frame.seq
                    await self.socket.send_event(frame)
                    metrics.DELIVERIES_LIVE.inc()
                    if frame.at is not None:
                        metrics.DELIVERY_SECONDS.observe(time.time() - frame.at)
            self.buffer = None
        except Exception:
            log.exception("catch-up failed for room %s", self.room_id)
            await self.socket.fail()

    async def _fill_upto(self, upto: int) -> None:
        missing = await db_call(event_frames)(room_id=self.room_id, after=self.last, upto=upto)
        if [m.seq for m in missing] != list(range(self.last + 1, upto + 1)):
            raise RuntimeError(f"events {self.last + 1}-{upto} are no longer kept")
        metrics.GAP_FILLS.labels("socket").inc()
        metrics.GAP_FILLED_EVENTS.inc(len(missing))
        for m in missing:
            await self.socket.send_event(m)
            metrics.DELIVERIES.labels("catch_up").inc()
        self.last = upto


# A room event's writes to this process's sockets are timed in groups of this many: one
# clock read and one histogram update per group, not per socket (docs/performance.md).
TIME_EVERY = 64


def _observe(frames: list[RoomEventFrame], writes: int) -> int:
    """Observe ``writes`` deliveries of each of ``frames`` made just now; return 0 (none left)."""
    now = None
    for frame in frames:
        if frame.at is not None:
            now = now or time.time()
            metrics.observe_many(metrics.DELIVERY_SECONDS, now - frame.at, writes)
    return 0


class RoomFeed:
    """The ordered, gap-free stream of one room's events in this process.

    ``refill`` receives the frames a gap fill read from the database; the owner feeds them
    back through accept() in turn with everything else, so one task applies all of them.
    ``drop`` receives a subscription whose delivery raised. ``fill_delay`` is how long an
    early arrival waits for the missing events before they are read from the database.
    """

    def __init__(
        self,
        room_id: int,
        slug: str,
        *,
        fill_delay: float,
        refill: Callable[[list[RoomEventFrame]], None],
        drop: Callable[[Subscription], None],
    ):
        self.room_id = room_id
        self.slug = slug
        self.fill_delay = fill_delay
        self.refill = refill
        self.drop = drop
        self.online: set[str] = set()  # usernames this process believes online in the room
        self.absent: set[str] = set()  # online here but missing from the last presence sweep
        self.seq: int | None = None  # last delivered; None until started
        self.subs: set[Subscription] = set()
        self.pending: dict[int, RoomEventFrame] = {}
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self.closed = False  # see close()
        self.poll_target: int | None = None  # the database's seq when the feed was last behind it
        self.notices: dict[str, Notice] = {}  # the room's latest notice per key, oldest update first
        self._filling: asyncio.Task | None = None

    async def accept(self, frames: list[RoomEventFrame]) -> None:
        """Take frames in any order; deliver every one that is next in line."""
        for frame in frames:
            if self.seq is None or frame.seq > self.seq:
                self.pending.setdefault(frame.seq, frame)
        if self.seq is None:
            return
        run = []  # the frames next in line, in seq order
        while self.seq + 1 in self.pending:
            frame = self.pending.pop(self.seq + 1)
            self.seq = frame.seq
            run.append(frame)
        if run:
            await self._deliver(run)
        if self.pending:
            self.fill(delay=self.fill_delay)

    async def _deliver(self, run: list[RoomEventFrame]) -> None:
        """Hand ``run`` (consecutive seqs) to every subscription.

        The fast path, for a live socket that has every frame before the run and takes
        ready-made frames: the run's frames joined into one write (a group commit's events
        cost each socket one write, not one each), no coroutine per socket. Any other
        subscription (buffering, behind, a test's socket) gets each frame through offer().
        """
        before, last = run[0].seq - 1, run[-1].seq
        wire = run[0].wire if len(run) == 1 else b"".join([frame.wire for frame in run])
        fast = 0  # subscriptions written on the fast path
        timed = 0  # of them, not yet observed in DELIVERY_SECONDS
        slow: list[int] | None = None  # live writes through offer(), per frame of the run
        for sub in list(self.subs):
            try:
                if sub.fast and sub.buffer is None and sub.last == before:
                    sub.last = last
                    fast += 1
                    timed += 1
                    if not sub.socket.write_now(wire):
                        await sub.socket.close_slow()
                    if timed == TIME_EVERY:
                        timed = _observe(run, timed)
                    continue
                if slow is None:
                    slow = [0] * len(run)
                for i, frame in enumerate(run):
                    slow[i] += await sub.offer(frame)
            except Exception:
                log.exception("delivery failed in room %s", self.room_id)
                self.drop(sub)
        if timed:
            _observe(run, timed)
        for frame, writes in zip(run, slow or ()):
            if writes:
                _observe([frame], writes)
        if fast:
            metrics.DELIVERIES_LIVE.inc(fast * len(run))

    def notice_accept(self, notice: Notice, *, max_keys: int) -> bool:
        """Keep ``notice`` as its key's latest value unless it or a newer one is kept; True if kept.

        At most ``max_keys`` keys: the least recently updated goes first (the store refuses
        new keys beyond that; this bounds a feed that outlives the store's expiry).
        """
        current = self.notices.get(notice.key)
        if current is not None:
            if current.at >= notice.at:  # older, or the same one again (this hub's own, back from the layer)
                return False
            del self.notices[notice.key]  # re-inserted last: the dict stays in update order
        self.notices[notice.key] = notice
        while len(self.notices) > max_keys:
            del self.notices[next(iter(self.notices))]
        return True

    def start(self, seq: int) -> None:
        """Deliver from ``seq + 1`` on (``seq`` is the room's, read from the database)."""
        self.seq = seq
        self.pending = {s: f for s, f in self.pending.items() if s > seq}
        self.ready.set()

    @property
    def filling(self) -> asyncio.Task | None:
        """The gap fill under way, if any."""
        return self._filling

    def close(self) -> None:
        """Stop filling: the owner has let go of the feed."""
        self.closed = True
        if self._filling is not None:
            self._filling.cancel()

    def fill(self, *, delay: float, upto: int | None = None) -> None:
        """Read missing events (up to ``upto``, or to the highest pending) from the database
        after ``delay`` unless they arrive first; one fill at a time."""
        if self._filling is None:
            self._filling = asyncio.get_running_loop().create_task(self._fill(delay, upto))

    async def _fill(self, delay: float, upto: int | None) -> None:
        try:
            await asyncio.sleep(delay)
            target = max([*self.pending, upto or 0])
            if self.seq is None or target <= self.seq or self.closed:
                return
            frames = await db_call(event_frames)(room_id=self.room_id, after=self.seq, upto=target)
            metrics.GAP_FILLS.labels("order" if upto is None else "poll").inc()
            metrics.GAP_FILLED_EVENTS.inc(len(frames))
            self.refill(frames)
        except Exception:
            log.exception("gap fill failed in room %s", self.room_id)
        finally:
            self._filling = None
