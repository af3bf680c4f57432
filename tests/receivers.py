"""A real HTTP receiver for outgoing webhooks: http.server in a thread on 127.0.0.1, port 0.

It keeps every request (path, headers, raw body) and answers from a script: a list of
answers used one per request (an int status, ``("redirect", status, location)``, or
``("sleep", seconds)`` to hang), then ``default`` for ever after. ``on_request``, if set, is
called with each request before it is answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None = None

    @property
    def frame(self) -> dict:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        """Whether X-Chat-Signature is the HMAC-SHA256 of the raw body with ``secret``."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Chat-Signature", ""), expected)


@dataclass
class Receiver:
    script: list = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    on_request: object = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in the order they came."""
        with self.lock:
            return [r for r in self.received if r.answered is not None and 200 <= r.answered < 300]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def _next_answer(self):
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                record = Received(self.path, {k: v for k, v in self.headers.items()}, body)
                if receiver.on_request is not None:
                    receiver.on_request(record)
                answer = receiver._next_answer()
                status, location = answer, None
                if isinstance(answer, tuple) and answer[0] == "sleep":
                    with receiver.lock:
                        receiver.received.append(record)
                    time.sleep(answer[1])
                    return
                if isinstance(answer, tuple) and answer[0] == "redirect":
                    status, location = answer[1], answer[2]
                record.answered = status
                with receiver.lock:
                    receiver.received.append(record)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
