"""chat/bodylimit.py: a request body over its cap is refused with 413 while it is received."""

from __future__ import annotations

import json

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from chat import protocol
from chat.bodylimit import UPLOAD_OVERHEAD, BodyLimitMiddleware, body_limit

CHUNK = 64 * 1024
LIMIT = 1024 * 1024


def http_scope(path: str = "/api/v1/rooms/general/uploads/", headers=()) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class Client:
    """An ASGI client that sends an endless body (a 2 GB upload) and records what comes back."""

    def __init__(self, total: int | None = None):
        self.total = total
        self.pulled = 0
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        self.pulled += 1
        if self.total is None:
            return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}
        body, self.total = b"x" * min(CHUNK, self.total), max(0, self.total - CHUNK)
        return {"type": "http.request", "body": body, "more_body": self.total > 0}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def responses(self) -> list[dict]:
        return [m for m in self.sent if m["type"] == "http.response.start"]

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def test_django_stops_reading_an_endless_body_once_it_passes_the_cap():
    """Django itself (ASGIHandler) behind the middleware: one 413 response, a bounded read."""
    client = Client()
    await BodyLimitMiddleware(ASGIHandler(), limit_for=lambda scope: LIMIT)(http_scope(), client.receive, client.send)
    assert [r["status"] for r in client.responses()] == [413]
    assert json.loads(client.body())["code"] == protocol.TOO_LARGE
    assert client.pulled == LIMIT // CHUNK + 1  # the chunk that passed the cap was the last one read


async def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read():
    client = Client()
    headers = [(b"content-length", str(2 * 1024**3).encode())]
    await BodyLimitMiddleware(ASGIHandler(), limit_for=lambda scope: LIMIT)(
        http_scope(headers=headers), client.receive, client.send
    )
    assert [r["status"] for r in client.responses()] == [413]
    assert client.pulled == 0


async def echo_length(scope, receive, send):
    """An application that reads the whole body and answers its length."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def test_a_body_within_the_cap_reaches_the_application_whole():
    client = Client(total=LIMIT)
    await BodyLimitMiddleware(echo_length, limit_for=lambda scope: LIMIT)(http_scope(), client.receive, client.send)
    assert [r["status"] for r in client.responses()] == [200]
    assert client.body() == str(LIMIT).encode()


async def test_other_scopes_pass_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], await receive()))

    async def receive():
        return {"type": "websocket.connect"}

    await BodyLimitMiddleware(app, limit_for=lambda scope: 0)({"type": "websocket"}, receive, None)
    assert seen == [("websocket", {"type": "websocket.connect"})]


@override_settings(CHAT_MAX_UPLOAD=5_000_000, CHAT_MAX_BODY=100_000)
@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/api/v1/rooms/general/uploads/", 5_000_000 + UPLOAD_OVERHEAD),
        ("/api/v1/rooms/general/messages/", 100_000),
        ("/api/v1/rooms/general/uploads/x/", 100_000),
        ("/accounts/login/", 100_000),
    ],
)
def test_uploads_have_their_own_cap(path, limit):
    assert body_limit(http_scope(path)) == limit
