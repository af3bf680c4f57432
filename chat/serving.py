"""What the application needs from the server process it runs in (Daphne, the default,
or uvicorn, CHAT_SERVER=uvicorn): a graceful SIGTERM, close codes 1001 and 1011, each
socket's send backlog, and a ``send`` that never waits on one socket.

Daphne implements neither ASGI lifespan nor a drain. On SIGTERM Twisted stops the reactor
at once: Daphne cancels every application instance and the reactor drops every connection
without a WebSocket close frame (clients see 1006, in-flight HTTP requests are lost).
uvicorn does stop listening and close its WebSockets, but with 1012 (service restart),
and then re-raises SIGTERM, so the process dies by the signal instead of exiting 0.
install_graceful_shutdown() replaces either server's handler, once it runs, with a drain:

1. stop listening, so the proxy's next connection attempt is refused and goes to another
   worker (nginx ``proxy_next_upstream error``);
2. close every socket with 1001 (PROTOCOL.md: server shutting down, reconnect); clients
   reconnect through the proxy and resume with ``since``;
3. wait, at most CHAT_SHUTDOWN_TIMEOUT seconds, for those sockets to go and for HTTP
   requests in flight to finish; then stop as the server would have (uvicorn: exit 0).

A second SIGTERM stops at once.

Daphne's ASGI ``send`` never waits: a socket that does not read makes Twisted buffer the
frames in memory. send_backlog() reads that buffer's size, so the consumer can close a
socket that falls too far behind (it resumes with ``since`` on reconnect). uvicorn's
websockets-sansio ``send`` does wait (flow control: above 64 KiB unsent it awaits the
transport's resume_writing), and the hub hands a frame to one socket after another, so one
client that stops reading would stall every socket of the process. ``WebSocketProtocol``
(``uvicorn --ws chat.serving:WebSocketProtocol``) is uvicorn's websockets-sansio protocol
with Daphne's behaviour where the application relies on it; see its docstring.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from typing import Callable

from django.conf import settings

# realtime (the hub) is imported where it is used: uvicorn imports this module for
# ``--ws chat.serving:WebSocketProtocol`` before Django is set up, and realtime loads models.
from . import metrics, protocol

log = logging.getLogger(__name__)

DRAIN_POLL = 0.05  # seconds between checks while draining


def install_graceful_shutdown() -> None:
    """Under Daphne or uvicorn, make SIGTERM drain the process instead of dropping (Daphne)
    or closing with 1012 (uvicorn) every connection.

    Called when chatproject.asgi is imported, before either server runs (uvicorn imports
    the application before it creates its Server and its event loop). Each hook is inert
    unless its server runs: the "daphne" app in INSTALLED_APPS imports daphne.server under
    uvicorn too, and this module imports uvicorn under Daphne.
    """
    if WebSocketsSansIOProtocol is not None:
        _patch_uvicorn_sigterm()
    if "daphne.server" in sys.modules:
        from twisted.internet import reactor

        # "After startup": Twisted installs its own signal handlers during startup.
        reactor.callWhenRunning(_take_sigterm, reactor)
    # Otherwise: a management command, the tests' in-process application.


# The cyclic garbage collector's full passes walk every object of a process holding
# thousands of sockets: pauses of up to 160 ms were measured at 1,000 sockets and 1,400
# messages/s (every socket waits for them). Objects of the loaded application are frozen
# out of those passes, and young collections run every 50,000 allocations instead of 700.
GC_THRESHOLD = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Call once the application is loaded (chatproject.asgi)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


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
    try:
        await _drain(lambda: _stop_listening(reactor), timeout=timeout)
    finally:
        reactor.stop()


async def _drain(stop_listening: Callable[[], int], *, timeout: float | None = None) -> None:
    """Steps 1-3 of the module docstring (stopping the server is the caller's)."""
    timeout = settings.CHAT_SHUTDOWN_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    ports = stop_listening()
    closed: set[int] = set()
    from . import realtime

    while time.monotonic() < deadline:
        hub = realtime.current_hub()
        sockets = 0
        if hub is not None:
            # Repeated: a handshake that was in progress may attach a socket late.
            closed.update(id(s) for group in hub.users.values() for s in group)
            try:
                await hub.close_all(protocol.CLOSE_GOING_AWAY)
            except Exception:  # one socket's failure must not stop the drain of the others
                log.exception("SIGTERM: closing sockets failed")
            sockets = sum(len(s) for s in hub.users.values())
        if sockets == 0 and metrics.http_in_flight() <= 0:
            break
        await asyncio.sleep(DRAIN_POLL)
    log.info(
        "SIGTERM: stopped %d listener(s), closed %d socket(s) with 1001, drained in %.2f s",
        ports, len(closed), timeout - max(deadline - time.monotonic(), 0),
    )
    # Let the close handshakes' last bytes leave before the server drops connections.
    await asyncio.sleep(0.2)


# --- uvicorn ----------------------------------------------------------------------------


def _patch_uvicorn_sigterm() -> None:
    """Make uvicorn's Server drain on SIGTERM (steps 1-3), then shut down as after its own
    SIGTERM, but without its 1012s (every socket is closed already) and without re-raising
    the signal once it is done (its capture_signals() does that for every signal its
    handle_exit saw: the process would die by SIGTERM instead of exiting 0).

    uvicorn installs ``Server.handle_exit`` as the handler of SIGINT and SIGTERM when it
    starts serving, so wrapping that method is the hook; SIGINT (Ctrl+C) is left alone.
    """
    from uvicorn.server import Server

    original = Server.handle_exit
    if getattr(original, "chat_drain", False):
        return

    def handle_exit(self, sig, frame):
        if sig != signal.SIGTERM:
            return original(self, sig, frame)
        if getattr(self, "chat_drain_task", None) is not None:  # the second SIGTERM
            self.force_exit = self.should_exit = True
            return
        try:
            loop = asyncio.get_running_loop()  # uvicorn's, whose thread runs signal handlers
        except RuntimeError:
            return original(self, sig, frame)
        self.chat_drain_task = True  # set before the task exists: a second signal may come first

        def start():
            self.chat_drain_task = loop.create_task(_uvicorn_drain(self))

        loop.call_soon_threadsafe(start)

    handle_exit.chat_drain = True
    Server.handle_exit = handle_exit


async def _uvicorn_drain(server) -> None:
    try:
        await _drain(lambda: _uvicorn_stop_listening(server))
    finally:
        server.should_exit = True  # uvicorn's main loop notices within 0.1 s and shuts down


def _uvicorn_stop_listening(server) -> int:
    listeners = list(getattr(server, "servers", ()))
    for listener in listeners:
        listener.close()  # existing connections stay open; uvicorn's shutdown closes it again
    return len(listeners)


try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # uvicorn is not installed: Daphne only
    WebSocketsSansIOProtocol = None

# After a close frame (ours, or uvicorn's on a ping timeout) the transport is closed
# gracefully, which waits until everything buffered has been sent: never, for a client that
# stopped reading. So such a connection is aborted after this many seconds.
ABORT_AFTER_CLOSE = 5.0

if WebSocketsSansIOProtocol is not None:

    class WebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's websockets-sansio protocol, with Daphne's behaviour where the
        application relies on it (``uvicorn --ws chat.serving:WebSocketProtocol``):

        - ``send`` never waits. uvicorn's awaits resume_writing() once 64 KiB are unsent;
          the hub's fan-out awaits each socket's send in turn, so one client that stopped
          reading would stall the whole process. Unsent frames are buffered instead, and
          the consumer closes the socket once the buffer is too large for too long
          (send_backlog(), CHAT_SEND_BACKLOG*), as under Daphne.
        - A frame for a socket that is gone or closing is dropped. uvicorn raises
          ClientDisconnected (gone) or RuntimeError (after a close frame, e.g. its ping
          timeout), into the hub's fan-out or into a consumer that has not yet seen its
          ``websocket.disconnect``: a consumer that dies there never detaches from the hub.
        - A connection whose close frame cannot leave (the client does not read) is
          aborted ABORT_AFTER_CLOSE seconds after a close, or after a ping timeout, rather
          than held open with its buffer until the client reads again. The application's
          ``websocket.disconnect`` comes from that.

        Close codes 1001 and 1011 pass through ASGI unchanged (close_directly() is only
        for Daphne).
        """

        def pause_writing(self) -> None:
            pass  # no flow control on send: see the class docstring

        async def send(self, message) -> None:
            if self.disconnected or self.close_sent:
                return
            await super().send(message)
            if message["type"] == "websocket.close" and self.close_sent:
                self._abort_later()

        def shutdown(self) -> None:
            """uvicorn's, with 1001 (PROTOCOL.md: server shutting down, reconnect) for 1012.
            The SIGTERM drain has closed every socket of the hub before; this reaches one
            that was still in its handshake, or every one if the drain did not run."""
            if self.handshake_complete and not self.close_sent and not self.disconnected:
                self.stop_keepalive()
                self.queue.put_nowait({"type": "websocket.disconnect", "code": 1001})
                self.conn.send_close(1001)
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.close_sent = True
                self.transport.close()
                self._abort_later()
                return
            super().shutdown()

        def keepalive_timeout(self) -> None:
            super().keepalive_timeout()
            self._abort_later()

        def _abort_later(self) -> None:
            self.loop.call_later(ABORT_AFTER_CLOSE, self._abort)

        def _abort(self) -> None:
            if not self.disconnected and self.transport is not None:
                self.transport.abort()

else:
    WebSocketProtocol = None


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


_warned_plain_uvicorn = False


def send_backlog(send) -> Callable[[], int] | None:
    """Return a function giving the bytes the server holds for this socket, not yet handed
    to the kernel, or None when ``send`` is neither Daphne's nor uvicorn's (tests).

    Daphne: the protocol's Twisted TCP transport keeps unsent data in ``dataBuffer`` (from
    ``offset``) and ``_tempDataBuffer`` (``_tempDataLen`` bytes). uvicorn: ``send`` is a
    bound method of the connection's protocol, whose asyncio (uvloop) transport reports
    ``get_write_buffer_size()``.
    """
    uvicorn_ws = getattr(send, "__self__", None)
    if WebSocketsSansIOProtocol is not None and isinstance(uvicorn_ws, WebSocketsSansIOProtocol):
        global _warned_plain_uvicorn
        if not isinstance(uvicorn_ws, WebSocketProtocol) and not _warned_plain_uvicorn:
            _warned_plain_uvicorn = True
            log.warning("uvicorn without --ws chat.serving:WebSocketProtocol: a socket that stops reading stalls the others")

        def uvicorn_backlog() -> int:
            t = uvicorn_ws.transport
            return 0 if t is None or uvicorn_ws.disconnected else t.get_write_buffer_size()

        return uvicorn_backlog

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


def frame_writer(send) -> Callable[[bytes], bool] | None:
    """Return a function that writes a whole WebSocket frame (protocol.RoomEventFrame.wire)
    to this socket at once and says whether the socket was still open, or None when
    ``send`` is neither Daphne's nor uvicorn's, or the socket negotiated compression.

    A room event goes to every socket of the room as the same bytes: built once, not once
    per socket by the server's WebSocket library behind ASGI's ``websocket.send`` (the
    per-recipient path was the most of the project's CPU per delivery; docs/performance.md).
    Writes keep their order with the socket's other frames, which also go straight to the
    same transport. Call after the socket is accepted (extensions are negotiated then).
    """
    uvicorn_ws = getattr(send, "__self__", None)
    if WebSocketsSansIOProtocol is not None and isinstance(uvicorn_ws, WebSocketsSansIOProtocol):
        if uvicorn_ws.conn.extensions:
            return None

        def write_uvicorn(frame: bytes) -> bool:
            if uvicorn_ws.disconnected or uvicorn_ws.close_sent or uvicorn_ws.transport is None:
                return False
            uvicorn_ws.transport.write(frame)
            return True

        return write_uvicorn
    ws = _daphne_protocol(send)
    if ws is None or not hasattr(ws, "sendData") or getattr(ws, "_perMessageCompress", None) is not None:
        return None

    def write_daphne(frame: bytes) -> bool:
        if ws.state != ws.STATE_OPEN:
            return False
        if ws.send_queue:  # autobahn is sending in chops: queue behind them
            ws.sendData(frame)
        else:  # what sendData does, less its debug log line (formatted even when off)
            ws.transport.write(frame)
        return True

    return write_daphne


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
