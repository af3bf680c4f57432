"""ASGI middleware that caps every HTTP request body while it is received (PROTOCOL.md 3 and 8).

Django's ASGIHandler reads a request's whole body (into a SpooledTemporaryFile) before any
middleware, view or upload handler runs, so a cap checked there comes after a 2 GB upload
has been received and written to disk. This middleware sits in front of Django: a declared
``Content-Length`` over the cap is refused before the body is read at all, and a body
without one (chunked) is refused by the first message that passes it. The refusal is 413
``{"code": "too_large"}``; Django is then told the client went away (``http.disconnect``),
so it stops reading and sends nothing. Uploads (``POST /api/v1/rooms/<slug>/uploads/``) get
CHAT_MAX_UPLOAD plus room for the multipart framing; everything else CHAT_MAX_BODY.
chat.files.uploadhandler applies the exact per-file cap behind it.

Wire it as ``"http": BodyLimitMiddleware(django_asgi_app)`` in chatproject/asgi.py, and keep
nginx's ``client_max_body_size`` at the same figure so oversized bodies stop at the proxy.
"""

from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable

from django.conf import settings

from . import protocol
from .files.uploadhandler import max_upload

DEFAULT_MAX_BODY = 1024 * 1024
# The multipart boundaries and part headers around the one file of an upload, and a few
# small fields beside it.
UPLOAD_OVERHEAD = 64 * 1024
UPLOAD_PATH = re.compile(r"/api/v1/rooms/[^/]+/uploads/")

Scope = dict[str, Any]
Message = dict[str, Any]


def body_limit(scope: Scope) -> int:
    """The largest body, in bytes, the HTTP request of ``scope`` may send."""
    if UPLOAD_PATH.fullmatch(scope.get("path", "")):
        return max_upload() + UPLOAD_OVERHEAD
    return getattr(settings, "CHAT_MAX_BODY", DEFAULT_MAX_BODY)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(send: Callable[[Message], Awaitable[None]], limit: int) -> None:
    body = json.dumps(
        {"detail": f"Request bodies here are limited to {limit} bytes.", "code": protocol.TOO_LARGE}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Answer 413 `too_large` to an HTTP request whose body passes ``limit_for(scope)`` bytes."""

    def __init__(self, app, limit_for: Callable[[Scope], int] = body_limit):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0
        refused = False
        started = False

        async def capped_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the refusal is the response; the application's is dropped
            started = True
            await send(message)

        await self.app(scope, capped_receive, guarded_send)
