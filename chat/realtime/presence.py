"""Who is online in which room, across server processes (PROTOCOL.md 3.3, item 6).

Each process counts its own sockets per (room, user) and records "user U is here through
process P" in a store with an expiry, renewed every HEARTBEAT seconds. A process that dies
stops renewing, so its entries lapse within TTL and the survivors' sweeps announce the users
gone: no ghost stays online.

- RedisPresence: one sorted set per (room, user) of process ids scored by expiry, and one
  set per room of the users present; updated by Lua scripts, so "first socket" and "last
  socket" are decided atomically across processes. Also the cross-process typing throttle.
- LocalPresence: the same in memory, for the in-memory channel layer (one process).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Callable

from django.conf import settings

from chatproject import redis_url

log = logging.getLogger(__name__)

HEARTBEAT = 4.0  # seconds between renewals (and sweeps)
TTL = 15.0  # an entry not renewed for this long is gone
# The pseudo-room of "has a socket open at all", whatever rooms it joined (room ids start
# at 1): the hub counts every socket of a user here, so the email digests (chat.services.
# digests) can ask whether a user is away, from any process.
ANYWHERE = 0

_ADD = """
-- KEYS[1] user's process set, KEYS[2] room's user set; ARGV: now, expiry, process, member, ttl
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], 86400)
return before == 0 and 1 or 0
"""

_REMOVE = """
-- KEYS[1] user's process set, KEYS[2] room's user set; ARGV: now, process, member
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

_ONLINE = """
-- KEYS[1] room's user set; ARGV: now, key prefix of the users' process sets
local online = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. member
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZCARD', key) > 0 then
    table.insert(online, member)
  else
    redis.call('SREM', KEYS[1], member)
  end
end
return online
"""


def _member(user_id: int, username: str) -> str:
    return f"{user_id}:{username}"


def _username(member: str) -> str:
    return member.split(":", 1)[1]


class LocalPresence:
    """Presence for a single process (the in-memory channel layer)."""

    def __init__(self):
        self.process = uuid.uuid4().hex
        self.rooms: dict[int, dict[str, float]] = {}
        self.typing: dict[tuple[int, int], float] = {}

    async def add(self, room_id: int, user_id: int, username: str) -> bool:
        """Record the user in the room; True if they were not online there before."""
        members = self.rooms.setdefault(room_id, {})
        first = _member(user_id, username) not in members
        members[_member(user_id, username)] = time.time() + TTL
        return first

    async def remove(self, room_id: int, user_id: int, username: str) -> bool:
        """Forget this process's entry; True if the user is now offline in the room."""
        self.rooms.get(room_id, {}).pop(_member(user_id, username), None)
        return True

    async def renew(self, entries: list[tuple[int, int, str]]) -> None:
        for room_id, user_id, username in entries:
            self.rooms.setdefault(room_id, {})[_member(user_id, username)] = time.time() + TTL

    async def online(self, room_id: int) -> set[str]:
        now = time.time()
        members = self.rooms.get(room_id, {})
        for member in [m for m, expiry in members.items() if expiry <= now]:
            del members[member]
        return {_username(m) for m in members}

    async def typing_allowed(self, room_id: int, user_id: int, every: float) -> bool:
        now = time.monotonic()
        if now - self.typing.get((room_id, user_id), -every) < every:
            return False
        if len(self.typing) > 10000:
            self.typing = {k: t for k, t in self.typing.items() if now - t < every}
        self.typing[(room_id, user_id)] = now
        return True

    async def close(self) -> None:
        pass


class RedisPresence:
    """Presence shared by every process through Redis."""

    PREFIX = "chat:presence:"

    def __init__(self, url: str):
        self.process = uuid.uuid4().hex
        self.redis = redis_url.parse(url).client(asyncio=True, socket_timeout=5, socket_connect_timeout=2)
        self._add = self.redis.register_script(_ADD)
        self._remove = self.redis.register_script(_REMOVE)
        self._online = self.redis.register_script(_ONLINE)

    def _keys(self, room_id: int, user_id: int, username: str) -> list[str]:
        return [f"{self.PREFIX}{room_id}:u:{_member(user_id, username)}", f"{self.PREFIX}{room_id}:users"]

    async def add(self, room_id: int, user_id: int, username: str) -> bool:
        now = time.time()
        args = [now, now + TTL, self.process, _member(user_id, username), int(TTL) + 1]
        return bool(await self._add(keys=self._keys(room_id, user_id, username), args=args))

    async def remove(self, room_id: int, user_id: int, username: str) -> bool:
        args = [time.time(), self.process, _member(user_id, username)]
        return bool(await self._remove(keys=self._keys(room_id, user_id, username), args=args))

    async def renew(self, entries: list[tuple[int, int, str]]) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, user_id, username in entries:
                key, users = self._keys(room_id, user_id, username)
                pipe.zadd(key, {self.process: now + TTL})
                pipe.expire(key, int(TTL) + 1)
                pipe.sadd(users, _member(user_id, username))
            await pipe.execute()

    async def online(self, room_id: int) -> set[str]:
        members = await self._online(keys=[f"{self.PREFIX}{room_id}:users"], args=[time.time(), f"{self.PREFIX}{room_id}:u:"])
        return {_username(m.decode()) for m in members}

    async def typing_allowed(self, room_id: int, user_id: int, every: float) -> bool:
        return bool(await self.redis.set(f"chat:typing:{room_id}:{user_id}", 1, nx=True, px=int(every * 1000)))

    async def close(self) -> None:
        await self.redis.aclose()


