"""The cap on HTTP request bodies (PROTOCOL.md 3.4): ``CHAT_MAX_BODY`` bytes, default 1 MiB;
on the upload URL (PROTOCOL.md 8) ``CHAT_MAX_UPLOAD`` plus MULTIPART_SLACK for the framing.

A body over the cap is answered 413 ``{"code": "too_large"}`` before it is read to the end:
at once when its ``Content-Length`` says so, else as soon as the streamed chunks pass the
cap. BodyLimitMiddleware does it for any ASGI server that streams the body (uvicorn);
Daphne reads a whole body before it calls the application, so install_daphne_limits()
makes Daphne's request answer 413 from the headers. Django's own DATA_UPLOAD_MAX_MEMORY_SIZE
(the same number) stays as the last line, mapped to the same 413 by chat.api.errors and
chat.views.
"""

from __future__ import annotations

import json
import re

from django.conf import settings

TOO_LARGE_BODY = json.dumps(
    {"detail": "The request body is too large.", "code": "too_large"}, separators=(",", ":")
).encode()


# The upload URL (chat/api/urls.py), the one path with the larger cap.
UPLOAD_PATH = re.compile(r"^/api/v1/rooms/[^/]+/uploads/$")
# A multipart body is the file plus its part headers and boundaries: a few hundred bytes for
# one file; the upload handler (chat/files/uploadhandler.py) caps the file bytes exactly.
MULTIPART_SLACK = 64 * 1024


def max_body(path: str | bytes = "") -> int:
    """The cap for a request to ``path`` (without its query string)."""
    if isinstance(path, bytes):
        path = path.split(b"?", 1)[0].decode("latin-1")
    if UPLOAD_PATH.match(path):
        return settings.CHAT_MAX_UPLOAD + MULTIPART_SLACK
    return settings.CHAT_MAX_BODY


def declared_length(headers) -> int | None:
    """The request's Content-Length as a number, or None when absent or malformed."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def send_too_large(send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(TOO_LARGE_BODY)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": TOO_LARGE_BODY})


class BodyLimitMiddleware:
    """Wraps the HTTP application: bodies over CHAT_MAX_BODY get 413 before the app reads them."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = max_body(scope.get("path", ""))
        length = declared_length(scope.get("headers", ()))
        if length is not None and length > limit:
            return await send_too_large(send)

        received = 0
        over = False
        started = False

        async def limited_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The app sees a client that went away; the 413 is sent below.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if over and not started:
            await send_too_large(send)


def install_daphne_limits() -> None:
    """Make Daphne enforce the limits as PROTOCOL.md 3.4 states them.

    - A request whose Content-Length is over its cap (max_body()) gets 413 without its body
      being read (Twisted otherwise buffers it whole before the application runs); one
      without a Content-Length (chunked) gets it as soon as the chunks pass the cap (Twisted
      would otherwise spool every byte to a temporary file, 2 GB for a 2 GB upload).
    - A WebSocket message over ``--websocket-max-message-size`` is closed with 1009 and a
      close frame; autobahn's server default (failByDrop) drops the TCP connection instead.

    A no-op where Daphne is not installed; harmless under other servers.
    """
    try:
        from daphne.http_protocol import WebRequest
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:
        return
    if getattr(WebRequest, "_chat_body_limit", False):
        return
    factory_init = WebSocketFactory.__init__

    def __init__(self, *args, **kwargs):
        factory_init(self, *args, **kwargs)
        # Fail with a close frame (1009 for a message too big), then close the TCP connection.
        self.setProtocolOptions(failByDrop=False)

    WebSocketFactory.__init__ = __init__
    original = WebRequest.gotLength
    original_chunk = WebRequest.handleContentChunk

    def refuse(self):
        transport = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(TOO_LARGE_BODY), TOO_LARGE_BODY)
        )
        # Read nothing more of this connection; the client sees the 413, then the close.
        transport.loseConnection()
        self.channel.dataReceived = lambda data: None

    def gotLength(self, length):
        # The request line is parsed, the Request's own fields are not set yet: the channel has the path.
        self._chat_limit = max_body(getattr(self.channel, "_path", b"") or b"")
        self._chat_received = 0
        if length is not None and length > self._chat_limit:
            refuse(self)
        return original(self, length)

    def handleContentChunk(self, data):
        self._chat_received = getattr(self, "_chat_received", 0) + len(data)
        if self._chat_received > getattr(self, "_chat_limit", max_body()):
            if not getattr(self, "_chat_refused", False):
                self._chat_refused = True
                refuse(self)
            return
        return original_chunk(self, data)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest._chat_body_limit = True
