"""Real server processes (Daphne, or uvicorn) on the test database, for tests that cross
processes: the harness (harness/) with the test database's URL and the tests' defaults."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

import harness
from harness import ROOT, free_port  # noqa: F401  (tests import them from here)

Server = harness.Process


def test_database_url() -> str:
    """A DATABASE_URL naming the database the tests run on (pytest-django's test database)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return f"postgres://{settings['USER']}{password}@{host}:{port}/{settings['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def config(
    *, redis_url: str | None, extra_env: dict | None = None, server: str | None = None, extra_flags=()
) -> harness.Config:
    """``server`` ("daphne" or "uvicorn"; default: CHAT_SERVER, else daphne) with the flags
    ./run and deploy/worker use, on the test database, posting unlimited; ``redis_url`` None
    keeps the configured layer. ``extra_env`` and ``extra_flags`` win over the defaults."""
    name = server or os.environ.get("CHAT_SERVER") or "daphne"
    flags = harness.DAPHNE_FLAGS if name == "daphne" else harness.UVICORN_FLAGS
    return harness.Config(
        name,
        flags=[*flags, *extra_flags],
        database_url=test_database_url(),
        redis_url=redis_url,
        env={"DJANGO_SETTINGS_MODULE": "chatproject.settings", "CHAT_POST_RATE": "0", **(extra_env or {})},
    )


def start_server(
    *, redis_url: str | None, log_dir: Path, extra_env: dict | None = None, port: int | None = None,
    server: str | None = None, extra_flags=(),
) -> Server:
    """One server (see config()) on ``port`` (default: a free one), once healthy."""
    cfg = config(redis_url=redis_url, extra_env=extra_env, server=server, extra_flags=extra_flags)
    return harness.Process(cfg, log_dir, port).start().wait_healthy()


@contextmanager
def servers(
    count: int, *, redis_url: str | None, log_dir: Path, extra_env: dict | None = None, server: str | None = None,
    extra_flags=(),
):
    """``count`` servers (see config()), started at once; stopped (SIGTERM, then SIGKILL) after."""
    cfg = config(redis_url=redis_url, extra_env=extra_env, server=server, extra_flags=extra_flags)
    with harness.running(count, cfg, log_dir=log_dir) as started:
        yield started


def tasks_worker_config(*, extra_env: dict | None = None) -> harness.Config:
    """``manage.py db_worker`` (the tasks worker ./run and deploy/worker start) on the test
    database, polling every 0.1 s; ``extra_env`` wins over the defaults."""
    return harness.Config(
        "command",
        command=lambda _port: [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay",
                               "--interval", "0.1", "-v", "2"],
        database_url=test_database_url(),
        env={"DJANGO_SETTINGS_MODULE": "chatproject.settings", **(extra_env or {})},
        health=None,
        name="tasks",
    )


def start_tasks_worker(*, log_dir: Path, extra_env: dict | None = None) -> Server:
    """One tasks worker (see tasks_worker_config()), once it polls for tasks; stop() it after."""
    worker = harness.Process(tasks_worker_config(extra_env=extra_env), log_dir).start()

    def polling() -> bool:
        if not worker.alive():
            raise RuntimeError(f"the tasks worker exited: {worker.log_text()}")
        return "Starting worker" in worker.log_text()

    harness.wait_for(polling, 30, "the tasks worker")
    return worker


async def sigterm_drain(server: Server, sockets) -> tuple[list[int | None], bool, int, float]:
    """SIGTERM ``server`` with ``sockets`` open; return the close code each socket got, whether
    a new connection was refused afterwards, the exit code, and the seconds it all took."""
    import websockets

    started = time.monotonic()
    server.terminate()
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
