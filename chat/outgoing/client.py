"""One webhook POST over the standard library's http.client, to addresses the guard checked.

Each hop (the URL, then at most MAX_REDIRECTS redirects) is checked by chat.outgoing.guard
and connected to the addresses that check returned, never to a second DNS answer. A
redirect (301, 302, 303, 307, 308) is followed with the same POST, body and headers (a
webhook has no other meaning); one from https to http is refused. The whole attempt has
one deadline (``timeout`` seconds); the answer's body is read up to MAX_READ bytes and
dropped.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin

from . import guard

MAX_REDIRECTS = 3
MAX_READ = 64 * 1024
REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class Answer:
    """The receiver's final HTTP status, or None and ``error`` (what went wrong, for the record)."""

    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Deadline(Exception):
    pass


def _connect(addresses: list[tuple[int, str]], port: int, deadline: float) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers before ``deadline``."""
    last: OSError | None = None
    for family, address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Deadline()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(remaining)
        try:
            sock.connect((address, port))
            return sock
        except TimeoutError:
            sock.close()
            raise _Deadline() from None
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose socket is already connected to a checked address."""

    def __init__(self, host: str, port: int, sock: socket.socket, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._pinned = sock

    def connect(self) -> None:
        self.sock = self._pinned


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As _PinnedHTTPConnection, with TLS for ``host`` (SNI and certificate checked for the name)."""

    def __init__(self, host: str, port: int, sock: socket.socket, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._pinned = sock

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(self._pinned, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, resolver=socket.getaddrinfo) -> Answer:
    """POST ``body`` to ``url`` with ``headers``; return the Answer (never raises for the
    network's or the receiver's faults; a refused URL is an Answer with the guard's reason)."""
    deadline = time.monotonic() + timeout
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            status, location = _post_once(url, body, headers, deadline=deadline, resolver=resolver)
            if status not in REDIRECTS or not location:
                return Answer(status)
            target = urljoin(url, location)
            if url.startswith("https:") and not target.startswith("https:"):
                return Answer(None, f"refused: a redirect from https to {target[:200]}")
            url = target
        return Answer(None, f"more than {MAX_REDIRECTS} redirects")
    except guard.Refused as exc:
        return Answer(None, f"refused: {exc}")
    except (_Deadline, TimeoutError):
        return Answer(None, f"timeout after {timeout:g} s")
    except ssl.SSLError as exc:
        return Answer(None, f"TLS error: {exc}")
    except (http.client.HTTPException, OSError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:300])


def _post_once(url: str, body: bytes, headers: dict[str, str], *, deadline: float, resolver) -> tuple[int, str | None]:
    """One POST to ``url`` (checked by the guard); return (status, Location header)."""
    parts, addresses = guard.url_checked(url, resolver=resolver)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    sock = _connect(addresses, port, deadline)
    remaining = max(deadline - time.monotonic(), 0.001)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(parts.hostname, port, sock, remaining)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_READ)
        if time.monotonic() > deadline:
            raise _Deadline()
        return response.status, response.getheader("Location")
    finally:
        connection.close()
