"""Database calls from the event loop: ``await db_call(function)(...)``.

channels' ``database_sync_to_async`` runs each call on the one database thread with
``close_old_connections()`` before and after, which drops a connection that failed or
outlived CONN_MAX_AGE. With CONN_HEALTH_CHECKS on (PostgreSQL, chatproject/settings.py),
Django then pings the persistent connection (``SELECT 1``) before its next query: one more
round trip on every call, 18% of the database thread's time at saturation
(docs/performance.md). ``db_call`` does the same cleanup, but pings a connection that has
not failed at most once per HEALTH_CHECK_EVERY seconds. A connection that raised is still
checked (or dropped) before the next call, as Django does.

With the connection pool (PostgreSQL's default, chatproject/settings.py) CONN_MAX_AGE is 0:
the cleanup after each call hands the connection back to the pool, the next call borrows
one, and the pool checks it on the way out (psycopg_pool's check_connection, an empty
query), so the once-a-second throttle only matters without the pool (CHAT_DB_POOL_SIZE=0
with a CONN_MAX_AGE). The group commit (chat/batching.py) stores each batch through
db_call, so it borrows from the same pool: a process never holds more than the pool's
size. A call that waits longer than CHAT_DB_POOL_TIMEOUT for a connection raises
OperationalError (psycopg_pool.PoolTimeout, wrapped by Django), which the doors answer
with `unavailable`.

A database that stops answering (chat/pgdeadline.py) or cannot be reached (no connection
within the pool's timeout) would otherwise hold the one database thread for CHAT_DB_TIMEOUT
per call, and every call queued behind it waits as long again: sends would be answered
minutes late. Once a wait has gone unanswered, or a call found no connection, ``db_call`` fails at
once with OperationalError (a call queued for the thread meanwhile, too), and a background
probe (``SELECT 1``, one at a time, PROBE_EVERY seconds after the last) tries the database;
its answer, or any answered query on any thread, ends the fail-fast.
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import SyncToAsync
from django.db import OperationalError, connections
from psycopg_pool import PoolTimeout

from .pgdeadline import mark_answered, mark_stalled, stalled_since

HEALTH_CHECK_EVERY = 1.0  # seconds
PROBE_EVERY = 1.0  # seconds between calls let through to a database that stopped answering


def close_old_connections() -> None:
    """Django's close_old_connections(), with health checks at most once a second."""
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        checked = conn.health_check_done
        conn.close_if_unusable_or_obsolete()
        if conn.connection is None or conn.health_check_done:
            continue  # dropped, or checked just now after an error
        if checked and now - getattr(conn, "chat_checked_at", 0.0) < HEALTH_CHECK_EVERY:
            conn.health_check_done = True  # in use and checked less than a second ago
        else:
            conn.chat_checked_at = now  # Django checks it before its next query


class DatabaseCall(SyncToAsync):
    """SyncToAsync on the database thread with the cleanup above around each call."""

    probe = False  # this call is the one trying a database that stopped answering

    def __init__(self, func):
        super().__init__(func, thread_sensitive=True)

    async def __call__(self, *args, **kwargs):
        if not self.probe and stalled_since() is not None:
            _start_probe()
            raise OperationalError("the database is not answering")
        return await super().__call__(*args, **kwargs)

    def thread_handler(self, loop, *args, **kwargs):
        if not self.probe and stalled_since() is not None:
            # Queued behind the call that found the database stalled.
            raise OperationalError("the database is not answering")
        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        except OperationalError as exc:
            if isinstance(exc.__cause__, PoolTimeout):
                # No connection within the pool's timeout (the database unreachable, or every
                # connection stuck): each call queued behind this one would wait as long.
                mark_stalled()
            raise
        finally:
            close_old_connections()


def _ping() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


_probe_task: asyncio.Task | None = None  # held: the loop keeps only weak references to tasks
_probed_at = 0.0  # monotonic time the last probe ended


def _start_probe() -> None:
    """Try the database in the background, at most one try at a time and one a PROBE_EVERY."""
    global _probe_task
    if (_probe_task is not None and not _probe_task.done()) or time.monotonic() - _probed_at < PROBE_EVERY:
        return
    _probe_task = asyncio.get_running_loop().create_task(_probe())


def fail_fast_reset() -> None:
    """Forget a stalled database and any probe (tests: each runs on a loop of its own)."""
    global _probe_task, _probed_at
    mark_answered()
    _probe_task, _probed_at = None, 0.0


async def _probe() -> None:
    global _probed_at
    call = DatabaseCall(_ping)
    call.probe = True
    try:
        await call()
    except Exception:
        pass  # still stalled; the next db_call a PROBE_EVERY from now tries again
    else:
        mark_answered()
    finally:
        _probed_at = time.monotonic()


db_call = DatabaseCall