class PresenceTracker:
    """This process's share of presence: its sockets per (room, user), recorded in ``store``
    when the first joins and removed when the last leaves, and renewed by renew().

    ``announce(room_id, username, online)`` is called when the store reports the user's first
    socket in the room in any process, or the last one gone.
    """

    def __init__(self, store: LocalPresence | RedisPresence, *, announce: Callable[[int, str, bool], None]):
        self.store = store
        self.announce = announce
        self.sockets: dict[tuple[int, int], int] = {}  # (room, user) -> this process's sockets
        self.usernames: dict[int, str] = {}
        self.recorded: set[tuple[int, int]] = set()  # the pairs this process holds in the store
        self.changes: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    def count(self, room_id: int, user_id: int, username: str, delta: int) -> None:
        """A socket of the user joined (+1) or left (-1) the room in this process."""
        key = (room_id, user_id)
        self.usernames[user_id] = username
        count = self.sockets.get(key, 0) + delta
        if count > 0:
            self.sockets[key] = count
        else:
            self.sockets.pop(key, None)
        if count in (0, 1):
            self.changes.put_nowait(key)

    async def run(self) -> None:
        """Record first joins and last leaves in the store, in order, and announce them.

        One task applies every change, each time re-reading the current count, so a leave
        and a quick re-join of the same user can never be applied out of order.
        """
        while True:
            key = await self.changes.get()
            room_id, user_id = key
            username = self.usernames.get(user_id, "")
            try:
                if key in self.sockets and key not in self.recorded:
                    self.recorded.add(key)
                    if await self.store.add(room_id, user_id, username):
                        self.announce(room_id, username, True)
                elif key not in self.sockets and key in self.recorded:
                    self.recorded.discard(key)
                    if await self.store.remove(room_id, user_id, username):
                        self.announce(room_id, username, False)
            except Exception as exc:
                log.warning("presence store unavailable: %r", exc)

    async def renew(self) -> None:
        """Renew this process's entries (every HEARTBEAT; they lapse after TTL otherwise)."""
        await self.store.renew([(r, u, self.usernames.get(u, "")) for r, u in self.recorded])


def presence_store() -> LocalPresence | RedisPresence:
    """The store matching the channel layer: Redis when REDIS_URL is set."""
    global _local
    if settings.REDIS_URL:
        return RedisPresence(settings.REDIS_URL)
    _local = LocalPresence()
    return _local


# The store the newest hub of this process holds when there is no Redis: room_online reads it,
# so this module needs no import of the hub (the hub imports presence, never the other way).
_local: LocalPresence | None = None


def users_connected(*, users: list[tuple[int, str]]) -> set[int]:
    """The ids of ``users`` ((id, username) pairs) with a socket open in any server process.

    With Redis this is every process's record. Without it only this process's sockets are
    known: a process without a hub (the tasks worker) sees nobody.
    """
    if not users:
        return set()
    now = time.time()
    if settings.REDIS_URL:
        client = redis_url.parse(settings.REDIS_URL).client(socket_timeout=2, socket_connect_timeout=2)
        try:
            with client.pipeline(transaction=False) as pipe:
                for user_id, username in users:
                    pipe.zcount(f"{RedisPresence.PREFIX}{ANYWHERE}:u:{_member(user_id, username)}", now, "+inf")
                counts = pipe.execute()
        finally:
            client.close()
        return {user_id for (user_id, _), count in zip(users, counts) if count}
    if _local is None:
        return set()
    members = dict(_local.rooms.get(ANYWHERE, {}))
    return {user_id for user_id, username in users if members.get(_member(user_id, username), 0) > now}


def room_online(*, room_id: int) -> list[str]:
    """Usernames online in the room in any process, for synchronous code (REST views)."""
    if settings.REDIS_URL:
        client = redis_url.parse(settings.REDIS_URL).client(socket_timeout=2, socket_connect_timeout=2)
        try:
            members = client.eval(_ONLINE, 1, f"{RedisPresence.PREFIX}{room_id}:users", time.time(), f"{RedisPresence.PREFIX}{room_id}:u:")
        finally:
            client.close()
        return sorted({_username(m.decode()) for m in members})
    if _local is None:
        return []
    now = time.time()
    return sorted({_username(m) for m, expiry in dict(_local.rooms.get(room_id, {})).items() if expiry > now})
