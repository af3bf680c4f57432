"""The graceful SIGTERM both server adapters run (daphne.py, uvicorn.py):

1. stop listening, so the proxy's next connection attempt is refused and goes to another
   worker (nginx ``proxy_next_upstream error``);
2. close every socket with 1001 (PROTOCOL.md: server shutting down, reconnect); clients
   reconnect through the proxy and resume with ``since``;
3. wait, at most CHAT_SHUTDOWN_TIMEOUT seconds, for those sockets to go and for HTTP
   requests in flight to finish.

Stopping the server afterwards is the adapter's. The sockets come from ``current_hub``, the
function the ASGI application passes to install_graceful_shutdown() (chat.realtime's
current_hub): this package imports nothing that needs Django set up, because uvicorn imports
``chat.serving:WebSocketProtocol`` for ``--ws`` before it loads the application.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Protocol

from django.conf import settings

from .. import metrics, protocol

log = logging.getLogger(__name__)

DRAIN_POLL = 0.05  # seconds between checks while draining


class Sockets(Protocol):
    """What the drain needs of the process's hub (chat.realtime.Hub)."""

    users: dict[int, set]

    async def close_all(self, code: int) -> int: ...


CurrentHub = Callable[[], "Sockets | None"]


async def drain(stop_listening: Callable[[], int], *, current_hub: CurrentHub, timeout: float | None = None) -> None:
    """Steps 1-3 of the module docstring; ``stop_listening`` returns how many listeners it closed."""
    timeout = settings.CHAT_SHUTDOWN_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    ports = stop_listening()
    closed: set[int] = set()
    while time.monotonic() < deadline:
        hub = current_hub()
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
