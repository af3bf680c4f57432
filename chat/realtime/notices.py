"""Notices (PROTOCOL.md 9): the latest value per key of a room, and each socket's conflated
delivery of them.

- LocalNotices / RedisNotices: the store of every room's latest values. Redis (one hash per
  room, ``chat:notices:<room id>``, field = key, value = "<at> <frame>") when REDIS_URL is
  set, so every process has them; this process's memory otherwise. Both refuse a new key
  beyond CHAT_NOTICE_MAX_KEYS and an update older than the value they hold, and forget a
  room's values CHAT_NOTICE_TTL seconds after its last update.
- NoticeOutbox: one socket's pending notices in one room, at most one per key. A new value
  replaces the pending one (conflation), a key is sent at most once per 1/CHAT_NOTICE_RATE
  seconds, and nothing is written while the server holds more than NOTICE_BACKLOG unsent
  bytes for the socket; what waits is sent as soon as both allow. Its memory is bounded by
  the number of keys, never by the number of updates.

The store is written by services.notice_publish (any thread); the outboxes run on the hub's
event loop (hub.py feeds them).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Iterable, Protocol

import redis
from django.conf import settings

from .. import metrics, protocol
from ..protocol import ChatError, Notice

log = logging.getLogger(__name__)

NOTICE_BACKLOG = 64 * 1024  # bytes unsent (server buffer): above this a socket gets no notice
BUSY_RETRY = 0.05  # seconds between looks at a busy socket's backlog
SENT_KEPT = 2048  # keys' last send times an outbox keeps before it forgets the expired ones


def notices_key(room_id: int) -> str:
    return f"chat:notices:{room_id}"


# KEYS[1] the room's hash; ARGV: field, at, "at frame", max keys, ttl.
# Returns 1 stored, 0 refused (too many keys), -1 older than the stored value (ignored).
_PUT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  if tonumber(string.match(current, '^%S+')) > tonumber(ARGV[2]) then return -1 end
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class NoticeStore(Protocol):
    def put(self, room_id: int, notice: Notice, *, max_keys: int, ttl: float) -> int:
        """Store ``notice`` as its key's latest value: 1 stored, 0 refused (the room has
        ``max_keys`` other keys), -1 ignored (the stored value is newer)."""

    def all(self, room_id: int) -> list[Notice]:
        """The room's latest values (any order)."""


class LocalNotices:
    """This process's store (the in-memory channel layer: one process)."""

    def __init__(self) -> None:
        self.rooms: dict[int, tuple[float, dict[str, Notice]]] = {}  # room: (expires, key: notice)
        self.lock = threading.Lock()  # REST views run in threads

    def put(self, room_id: int, notice: Notice, *, max_keys: int, ttl: float) -> int:
        now = time.monotonic()
        with self.lock:
            expires, values = self.rooms.get(room_id, (0.0, {}))
            if expires < now:
                values = {}
            current = values.get(notice.key)
            if current is not None and current.at > notice.at:
                return -1
            if current is None and len(values) >= max_keys:
                return 0
            values[notice.key] = notice
            self.rooms[room_id] = (now + ttl, values)
            for stale in [r for r, (e, _v) in self.rooms.items() if e < now]:
                del self.rooms[stale]
            return 1

    def all(self, room_id: int) -> list[Notice]:
        with self.lock:
            expires, values = self.rooms.get(room_id, (0.0, {}))
            return list(values.values()) if expires >= time.monotonic() else []


class RedisNotices:
    """The store shared by every process through Redis."""

    def __init__(self, url: str):
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._put = self.redis.register_script(_PUT)

    def put(self, room_id: int, notice: Notice, *, max_keys: int, ttl: float) -> int:
        value = f"{notice.at!r} {notice.text}"
        try:
            return int(self._put(keys=[notices_key(room_id)], args=[notice.key, repr(notice.at), value, max_keys, max(1, int(ttl))]))
        except redis.RedisError as exc:
            raise ChatError(protocol.UNAVAILABLE, "The notice store is unavailable; retry later.") from exc

    def all(self, room_id: int) -> list[Notice]:
        notices = []
        try:
            values = self.redis.hgetall(notices_key(room_id))
        except redis.RedisError as exc:
            raise ChatError(protocol.UNAVAILABLE, "The notice store is unavailable; retry later.") from exc
        for field, value in values.items():
            at, _, text = value.decode().partition(" ")
            notices.append(Notice(key=field.decode(), at=float(at), text=text))
        return notices


