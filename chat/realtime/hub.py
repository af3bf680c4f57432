"""The per-process delivery engine: one Hub per server process (per event loop).

The hub owns the process's one channel-layer channel and joins it to the group of every
room (and user) that has a socket in this process, so the layer carries one message per
process and room, not one per recipient. It fans each room event out to the local sockets
as one pre-encoded frame, in seq order and without gaps:

- each room with a socket here has a RoomFeed (feed.py): seq n+1 only after n, early
  arrivals held, a gap filled from the database after FILL_DELAY (FILL_DELAY_LAYER with
  several processes);
- the channel layer is at-most-once, so a poll compares every feed with the database's
  room seq every POLL_INTERVAL and fills what never arrived (a lost broadcast, a Redis
  outage) from the database;
- each socket's Subscription starts buffering before the socket reads the room's seq from
  the database, so nothing committed after that read can slip past it;
- presence: first joins and last leaves of a user in a room go to the presence store
  (presence.py) and, as ``presence`` frames, to the room's other sockets in every process.

One task (_dispatch) applies everything that reaches the hub, from this process or the
layer, in arrival order; one task (_publish) makes every layer write in queue order.
Writers outside the loop go through publish.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from .. import metrics, protocol
from ..db import db_call
from ..protocol import Notice, RoomEventFrame, UserEvent
from ..selectors import room_seq, room_seqs
from .feed import RoomFeed, Subscription
from .notices import NoticeOutbox, notice_store
from .presence import ANYWHERE, HEARTBEAT, PresenceTracker, presence_store

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5  # seconds between database checks of every feed's seq
# How long an out-of-order event waits for the missing one before it is read from the
# database. With one process a gap closes within microseconds. With several, a process
# delivers its own events at once but the others' come through Redis, later under load;
# reading every such gap from the database would load the one database thread with reads
# that the layer answers anyway (bench/scaleout.py saw a third of the events filled at
# 0.1 s). Either way a lost event is filled within PROTOCOL.md's 1 s.
FILL_DELAY = 0.1
FILL_DELAY_LAYER = 0.5
LAYER_TIMEOUT = 2.0  # group_add / group_discard give up after this
LAYER_WRITES_AT_ONCE = 32  # queued layer writes taken at once (redis-py pools hold 100 connections)
REFRESH_HEALTHY = 60.0  # re-join all groups this often (channels-redis groups expire)
REFRESH_UNHEALTHY = 3.0  # ... and this often after a layer error (Redis restarted empty)
WATCH_INTERVAL = 2.0  # seconds between checks that no Redis shard lost this hub's groups

# At most this many room events are applied together (see _dispatch): bounds one write.
MERGE_MAX = 256
TYPING_EVERY = 3.0  # seconds: at most one typing frame per user and room


def room_group(room_id: int) -> str:
    """The channel-layer group of a room's events (channels allows [a-zA-Z0-9_.-], < 100)."""
    return f"chat.room.{room_id}"


def user_group(user_id: int) -> str:
    """The channel-layer group of a user's events."""
    return f"chat.user.{user_id}"


# Every hub's channel is in this group: what concerns many users at once (the notifications
# of one message) is one layer message per process, sorted out by each hub's per-user index.
HUBS_GROUP = "chat.hubs"


class Socket(Protocol):
    """What the hub needs of a connected socket (ChatConsumer)."""

    user_id: int
    username: str

    async def send_text(self, text: str) -> None: ...

    async def send_event(self, frame: RoomEventFrame) -> None: ...

    async def user_event(self, event: UserEvent) -> None: ...

    async def fail(self) -> None: ...

    async def close(self, code: int) -> None: ...

    def notice_busy(self) -> bool: ...

    async def send_notice(self, notice: Notice) -> None: ...


