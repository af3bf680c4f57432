"""Real server processes (Daphne, or uvicorn) on the test database, for tests that cross processes."""

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
DAPHNE_FLAGS = ["--ping-interval", "10", "--ping-timeout", "15", "--websocket-max-message-size", "262144", "--websocket-max-frame-size", "262144"]
# As deploy/worker starts uvicorn (less the proxy flags: the tests connect directly).
UVICORN_FLAGS = [
    "--loop", "uvloop", "--http", "httptools", "--ws", "chat.serving:WebSocketProtocol", "--lifespan", "off",
    "--ws-ping-interval", "10", "--ws-ping-timeout", "15", "--ws-max-size", "262144",
    "--ws-per-message-deflate", "false", "--timeout-keep-alive", "75", "--timeout-graceful-shutdown", "5",
    "--no-access-log",
]


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


def server_command(server: str, port: int, extra_flags: list[str] = ()) -> list[str]:
    """The command line of ``server`` ("daphne" or "uvicorn") on 127.0.0.1:``port``;
    ``extra_flags`` come after the defaults, so they override them."""
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *DAPHNE_FLAGS, *extra_flags, "chatproject.asgi:application"]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS, *extra_flags, "chatproject.asgi:application"]
    raise ValueError(f"unknown server {server!r}")


def start_server(
    *,
    redis_url: str | None,
    log_dir: Path,
    extra_env: dict | None = None,
    port: int | None = None,
    server: str | None = None,
    extra_flags: list[str] = (),
) -> Server:
    """Start ``server`` ("daphne" or "uvicorn"; default: CHAT_SERVER, else daphne) on the
    test database; ``redis_url`` None keeps the configured layer."""
    name = server or os.environ.get("CHAT_SERVER") or "daphne"
    port = port or free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DATABASE_URL": test_database_url(),
        "CHAT_POST_RATE": "0",
        **({"REDIS_URL": redis_url} if redis_url else {}),
        **(extra_env or {}),
    }
    log = log_dir / f"{name}-{port}.log"
    process = subprocess.Popen(
        server_command(name, port, list(extra_flags)),
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = Server(port, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.http}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{name} did not become healthy: {log.read_text()[-2000:]}")


@contextmanager
def servers(
    count: int, *, redis_url: str | None, log_dir: Path, extra_env: dict | None = None, server: str | None = None,
    extra_flags: list[str] = (),
):
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(
                start_server(redis_url=redis_url, log_dir=log_dir, extra_env=extra_env, server=server, extra_flags=extra_flags)
            )
        yield started
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()


async def sigterm_drain(server: Server, sockets) -> tuple[list[int | None], bool, int, float]:
    """SIGTERM ``server`` with ``sockets`` open; return the close code each socket got, whether
    a new connection was refused afterwards, the exit code, and the seconds it all took."""
    import asyncio

    import websockets

    started = time.monotonic()
    server.process.send_signal(15)
    codes = []
    for ws in sockets:
        try:
            while True:  # presence frames may come first
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as closed:
            codes.append(closed.rcvd.code if closed.rcvd is not None else None)
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    returncode = await asyncio.to_thread(server.process.wait, 15)
    return codes, refused, returncode, time.monotonic() - started
