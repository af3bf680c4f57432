"""Group commit for the socket door: ``await post(services.Post(...))``.

All of a process's sockets share one database thread. Storing each `send` in its own
transaction makes that thread the bottleneck (8-9 round trips and a commit per message;
docs/performance.md). Instead, the process's posts queue here, and one task hands
everything queued while the previous batch was being stored to
services.message_post_many() as one batch: one permission read per batch, one seq UPDATE
per room, two INSERTs and one commit. A lone post goes at once, so an idle server adds no
latency; under load the batches grow by themselves.

Each post still gets its own answer: its ack, or the error refusing it alone. A database
error fails the whole batch (nothing of it is stored, each sender gets `unavailable`); any
other failure of a batch is retried one post at a time, so one bad post cannot cost the
others theirs.

A room whose lock another transaction holds (a REST edit or deletion, a moderator's
change, any slow transaction) holds up only that room. The batch takes its rooms' locks
with SKIP LOCKED (rules.rooms_lock), stores the posts of the rooms it locked, and hands the
others back DEFERRED (services.message_post_many): they were not judged, stored or counted
against the rate. They go back to the head of the queue and are tried again after a short
back-off (RETRY_FIRST, doubling up to RETRY_MOST), in whatever batch runs then or in one of
their own. Until then nothing queued after them in their room, or with their
(author, client_id), is taken (services.Holds): a room's seqs still follow the order its
posts were queued in, and a repeated client_id still gets the first post's message. A
post whose room is still locked lock_wait() after it was first deferred (lock_timeout's
share of CHAT_DB_TIMEOUT, the wait a blocked batch had) is answered `unavailable`, as the
batch that ran into lock_timeout was. The back-off never waits on the lock itself: the
process has one database thread (chat/db.py), so a lock wait there would stall every room
again. (SQLite has no row locks: a batch's IMMEDIATE transaction waits for the database's
one write lock at BEGIN, a whole-database stall that SKIP LOCKED cannot avoid, and nothing
is ever deferred.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref

from django.conf import settings
from django.db import InterfaceError, OperationalError

from . import services
from .coalesce import settle
from .db import db_call
from .models import Message
from .pgdeadline import SERVER_SHARE

log = logging.getLogger(__name__)

MAX_BATCH = 200  # posts per transaction
RETRY_FIRST = 0.005  # seconds before a deferred post is tried again, doubling each time
RETRY_MOST = 0.04


def lock_wait() -> float:
    """How long a deferred post waits for its room's lock: lock_timeout (chat/pgdeadline.py),
    infinite with CHAT_DB_TIMEOUT=0 as lock_timeout is."""
    seconds = settings.CHAT_DB_TIMEOUT
    return seconds * SERVER_SHARE if seconds > 0 else math.inf


class _Queued:
    """A queued post, its sender's future, and its retries once deferred."""

    __slots__ = ("post", "future", "retry_at", "give_up_at", "backoff")

    def __init__(self, post: services.Post, future: asyncio.Future):
        self.post, self.future = post, future
        self.retry_at = 0.0  # monotonic time of the next try; 0.0 until first deferred
        self.give_up_at = math.inf
        self.backoff = RETRY_FIRST


class PostBatcher:
    """One per event loop: the queue of posts waiting for the database thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: list[_Queued] = []
        self.deferred = 0  # posts in the queue that were deferred (retry_at set)
        self.running = False
        self.task: asyncio.Task | None = None  # held: the loop keeps only weak references to tasks
        self.wake: asyncio.Future | None = None  # while waiting for a deferred post's retry

    async def post(self, post: services.Post) -> tuple[Message, bool]:
        future = self.loop.create_future()
        self.queue.append(_Queued(post, future))
        if not self.running:
            self.running = True
            self.task = self.loop.create_task(self._run())
        elif self.wake is not None:
            _wake_up(self.wake)  # new work: the next batch need not wait for the back-off
        return await future

    async def _run(self) -> None:
        batch: list[_Queued] = []
        try:
            while self.queue:
                batch = self._take()
                if not batch:  # all queued waits behind deferred posts: until the first retry, or new work
                    now = time.monotonic()
                    await self._pause(min((q.retry_at for q in self.queue if q.retry_at > now), default=now) - now)
                    continue
                results = await self._store([queued.post for queued in batch])
                self.queue[:0] = self._answer(batch, results)
                batch = []
        except BaseException as exc:  # cancelled (shutdown): nobody waits forever
            for queued in batch + self.queue:
                settle(queued.future, exc if isinstance(exc, Exception) else OperationalError("shutting down"))
            self.queue, self.deferred = [], 0
            raise
        finally:
            self.running = False

    def _take(self) -> list[_Queued]:
        """The next batch: the first MAX_BATCH queued posts, less deferred ones not yet due
        for a retry and what services.Holds keeps behind those."""
        if not self.deferred:
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            return batch
        now = time.monotonic()
        batch, rest, holds = [], [], services.Holds()
        for n, queued in enumerate(self.queue):
            if len(batch) == MAX_BATCH:
                rest.extend(self.queue[n:])
                break
            if queued.retry_at <= now and not holds.holds(queued.post):
                batch.append(queued)
                if queued.retry_at:
                    self.deferred -= 1
            else:
                holds.add(queued.post)
                rest.append(queued)
        self.queue = rest
        return batch

    def _answer(self, batch: list[_Queued], results: list) -> list[_Queued]:
        """Answer each post of the batch; return the deferred ones still to be tried, in order."""
        again = []
        now = time.monotonic()
        for queued, result in zip(batch, results):
            if result is not services.DEFERRED:
                settle(queued.future, result)
                continue
            if queued.retry_at == 0.0:
                queued.give_up_at = now + lock_wait()
            if now >= queued.give_up_at:
                settle(queued.future, OperationalError("the room's lock was not free within lock_timeout"))
                continue
            queued.retry_at = min(now + queued.backoff, queued.give_up_at)
            queued.backoff = min(queued.backoff * 2, RETRY_MOST)
            again.append(queued)
        self.deferred += len(again)
        return again

    async def _pause(self, seconds: float) -> None:
        self.wake = self.loop.create_future()
        timer = self.loop.call_later(max(seconds, 0.0), _wake_up, self.wake)
        try:
            await self.wake
        finally:
            timer.cancel()
            self.wake = None

    async def _store(self, posts: list[services.Post]) -> list:
        try:
            return await db_call(services.message_post_many)(posts, skip_locked=True)
        except (OperationalError, InterfaceError) as exc:
            return [exc] * len(posts)
        except Exception as exc:
            if len(posts) == 1:
                return [exc]
            log.exception("a batch of %d posts failed; storing them one at a time", len(posts))
            # Once one is deferred, what Holds keeps behind it is deferred without a try.
            results, holds = [], services.Holds()
            for post in posts:
                results.append(services.DEFERRED if holds.holds(post) else (await self._store([post]))[0])
                if results[-1] is services.DEFERRED:
                    holds.add(post)
            return results


def _wake_up(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PostBatcher] = weakref.WeakKeyDictionary()


async def post(post: services.Post) -> tuple[Message, bool]:
    """Store ``post`` in this process's next group commit; return (message, created) or raise
    its ChatError (or the database error of its batch)."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = PostBatcher(loop)
    return await batcher.post(post)