class Hub:
    """One per process (per event loop): the process's channel, feeds and user sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.layer = get_channel_layer()
        self.local_only = isinstance(self.layer, InMemoryChannelLayer)
        self.channel: str | None = None
        self.feeds: dict[int, RoomFeed] = {}
        self.users: dict[int, set[Socket]] = {}
        self.sockets_open = 0  # sockets attached (user_attach), for CHAT_MAX_CONNECTIONS
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.layer_ok = True
        self.layer_failed = asyncio.Event()  # set by a layer failure: the refresh runs soon
        self.layer_errors = 0  # channel-layer failures since start
        self.presence = PresenceTracker(presence_store(), announce=self._announce)
        self.online_reads: dict[int, asyncio.Task] = {}  # room -> the presence read under way
        self.started = loop.create_task(self._start())
        self.tasks: list[asyncio.Task] = []

    def stop(self) -> None:
        """Cancel the hub's tasks (tests, shutdown)."""
        for task in [self.started, *self.tasks]:
            task.cancel()

    def alive(self) -> bool:
        return not self.loop.is_closed() and self.loop.is_running()

    async def _start(self) -> None:
        self.channel = await self.layer.new_channel(prefix="chat-hub")
        for run in (self._receive, self._dispatch, self._publish, self._poll, self._refresh, self.presence.run, self._sweep):
            self.tasks.append(self.loop.create_task(run()))
        if not self.local_only:
            self.outbox.put_nowait(("add", HUBS_GROUP, None, None))
            self.tasks.append(self.loop.create_task(self._watch_shards()))

    # -- writers (any thread) --

    def publish(self, group: str, message: protocol.LayerMessage, local: tuple | None) -> None:
        """Queue ``message`` for the layer and deliver ``local`` (an inbox item) here at once.

        The in-memory layer reaches no other process, so what is delivered here at once
        is not sent through it as well (it would come back to this hub as a duplicate).
        """
        if local is not None:
            self.inbox.put_nowait(local)
            if self.local_only:
                return
        self.outbox.put_nowait(("send", group, message, None))

    # -- sockets (event loop) --

    async def subscribe(self, socket: Socket, room_id: int, slug: str) -> Subscription:
        """Return a buffering subscription of ``socket`` to the room's feed.

        The feed has joined the room's group and knows its seq before this returns, so a
        database read made afterwards covers everything the feed has not delivered yet.
        """

        feed = self.feeds.get(room_id)
        if feed is None:
            feed = self.feeds[room_id] = RoomFeed(
                room_id,
                slug,
                fill_delay=FILL_DELAY if self.local_only else FILL_DELAY_LAYER,
                refill=lambda frames: self.inbox.put_nowait(("fill", room_id, frames)),
                drop=self.unsubscribe,
            )
            try:
                await self._group("add", room_group(room_id))
                feed.online = await self._store_online(room_id)
                for notice in await self._store_notices(room_id):
                    feed.notice_accept(notice, max_keys=settings.CHAT_NOTICE_MAX_KEYS)
                feed.start(await db_call(room_seq)(room_id=room_id))
            except BaseException as exc:
                feed.error = exc
                feed.ready.set()
                self._feed_close(feed)
                raise
        await feed.ready.wait()
        if feed.error is not None:
            raise feed.error
        sub = Subscription(socket, room_id)
        sub.outbox = NoticeOutbox(socket, rate=settings.CHAT_NOTICE_RATE)
        feed.subs.add(sub)
        self.presence.count(room_id, socket.user_id, socket.username, +1)
        return sub

    async def close_all(self, code: int) -> int:
        """Close every socket of this process with ``code`` (shutdown); return how many."""
        sockets = [socket for group in self.users.values() for socket in group]
        for socket in sockets:
            await socket.close(code)
        return len(sockets)

    async def online(self, room_id: int, *, including: str) -> list[str]:
        """Usernames online in the room in any process (``including`` is joining now)."""
        return sorted(await self._store_online(room_id) | {including})

    async def typing_allowed(self, user_id: int, room_id: int) -> bool:
        """True at most once per TYPING_EVERY per user and room, whatever socket or process."""
        try:
            return await self.presence.store.typing_allowed(room_id, user_id, TYPING_EVERY)
        except Exception as exc:
            log.warning("typing throttle unavailable: %r", exc)
            return False

    def notices(self, room_id: int) -> list[Notice]:
        """The room's latest notice of every key, as this process knows them."""
        feed = self.feeds.get(room_id)
        return list(feed.notices.values()) if feed is not None else []

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.outbox is not None:
            sub.outbox.close()
        feed = self.feeds.get(sub.room_id)
        if feed is None or sub not in feed.subs:
            return
        feed.subs.discard(sub)
        self.presence.count(sub.room_id, sub.socket.user_id, sub.socket.username, -1)
        if not feed.subs and feed.ready.is_set():
            self._feed_close(feed)
            self.outbox.put_nowait(("discard", room_group(sub.room_id), None, None))

    def _feed_close(self, feed: RoomFeed) -> None:
        feed.close()
        if self.feeds.get(feed.room_id) is feed:
            del self.feeds[feed.room_id]

    async def user_attach(self, socket: Socket) -> None:
        sockets = self.users.setdefault(socket.user_id, set())
        sockets.add(socket)
        self.sockets_open += 1
        self.presence.count(ANYWHERE, socket.user_id, socket.username, +1)
        if len(sockets) == 1:
            await self._group("add", user_group(socket.user_id))

    def user_detach(self, socket: Socket) -> None:
        sockets = self.users.get(socket.user_id)
        if sockets is None:
            return
        if socket in sockets:
            sockets.discard(socket)
            self.sockets_open -= 1
            self.presence.count(ANYWHERE, socket.user_id, socket.username, -1)
        if not sockets:
            del self.users[socket.user_id]
            self.outbox.put_nowait(("discard", user_group(socket.user_id), None, None))

    # -- internals --

    async def _group(self, op: str, group: str) -> None:
        """Add the hub's channel to ``group`` through the ordered outbox; never raises."""
        done = self.loop.create_future()
        self.outbox.put_nowait((op, group, None, done))
        try:
            await asyncio.wait_for(asyncio.shield(done), LAYER_TIMEOUT)
        except asyncio.TimeoutError:
            self.layer_ok = False
            self.layer_failed.set()
            log.warning("channel layer: %s %s timed out; the database poll covers the room", op, group)

    def _layer_failed(self, what: str, exc: BaseException) -> None:
        self.layer_ok = False
        self.layer_failed.set()
        self.layer_errors += 1
        metrics.LAYER_ERRORS.inc()
        log.warning("channel layer %s failed: %r", what, exc)

    async def _publish(self) -> None:
        """Run layer writes in the order they were queued within each group (a room's
        broadcasts in seq order; an add and a discard of one group in turn); the writes of
        different groups queued meanwhile run at once. (One at a time, a reconnect storm's
        thousands of user-group adds and presence broadcasts, each a round trip or two on a
        busy loop, fell seconds behind: attaches timed out, and each timeout queued a
        refresh of every group.)"""
        await self.started
        while True:
            queued = [await self.outbox.get()]
            while len(queued) < LAYER_WRITES_AT_ONCE and not self.outbox.empty():
                queued.append(self.outbox.get_nowait())
            by_group: dict[str, list[tuple]] = {}
            for item in queued:
                by_group.setdefault(item[1], []).append(item)
            if len(by_group) == 1:
                await self._layer_writes(queued)
            else:
                await asyncio.gather(*(self._layer_writes(items) for items in by_group.values()))

    async def _layer_writes(self, items: list[tuple]) -> None:
        for item in items:
            await self._layer_write(*item)

    async def _layer_write(self, op: str, group: str, message, done: asyncio.Future | None) -> None:
        """One layer write; a failure is recorded (the refresh re-joins), never raised."""
        try:
            if op == "send":
                await self.layer.group_send(group, message)
                metrics.LAYER_SENT.labels(message["type"]).inc()
            elif op == "add":
                await asyncio.wait_for(self.layer.group_add(group, self.channel), LAYER_TIMEOUT)
            else:
                await asyncio.wait_for(self.layer.group_discard(group, self.channel), LAYER_TIMEOUT)
        except Exception as exc:
            self._layer_failed(f"{op} {group}", exc)
        finally:
            if done is not None and not done.done():
                done.set_result(None)

    # -- presence --

    async def _store_online(self, room_id: int) -> set[str]:
        # The joins of one room waiting at once share one read: a reconnect storm's hundreds
        # would each hold a Redis connection (MaxConnectionsError past the pool's 100).
        read = self.online_reads.get(room_id)
        if read is None:
            read = self.online_reads[room_id] = self.loop.create_task(self.presence.store.online(room_id))
            read.add_done_callback(lambda task: self.online_reads.pop(room_id) if self.online_reads.get(room_id) is task else None)
        try:
            return set(await asyncio.shield(read))
        except Exception as exc:
            log.warning("presence store unavailable: %r", exc)
            feed = self.feeds.get(room_id)
            return set(feed.online) if feed else set()

    async def _store_notices(self, room_id: int) -> list[Notice]:
        try:
            return await asyncio.to_thread(notice_store().all, room_id)
        except Exception as exc:
            log.warning("notice store unavailable: %r", exc)
            return []

    def _announce(self, room_id: int, username: str, online: bool) -> None:
        """Tell every process (this one at once) that the user came online or went offline."""
        if room_id == ANYWHERE:
            return  # a record for the email digests, not a room's presence
        message = protocol.room_presence_message(room_id=room_id, user=username, online=online)
        self.publish(room_group(room_id), message, local=("presence", room_id, message))

    async def _sweep(self) -> None:
        """Renew this process's entries and reconcile every feed with the store.

        Entries of a process that died lapse after TTL; a user missing from two sweeps in a
        row is announced gone to this process's sockets (once: a missed broadcast or a
        crashed process, not a user merely between two processes' updates).
        """
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.presence.renew()
                for feed in list(self.feeds.values()):
                    current = await self.presence.store.online(feed.room_id)
                    gone = feed.online - current
                    changes = [(user, True) for user in current - feed.online] + [(user, False) for user in gone & feed.absent]
                    feed.absent = gone - feed.absent
                    for user, online in changes:
                        message = protocol.room_presence_message(room_id=feed.room_id, user=user, online=online)
                        self.inbox.put_nowait(("presence", feed.room_id, message))
            except Exception as exc:
                log.warning("presence sweep failed: %r", exc)

    async def _deliver_presence(self, room_id: int, user: str, online: bool) -> None:
        """Tell the room's sockets (not the user's own) when the user's state changes here."""
        feed = self.feeds.get(room_id)
        if feed is None or (user in feed.online) == online:
            return
        if online:
            feed.online.add(user)
        else:
            feed.online.discard(user)
        text = protocol.encode(protocol.presence_frame(room=feed.slug, user=user, online=online))
        for sub in list(feed.subs):
            if sub.socket.username != user:
                await _each(sub.socket.send_text(text))

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._layer_failed("receive", exc)
                await asyncio.sleep(0.5)
                continue
            metrics.LAYER_RECEIVED.labels(message.get("type", "")).inc()
            kind = message.get("type")
            if kind == protocol.ROOM_EVENT:
                if "t" in message:
                    metrics.BROADCAST_SECONDS.observe(max(time.time() - message["t"], 0))
                self.inbox.put_nowait(("room", message["room"], protocol.room_events_frames(message)))
            elif kind == protocol.ROOM_EPHEMERAL:
                self.inbox.put_nowait(("ephemeral", message["room"], message))
            elif kind == protocol.ROOM_PRESENCE:
                self.inbox.put_nowait(("presence", message["room"], message))
            elif kind == protocol.ROOM_NOTICE:
                self.inbox.put_nowait(("notice", message["room"], protocol.room_notice(message)))
            elif kind == protocol.USER_EVENT:
                self.inbox.put_nowait(("user", message["user"], message["event"]))
            elif kind == protocol.USER_NOTIFICATIONS and message.get("origin") != self.channel:
                # (The publishing hub delivered its own at once.)
                self.inbox.put_nowait(("notifications", None, message))

    async def _dispatch(self) -> None:
        """Apply inbox items one at a time: this is what keeps each feed in order.

        Room events of one room queued one after another are applied together (one run of
        the feed: each socket gets them in one write); anything else queued between them
        stops that, so every other item keeps its place.
        """
        held = None  # the item that ended a run of one room's events, applied next
        while True:
            if held is None:
                kind, key, payload = await self.inbox.get()
            else:
                (kind, key, payload), held = held, None
            try:
                if kind in ("room", "fill"):
                    while len(payload) < MERGE_MAX and not self.inbox.empty():
                        item = self.inbox.get_nowait()
                        if item[0] in ("room", "fill") and item[1] == key:
                            payload = [*payload, *item[2]]
                        else:
                            held = item
                            break
                    feed = self.feeds.get(key)
                    if feed is not None:
                        await feed.accept(payload)
                elif kind == "presence":
                    await self._deliver_presence(key, payload["user"], payload["online"])
                elif kind == "notice":
                    feed = self.feeds.get(key)
                    if feed is not None and feed.notice_accept(payload, max_keys=settings.CHAT_NOTICE_MAX_KEYS):
                        for sub in list(feed.subs):
                            await _each(sub.outbox.offer(payload))
                elif kind == "notifications":
                    texts = protocol.user_notifications_texts(payload, self.users.keys())
                    for user_id, text in texts:
                        for socket in list(self.users.get(user_id, ())):
                            await _each(socket.send_text(text))
                elif kind == "ephemeral":
                    feed = self.feeds.get(key)
                    for sub in list(feed.subs) if feed is not None else ():
                        if sub.socket.user_id != payload["except"]:
                            await _each(sub.socket.send_text(payload["text"]))
                else:
                    for socket in list(self.users.get(key, ())):
                        await _each(socket.user_event(payload))
            except Exception:
                log.exception("hub dispatch failed for %s %s", kind, key)

    async def _poll(self) -> None:
        """Fill from the database what the layer never delivered (lost message, outage)."""

        while True:
            await asyncio.sleep(POLL_INTERVAL)
            feeds = [f for f in self.feeds.values() if f.seq is not None]
            if not feeds:
                continue
            try:
                seqs = await db_call(room_seqs)(room_ids=[f.room_id for f in feeds])
            except Exception as exc:
                log.warning("feed poll failed: %r", exc)
                continue
            for feed in feeds:
                current = seqs.get(feed.room_id, 0)
                # Behind on two polls in a row: the broadcast is lost, not merely in flight.
                if feed.poll_target is not None and feed.seq < feed.poll_target:
                    feed.fill(delay=0, upto=current)
                feed.poll_target = current if current > feed.seq else None

    async def _refresh(self) -> None:
        """Re-join every group: channels-redis groups expire, and a restarted Redis (or shard)
        is empty. Every REFRESH_HEALTHY, and REFRESH_UNHEALTHY after a layer failure (again
        and again while the failures go on), not only once the current long wait ends."""
        while True:
            try:
                await asyncio.wait_for(self.layer_failed.wait(), REFRESH_HEALTHY)
            except asyncio.TimeoutError:
                pass
            else:
                await asyncio.sleep(REFRESH_UNHEALTHY)
            self.layer_failed.clear()
            self.layer_ok = True
            groups = [room_group(r) for r in self.feeds] + [user_group(u) for u in self.users]
            if not self.local_only:
                groups.append(HUBS_GROUP)
            for group in groups:
                self.outbox.put_nowait(("add", group, None, None))


    async def _watch_shards(self) -> None:
        """Find a Redis shard that came back empty. A shard that restarts (or is flushed)
        drops this hub's groups without any error when the hub neither sends to it nor
        receives from it at that moment (user groups often live on such a shard), and they
        would stay gone until the next REFRESH_HEALTHY. So every WATCH_INTERVAL the hub
        renews a marker key of its own on every shard; a marker that was set and is gone
        means the shard lost its data: re-join the groups at once."""
        if not hasattr(self.layer, "connection"):
            return  # not channels-redis
        key = f"chat:hub-marker:{self.channel}"
        marked = [False] * self.layer.ring_size
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            for index in range(self.layer.ring_size):
                try:
                    previous = await self.layer.connection(index).set(key, 1, ex=int(REFRESH_HEALTHY * 5), get=True)
                except Exception as exc:
                    self._layer_failed(f"marker on shard {index}", exc)
                    continue
                if previous is None and marked[index]:
                    log.warning("channel layer: shard %d lost its data (restarted?); re-joining groups", index)
                    self.layer_failed.set()
                marked[index] = True


async def _each(sending) -> None:
    """Await one socket's part of a fan-out; its failure is not the other sockets'."""
    try:
        await sending
    except Exception:
        log.exception("sending to a socket failed")


# --- the process's hub -----------------------------------------------------------------

_hub: Hub | None = None


async def ahub() -> Hub:
    """Return this process's hub, starting it on the running loop if needed."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop:
        _hub = Hub(loop)
    await _hub.started
    return _hub


def current_hub() -> Hub | None:
    """This process's hub if its loop is running, else None (no socket was ever opened)."""
    hub = _hub
    return hub if hub is not None and hub.alive() else None


def hub_stop() -> None:
    """Stop and forget this process's hub, so the next ahub() starts a fresh one (tests)."""
    global _hub
    if _hub is not None:
        _hub.stop()
    _hub = None
