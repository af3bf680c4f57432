"""A minimal WebSocket client for the load generator: asyncio.Protocol, no library on the hot path.

The load generator shares two cores with the server it measures, so each received frame must
cost as little as possible. A general client (``websockets``) spends tens of microseconds per
frame in its parser, queue and ``recv()`` await; this one parses every frame already in a read
buffer in one loop and hands each text payload (bytes, undecoded) to a callback.

Enough of RFC 6455 for the benchmark: the opening handshake with extra headers, unfragmented
and fragmented text frames, ping → pong, close. No extensions are offered (no
permessage-deflate), so no server compresses. Client frames are masked with a zero key (valid:
the key is any 32 bits; XOR with zero leaves the payload as it is).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_ZERO_MASK = b"\x00\x00\x00\x00"


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + _ZERO_MASK + payload


class Client(asyncio.Protocol):
    """One WebSocket connection. ``on_text(payload)`` gets every text message as bytes."""

    def __init__(self, path: str, host: str, headers: dict[str, str], on_text: Callable[[bytes], None]):
        self.path = path
        self.host = host
        self.headers = headers
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.status = b""
        self._handshaken = False
        self._buf = b""
        self._fragments: list[bytes] = []

    # -- asyncio.Protocol --

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during handshake: {self.status!r} {exc!r}"))
            self.opened.exception()  # retrieved: no "never retrieved" warning when nobody waits any more
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def data_received(self, data: bytes) -> None:
        if not self._handshaken:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = self._buf[: self._buf.find(b"\r\n")]
            data, self._buf = self._buf[end + 4 :], b""
            if self.status.split(b" ")[1:2] != [b"101"]:
                self.opened.set_exception(ConnectionError(f"handshake refused: {self.status.decode()}"))
                self.transport.close()
                return
            self._handshaken = True
            self.opened.set_result(True)
            if not data:
                return
        buf = self._buf + data if self._buf else data
        pos, n = 0, len(buf)
        on_text = self.on_text
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > n:
                break
            payload = buf[pos + head : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == OP_TEXT and b0 & 0x80:
                on_text(payload)
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                self._fragments.append(payload)
                if b0 & 0x80:
                    whole, self._fragments = b"".join(self._fragments), []
                    on_text(whole)
            elif opcode == OP_PING:
                self.transport.write(_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.transport.write(_frame(OP_CLOSE, payload[:2]))
                self.transport.close()
                break
        self._buf = buf[pos:] if pos < n else b""

    # -- API --

    def send_text(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(OP_TEXT, data))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()


async def connect(
    port: int, path: str, *, headers: dict[str, str] | None = None, on_text: Callable[[bytes], None] = lambda b: None,
    timeout: float = 30.0, local_host: str | None = None,
) -> Client:
    """Open a WebSocket to 127.0.0.1:``port`` and return it once the handshake is done;
    ``local_host``: the source address (another 127.x.y.z: a proxy's per-address limits)."""
    loop = asyncio.get_running_loop()
    _transport, client = await asyncio.wait_for(
        loop.create_connection(lambda: Client(path, f"127.0.0.1:{port}", headers or {}, on_text), "127.0.0.1", port,
                               local_addr=(local_host, 0) if local_host else None),
        timeout,
    )
    await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    return client
