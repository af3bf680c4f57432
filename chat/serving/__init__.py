"""What the application needs from the server process it runs in (Daphne, the default, or
uvicorn, CHAT_SERVER=uvicorn), one adapter module per server:

- a graceful SIGTERM (drain.py; hooked into Daphne by daphne.py, into uvicorn by uvicorn.py);
- close codes 1001 and 1011, which Daphne refuses through ASGI (close_directly());
- each socket's send backlog, so a socket that stops reading can be closed (send_backlog(),
  SlowSocketCheck);
- a ``send`` that never waits on one socket (uvicorn: WebSocketProtocol), and a room event
  written to every socket as the same ready-made bytes (frame_writer()).

Importable before Django is set up: uvicorn imports ``chat.serving:WebSocketProtocol`` for
``--ws`` before it loads the application. So nothing here imports the hub; the application
passes its accessor to install_graceful_shutdown().
"""

from __future__ import annotations

import time
from typing import Callable

from django.conf import settings

from . import daphne, uvicorn
from .drain import CurrentHub
from .uvicorn import WebSocketProtocol

__all__ = ["SlowSocketCheck", "WebSocketProtocol", "close_directly", "frame_writer", "install_graceful_shutdown", "send_backlog"]


def install_graceful_shutdown(*, current_hub: CurrentHub) -> None:
    """Under Daphne or uvicorn, make SIGTERM drain the process (drain.py) instead of dropping
    (Daphne) or closing with 1012 (uvicorn) every connection; ``current_hub`` returns the
    process's hub, or None.

    Called when chatproject.asgi is imported, before either server runs (uvicorn imports
    the application before it creates its Server and its event loop). Each hook is inert
    unless its server runs; under neither (a management command, the tests' in-process
    application) nothing changes.
    """
    uvicorn.install(current_hub)
    daphne.install(current_hub)


def close_directly(send, code: int) -> bool:
    """Send a close frame with ``code`` past ASGI where the server needs it (Daphne, for 1001
    and 1011); False if the caller should send ``websocket.close`` itself."""
    return daphne.close_directly(send, code)


def send_backlog(send) -> Callable[[], int] | None:
    """Return a function giving the bytes the server holds for this socket, not yet handed
    to the kernel, or None when ``send`` is neither Daphne's nor uvicorn's (tests)."""
    return uvicorn.send_backlog(send) or daphne.send_backlog(send)


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
    return uvicorn.frame_writer(send) or daphne.frame_writer(send)


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
