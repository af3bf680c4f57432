"""Real Daphne server processes on the test database, for tests that cross processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# As ./run starts Daphne: a socket that stops answering pings is dropped within 25 s.
DAPHNE_FLAGS = ["--ping-interval", "10", "--ping-timeout", "15"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL naming the database the tests run on (pytest-django's test database)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return f"postgres://{settings['USER']}{password}@{host}:{port}/{settings['NAME']}"


class Server:
    def __init__(self, port: int, process: subprocess.Popen, log: Path):
        self.port = port
        self.process = process
        self.log = log

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_server(*, redis_url: str | None, log_dir: Path, extra_env: dict | None = None, port: int | None = None) -> Server:
    """Start Daphne on the test database; ``redis_url`` None keeps the configured layer."""
    port = port or free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DATABASE_URL": test_database_url(),
        "CHAT_POST_RATE": "0",
        **({"REDIS_URL": redis_url} if redis_url else {}),
        **(extra_env or {}),
    }
    log = log_dir / f"daphne-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *DAPHNE_FLAGS, "chatproject.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = Server(port, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.http}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"daphne did not become healthy: {log.read_text()[-2000:]}")


@contextmanager
def servers(count: int, *, redis_url: str, log_dir: Path, extra_env: dict | None = None):
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(start_server(redis_url=redis_url, log_dir=log_dir, extra_env=extra_env))
        yield started
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()
