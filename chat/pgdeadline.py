"""A psycopg connection that stops waiting for a server that does not answer.

PostgreSQL's own timeouts (statement_timeout, lock_timeout; chatproject/settings.py) end a
slow statement or a lock wait, but only a server that runs can enforce them: a backend
stopped with SIGSTOP, or a network path that swallows packets while the TCP connection
stays up, leaves libpq waiting forever, and with it the process's one database thread
(chat/db.py). DeadlineConnection gives every wait for the server (a query, a commit, the
pool's check) a deadline; past it the connection is closed and the call raises
OperationalError, which the doors answer with `unavailable`. The pool then discards the
closed connection and connects afresh (within connect_timeout) once the server answers.

Imported by the settings (the pool's ``connection_class``), so it imports psycopg only.
"""

from __future__ import annotations

import logging
import time
from functools import cache

import psycopg
from psycopg import errors

log = logging.getLogger(__name__)

# The server's own timeouts are this share of CHAT_DB_TIMEOUT (chatproject/settings.py), so a
# server that is merely slow or blocked by a lock cancels first and the connection is kept.
SERVER_SHARE = 0.8


class DatabaseTimeout(psycopg.OperationalError):
    """The server did not answer within the connection's deadline."""


_stalled_since: float | None = None  # monotonic time of the last unanswered wait, until one is answered


def stalled_since() -> float | None:
    """When a wait last went unanswered, if no wait has been answered since (any thread)."""
    return _stalled_since


def mark_stalled() -> None:
    """Record that the database did not answer (e.g. no connection within the pool's timeout)."""
    global _stalled_since
    _stalled_since = time.monotonic()


def mark_answered() -> None:
    """Record that the database answered (a call that tried it succeeded)."""
    global _stalled_since
    _stalled_since = None


class DeadlineConnection(psycopg.Connection):
    """psycopg.Connection whose waits for the server last at most ``deadline`` seconds."""

    deadline: float | None = None

    def wait(self, gen, interval=0.1, timeout=None):
        global _stalled_since
        try:
            result = super().wait(gen, interval=interval, timeout=self.deadline if timeout is None else timeout)
        except errors._WaitTimeout:
            _stalled_since = time.monotonic()
            log.warning("the database did not answer within %.1f s: closing the connection", self.deadline)
            self.pgconn.finish()  # in an unknown state: never reused
            raise DatabaseTimeout(f"the database did not answer within {self.deadline:.1f} s") from None
        _stalled_since = None
        return result


@cache
def deadline_connection(seconds: float) -> type[DeadlineConnection]:
    """A DeadlineConnection class whose waits last at most ``seconds``."""
    return type("DeadlineConnection", (DeadlineConnection,), {"deadline": seconds})


def server_timeouts(seconds: float) -> str:
    """libpq ``options`` that set the server's statement and lock timeouts for ``seconds``."""
    ms = max(1, int(seconds * SERVER_SHARE * 1000))
    return f"-c statement_timeout={ms} -c lock_timeout={ms}"
