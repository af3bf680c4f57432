"""The Daphne adapter (the default server).

Daphne implements neither ASGI lifespan nor a drain: on SIGTERM Twisted stops the reactor at
once, Daphne cancels every application instance and the reactor drops every connection
without a WebSocket close frame (clients see 1006, in-flight HTTP requests are lost).
install() replaces that handler with drain.drain(), then stops the reactor.

Daphne's ASGI ``send`` never waits: a socket that does not read makes Twisted buffer the
frames in memory; send_backlog() reads that buffer's size. frame_writer() sends a room
event's ready-made frame on the socket at once when Twisted holds nothing for it (else
through Twisted's buffer, behind what is there). Daphne's ``send`` is
``functools.partial(Server.handle_reply, protocol)``, which is how each function here finds
the connection's protocol; for any other ``send`` they answer None or False.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Callable

from twisted.internet import tcp  # not the reactor: importing that one installs it

from . import drain


def install(current_hub: drain.CurrentHub) -> None:
    """Under Daphne, make SIGTERM drain the process (inert otherwise: the "daphne" app in
    INSTALLED_APPS imports daphne.server under uvicorn too, but no reactor runs then)."""
    if "daphne.server" not in sys.modules:
        return
    # Imported here: importing the reactor installs one, and Daphne installs its own first.
    from twisted.internet import reactor

    # "After startup": Twisted installs its own signal handlers during startup.
    reactor.callWhenRunning(_take_sigterm, reactor, current_hub)


def _take_sigterm(reactor, current_hub: drain.CurrentHub) -> None:
    state = {"draining": False}

    def on_sigterm(signum, frame):
        if state["draining"]:  # the second SIGTERM stops at once
            reactor.callFromThread(reactor.stop)
            return
        state["draining"] = True
        reactor.callFromThread(lambda: asyncio.ensure_future(_drain(reactor, current_hub)))

    signal.signal(signal.SIGTERM, on_sigterm)


async def _drain(reactor, current_hub: drain.CurrentHub) -> None:
    try:
        await drain.drain(lambda: _stop_listening(reactor), current_hub=current_hub)
    finally:
        reactor.stop()


def _stop_listening(reactor) -> int:
    ports = [r for r in reactor.getReaders() if isinstance(r, tcp.Port)]
    for port in ports:
        port.stopListening()
    return len(ports)


def _protocol(send):
    """Daphne's WebSocket protocol behind an ASGI ``send``, or None."""
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
    ws = _protocol(send)
    if ws is None or not hasattr(ws, "sendCloseFrame") or not hasattr(ws, "STATE_OPEN"):
        return False
    if ws.state == ws.STATE_OPEN:
        ws.sendCloseFrame(code=code, isReply=False)
    return True


def send_backlog(send) -> Callable[[], int] | None:
    """The bytes Twisted holds for this socket, not yet handed to the kernel, or None.

    The protocol's TCP transport keeps unsent data in ``dataBuffer`` (from ``offset``) and
    ``_tempDataBuffer`` (``_tempDataLen`` bytes).
    """
    ws = _protocol(send)
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
    """A writer of whole WebSocket frames to this socket (see chat.serving.frame_writer), or
    None when ``send`` is not Daphne's or the socket negotiated compression."""
    ws = _protocol(send)
    if ws is None or not hasattr(ws, "sendData") or getattr(ws, "_perMessageCompress", None) is not None:
        return None
    # A plain TCP connection (not TLS): its socket can take the frame at once.
    direct = isinstance(ws.transport, tcp.Connection) and all(
        hasattr(ws.transport, a) for a in ("socket", "dataBuffer", "_tempDataLen", "disconnecting", "_writeDisconnected"))

    def write_daphne(frame: bytes) -> bool:
        if ws.state != ws.STATE_OPEN:
            return False
        if ws.send_queue:  # autobahn is sending in chops: queue behind them
            ws.sendData(frame)
            return True
        t = ws.transport
        if not direct or t.dataBuffer or t._tempDataLen or t.disconnecting or t._writeDisconnected or not t.connected:
            # What sendData does, less its debug log line (formatted even when off); after
            # any bytes Twisted holds, so frames keep their order.
            t.write(frame)
            return True
        # Nothing is waiting: send now, as uvicorn's transport does. Twisted's write would
        # buffer the frame, register the socket for writing and send it on the reactor's
        # next turn (two epoll_ctl calls and a chain of Python calls per socket and frame).
        try:
            sent = t.socket.send(frame)
        except OSError:  # EAGAIN, or the connection broke: Twisted's write finds out and handles it
            sent = 0
        if sent < len(frame):
            t.write(frame[sent:] if sent else frame)
        return True

    return write_daphne
