"""What the application needs from the Daphne process it runs in: a graceful SIGTERM,
close codes 1001 and 1011, and each socket's send backlog.

Daphne implements neither ASGI lifespan nor a drain. On SIGTERM Twisted stops the reactor
at once: Daphne cancels every application instance and the reactor drops every connection
without a WebSocket close frame (clients see 1006, in-flight HTTP requests are lost).
install_graceful_shutdown() replaces that handler, once the reactor runs, with a drain:

1. stop listening, so the proxy's next connection attempt is refused and goes to another
   worker (nginx ``proxy_next_upstream error``);
2. close every socket with 1001 (PROTOCOL.md: server shutting down, reconnect); clients
   reconnect through the proxy and resume with ``since``;
3. wait, at most CHAT_SHUTDOWN_TIMEOUT seconds, for those sockets to go and for HTTP
   requests in flight to finish; then stop the reactor as Twisted would have.

A second SIGTERM stops at once.

Daphne's ASGI ``send`` never waits: a socket that does not read makes Twisted buffer the
frames in memory. send_backlog() reads that buffer's size, so the consumer can close a
socket that falls too far behind (it resumes with ``since`` on reconnect).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from typing import Callable

from django.conf import settings

from . import metrics, protocol, realtime

log = logging.getLogger(__name__)

DRAIN_POLL = 0.05  # seconds between checks while draining


def install_graceful_shutdown() -> None:
    """Under Daphne, make SIGTERM drain the process instead of dropping every connection."""
    if "daphne.server" not in sys.modules:
        return  # another server, a management command, the tests' in-process application
    from twisted.internet import reactor

    # "After startup": Twisted installs its own signal handlers during startup.
    reactor.callWhenRunning(_take_sigterm, reactor)


def _take_sigterm(reactor) -> None:
    state = {"draining": False}

    def on_sigterm(signum, frame):
        if state["draining"]:
            reactor.callFromThread(reactor.stop)
            return
        state["draining"] = True
        reactor.callFromThread(lambda: asyncio.ensure_future(drain(reactor)))

    signal.signal(signal.SIGTERM, on_sigterm)


def _stop_listening(reactor) -> int:
    from twisted.internet import tcp

    ports = [r for r in reactor.getReaders() if isinstance(r, tcp.Port)]
    for port in ports:
        port.stopListening()
    return len(ports)


async def drain(reactor, *, timeout: float | None = None) -> None:
    """Steps 1-3 of the module docstring, then stop the reactor."""
    timeout = settings.CHAT_SHUTDOWN_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    try:
        ports = _stop_listening(reactor)
        closed: set[int] = set()
        while time.monotonic() < deadline:
            hub = realtime._hub
            sockets = 0
            if hub is not None and hub.alive():
                # Repeated: a handshake that was in progress may attach a socket late.
                closed.update(id(s) for group in hub.users.values() for s in group)
                await hub.close_all(protocol.CLOSE_GOING_AWAY)
                sockets = sum(len(s) for s in hub.users.values())
            if sockets == 0 and metrics.http_in_flight() <= 0:
                break
            await asyncio.sleep(DRAIN_POLL)
        log.info(
            "SIGTERM: stopped %d listener(s), closed %d socket(s) with 1001, drained in %.2f s",
            ports, len(closed), timeout - max(deadline - time.monotonic(), 0),
        )
        # Let the close handshakes' last bytes leave before the reactor drops connections.
        await asyncio.sleep(0.2)
    finally:
        reactor.stop()


def _daphne_protocol(send):
    """Daphne's WebSocket protocol behind an ASGI ``send``, or None.

    Daphne's ``send`` is ``functools.partial(Server.handle_reply, protocol)``.
    """
    args = getattr(send, "args", None)
    return args[0] if args else None


def close_directly(send, code: int) -> bool:
    """Send a close frame with ``code`` straight through Daphne's protocol; False if that is
    not needed (the code passes through ASGI) or not possible (not Daphne).

    Daphne hands ``websocket.close`` to Autobahn's sendClose(), which accepts only 1000 and
    3000-4999 and raises for 1001 (going away) and 1011 (internal error), the codes
    PROTOCOL.md asks for (django/daphne#374, crossbario/autobahn-python#1642). Daphne
    itself closes with 1011 through sendCloseFrame(), which sends any code; so does this.
    """
    if code == 1000 or 3000 <= code <= 4999:
        return False
    ws = _daphne_protocol(send)
    if ws is None or not hasattr(ws, "sendCloseFrame") or not hasattr(ws, "STATE_OPEN"):
        return False
    if ws.state == ws.STATE_OPEN:
        ws.sendCloseFrame(code=code, isReply=False)
    return True


def send_backlog(send) -> Callable[[], int] | None:
    """Return a function giving the bytes Daphne holds for this socket, not yet handed to
    the kernel, or None when ``send`` is not Daphne's (tests, another server).

    The protocol's Twisted TCP transport keeps unsent data in ``dataBuffer`` (from
    ``offset``) and ``_tempDataBuffer`` (``_tempDataLen`` bytes).
    """
    ws = _daphne_protocol(send)
    transport = getattr(ws, "transport", None)
    if transport is None or not all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen")):
        return None

    def backlog() -> int:
        t = ws.transport
        if t is None:
            return 0
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    return backlog


class SlowSocketCheck:
    """Decides when a socket has fallen too far behind (see CHAT_SEND_BACKLOG*)."""

    __slots__ = ("backlog", "since")

    def __init__(self, backlog: Callable[[], int]):
        self.backlog = backlog
        self.since: float | None = None  # when the backlog last rose above CHAT_SEND_BACKLOG

    def too_slow(self) -> bool:
        """True if the socket should be closed; call after each send."""
        size = self.backlog()
        if size >= settings.CHAT_SEND_BACKLOG_MAX:
            return True
        if size < settings.CHAT_SEND_BACKLOG:
            self.since = None
            return False
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since >= settings.CHAT_SLOW_SOCKET_SECONDS
