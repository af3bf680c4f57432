"""The uvicorn adapter (CHAT_SERVER=uvicorn; ``uvicorn --ws chat.serving:WebSocketProtocol``).

uvicorn does stop listening and close its WebSockets on SIGTERM, but with 1012 (service
restart), and then re-raises SIGTERM, so the process dies by the signal instead of exiting 0.
install() makes SIGTERM run drain.drain() instead, then lets uvicorn shut down (exit 0).

uvicorn's websockets-sansio ``send`` waits (flow control: above 64 KiB unsent it awaits the
transport's resume_writing), and the hub hands a frame to one socket after another, so one
client that stops reading would stall every socket of the process. WebSocketProtocol is
uvicorn's websockets-sansio protocol with Daphne's behaviour where the application relies on
it; see its docstring. Everything here is inert when uvicorn is not installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

from . import drain

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from uvicorn.server import Server
except ImportError:  # uvicorn is not installed: Daphne only
    WebSocketsSansIOProtocol = Server = None

log = logging.getLogger(__name__)

# After a close frame (ours, or uvicorn's on a ping timeout) the transport is closed
# gracefully, which waits until everything buffered has been sent: never, for a client that
# stopped reading. So such a connection is aborted after this many seconds.
ABORT_AFTER_CLOSE = 5.0


def install(current_hub: drain.CurrentHub) -> None:
    """Make uvicorn's Server drain on SIGTERM (drain.drain()), then shut down as after its own
    SIGTERM, but without its 1012s (every socket is closed already) and without re-raising
    the signal once it is done (its capture_signals() does that for every signal its
    handle_exit saw: the process would die by SIGTERM instead of exiting 0).

    uvicorn installs ``Server.handle_exit`` as the handler of SIGINT and SIGTERM when it
    starts serving, so wrapping that method is the hook; SIGINT (Ctrl+C) is left alone.
    Inert unless uvicorn serves: under Daphne no uvicorn Server is ever created.
    """
    if Server is None:
        return
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
            self.chat_drain_task = loop.create_task(_drain(self, current_hub))

        loop.call_soon_threadsafe(start)

    handle_exit.chat_drain = True
    Server.handle_exit = handle_exit


async def _drain(server, current_hub: drain.CurrentHub) -> None:
    try:
        await drain.drain(lambda: _stop_listening(server), current_hub=current_hub)
    finally:
        server.should_exit = True  # uvicorn's main loop notices within 0.1 s and shuts down


def _stop_listening(server) -> int:
    listeners = list(getattr(server, "servers", ()))
    for listener in listeners:
        listener.close()  # existing connections stay open; uvicorn's shutdown closes it again
    return len(listeners)


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


_warned_plain_protocol = False


def _protocol(send):
    """uvicorn's websockets-sansio protocol behind an ASGI ``send`` (a bound method), or None."""
    ws = getattr(send, "__self__", None)
    return ws if WebSocketsSansIOProtocol is not None and isinstance(ws, WebSocketsSansIOProtocol) else None


def send_backlog(send) -> Callable[[], int] | None:
    """The bytes the connection's asyncio (uvloop) transport holds unsent, or None when
    ``send`` is not uvicorn's."""
    ws = _protocol(send)
    if ws is None:
        return None
    global _warned_plain_protocol
    if not isinstance(ws, WebSocketProtocol) and not _warned_plain_protocol:
        _warned_plain_protocol = True
        log.warning("uvicorn without --ws chat.serving:WebSocketProtocol: a socket that stops reading stalls the others")

    def backlog() -> int:
        t = ws.transport
        return 0 if t is None or ws.disconnected else t.get_write_buffer_size()

    return backlog


def frame_writer(send) -> Callable[[bytes], bool] | None:
    """A writer of whole WebSocket frames to this socket (see chat.serving.frame_writer), or
    None when ``send`` is not uvicorn's or the socket negotiated compression."""
    ws = _protocol(send)
    if ws is None or ws.conn.extensions:
        return None

    def write_uvicorn(frame: bytes) -> bool:
        if ws.disconnected or ws.close_sent or ws.transport is None:
            return False
        ws.transport.write(frame)
        return True

    return write_uvicorn