_stores: dict[str, NoticeStore] = {}
_stores_lock = threading.Lock()


def notice_store() -> NoticeStore:
    """The store matching the channel layer: Redis when REDIS_URL is set (one per process)."""
    url = settings.REDIS_URL
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = RedisNotices(url) if url else LocalNotices()
        return store


class NoticeSocket(Protocol):
    """What an outbox needs of its socket (ChatConsumer)."""

    def notice_busy(self) -> bool:
        """True while the server holds more than NOTICE_BACKLOG unsent bytes for the socket."""

    async def send_notice(self, notice: Notice) -> None: ...


class NoticeOutbox:
    """One socket's notices of one room: the latest pending value per key, sent when the
    socket's send is free and the key's rate allows (see the module docstring).

    Paused until start() (the socket's ``joined`` goes first); offer() while paused keeps
    only the newest value per key, like any other time the socket cannot take one.
    """

    __slots__ = ("socket", "interval", "pending", "sent_at", "paused", "closed", "_timer", "_task", "_loop")

    def __init__(self, socket: NoticeSocket, *, rate: float):
        self.socket = socket
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.pending: dict[str, Notice] = {}
        self.sent_at: dict[str, float] = {}  # key: monotonic time it was last sent
        self.paused = True
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._loop = asyncio.get_running_loop()

    async def offer(self, notice: Notice) -> None:
        """Take a key's new value (it replaces a pending one); send what may go now."""
        if self.closed:
            return
        idle = not self.paused and self._timer is None and self._task is None
        if idle and not self.pending:
            # The common case, a socket that keeps up: straight out, no dict of pending values.
            now = time.monotonic()
            last = self.sent_at.get(notice.key)
            if (last is None or now - last >= self.interval) and not self.socket.notice_busy():
                self.sent_at[notice.key] = now
                if len(self.sent_at) > SENT_KEPT:
                    self._prune(now)
                await self.socket.send_notice(notice)
                return
        if notice.key in self.pending:
            metrics.NOTICES_CONFLATED.inc()
        self.pending[notice.key] = notice
        if idle:
            await self.flush()

    async def start(self, notices: Iterable[Notice]) -> None:
        """Go live with the room's current values (they follow ``joined``)."""
        for notice in notices:
            held = self.pending.get(notice.key)
            if held is None or held.at < notice.at:
                self.pending[notice.key] = notice
        self.paused = False
        await self.flush()

    def close(self) -> None:
        """Drop everything pending (the socket left the room or closed)."""
        self.closed = True
        self.pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def flush(self) -> None:
        """Send every pending key whose interval has passed, while the socket's send is free;
        then wake up when the next may go."""
        while not self.closed and self.pending:
            if self.socket.notice_busy():
                self._wake(BUSY_RETRY)
                return
            now = time.monotonic()
            wait: float | None = None
            sent = False
            for key in list(self.pending):
                last = self.sent_at.get(key)
                if last is not None and now - last < self.interval:
                    due = last + self.interval - now
                    wait = due if wait is None else min(wait, due)
                    continue
                notice = self.pending.pop(key)  # the newest: offer() may have replaced it meanwhile
                self.sent_at[key] = now
                await self.socket.send_notice(notice)
                sent = True
                if self.closed:
                    return
                if self.socket.notice_busy():
                    self._wake(BUSY_RETRY)
                    return
            if len(self.sent_at) > SENT_KEPT:
                self._prune(now)
            if not sent:  # everything pending waits for its interval (new arrivals: go round again)
                if wait is not None:
                    self._wake(wait)
                return

    def _prune(self, now: float) -> None:
        """Forget send times older than the interval: they no longer hold anything back."""
        self.sent_at = {k: t for k, t in self.sent_at.items() if now - t < self.interval}

    def _wake(self, delay: float) -> None:
        if self._timer is None and not self.closed:
            self._timer = self._loop.call_later(delay, self._woken)

    def _woken(self) -> None:
        self._timer = None
        if self._task is None and not self.closed:
            self._task = self._loop.create_task(self._flush_task())

    async def _flush_task(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("notice delivery failed")
        finally:
            self._task = None

