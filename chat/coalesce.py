"""Coalesced reads for handshakes and joins: ``await coalesced(many, item)``.

All of a process's sockets share one database thread (chat/db.py). A reconnect storm makes
that thread the bottleneck: each client's handshake and join took four database calls
(its token, its site ban, its room access, its resume), each borrowing a pooled connection
that the pool checks with a round trip of its own, so 9 round trips in a row per client
while the process's CPU idled (docs/performance.md, the reconnect storm). Here, as the group
commit does for sends (chat/batching.py), the calls queued while the previous batch ran go
to the database thread as one batch: ``many(items)`` answers them all with a few queries
(one token query, one ban query, one access query, one replay per room), and a lone call
goes at once, so an idle server adds no latency.

``many`` runs on the database thread and returns one result per item, in order: a value or
the exception refusing that item alone (a ChatError). A database error fails the whole batch
(each waiter gets it, as from its own db_call).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from django.db import InterfaceError, OperationalError

from .db import db_call

MAX_BATCH = 100  # items per database call, so a batch never holds the thread for long


class Coalescer:
    """One per (event loop, ``many``): the items waiting for the database thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, many: Callable[[Sequence[Any]], list]):
        self.loop = loop
        self.many = many
        self.queue: list[tuple[Any, asyncio.Future]] = []
        self.task: asyncio.Task | None = None  # held: the loop keeps only weak references to tasks

    async def call(self, item):
        future = self.loop.create_future()
        self.queue.append((item, future))
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        batch: list[tuple[Any, asyncio.Future]] = []
        try:
            while self.queue:
                batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                try:
                    results = await db_call(self.many)([item for item, _ in batch])
                except Exception as exc:  # the database: every item of the batch fails with it
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results):
                    settle(future, result)
                batch = []
        except BaseException as exc:  # cancelled (shutdown): nobody waits forever
            for _, future in batch + self.queue:
                settle(future, exc if isinstance(exc, Exception) else OperationalError("shutting down"))
            self.queue = []
            raise
        finally:
            self.task = None


def settle(future: asyncio.Future, result) -> None:
    """Give ``future`` its result, or raise ``result`` in it if that is an exception (the
    group commit's answers too, chat/batching.py)."""
    if future.done():  # the socket went away meanwhile
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Callable, Coalescer]] = weakref.WeakKeyDictionary()


async def coalesced(many: Callable[[Sequence[Any]], list], item):
    """``many([item, …])[i]`` for this item, in this process's next batch for ``many``;
    raise the item's exception (or the database error of its batch)."""
    loop = asyncio.get_running_loop()
    per_loop = _coalescers.get(loop)
    if per_loop is None:
        per_loop = _coalescers[loop] = {}
    coalescer = per_loop.get(many)
    if coalescer is None:
        coalescer = per_loop[many] = Coalescer(loop, many)
    return await coalescer.call(item)


def each(function: Callable, items: Sequence[Any]) -> list:
    """``[function(item) for item in items]`` with each item's exception as its result,
    except a database error (OperationalError, InterfaceError), which fails the batch."""
    results = []
    for item in items:
        try:
            results.append(function(item))
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            results.append(exc)
    return results
