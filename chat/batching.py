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
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from django.db import InterfaceError, OperationalError

from . import services
from .db import db_call
from .models import Message

log = logging.getLogger(__name__)

MAX_BATCH = 200  # posts per transaction


class PostBatcher:
    """One per event loop: the queue of posts waiting for the database thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: list[tuple[services.Post, asyncio.Future]] = []
        self.running = False
        self.task: asyncio.Task | None = None  # held: the loop keeps only weak references to tasks

    async def post(self, post: services.Post) -> tuple[Message, bool]:
        future = self.loop.create_future()
        self.queue.append((post, future))
        if not self.running:
            self.running = True
            self.task = self.loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        batch: list[tuple[services.Post, asyncio.Future]] = []
        try:
            while self.queue:
                batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                results = await self._store([post for post, _ in batch])
                for (_, future), result in zip(batch, results):
                    _settle(future, result)
                batch = []
        except BaseException as exc:  # cancelled (shutdown): nobody waits forever
            for _, future in batch + self.queue:
                _settle(future, exc if isinstance(exc, Exception) else OperationalError("shutting down"))
            self.queue = []
            raise
        finally:
            self.running = False

    async def _store(self, posts: list[services.Post]) -> list:
        try:
            return await db_call(services.message_post_many)(posts)
        except (OperationalError, InterfaceError) as exc:
            return [exc] * len(posts)
        except Exception as exc:
            if len(posts) == 1:
                return [exc]
            log.exception("a batch of %d posts failed; storing them one at a time", len(posts))
            return [(await self._store([post]))[0] for post in posts]


def _settle(future: asyncio.Future, result) -> None:
    if future.done():  # the socket went away meanwhile
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PostBatcher] = weakref.WeakKeyDictionary()


async def post(post: services.Post) -> tuple[Message, bool]:
    """Store ``post`` in this process's next group commit; return (message, created) or raise
    its ChatError (or the database error of its batch)."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = PostBatcher(loop)
    return await batcher.post(post)
