"""The servers bench/fanout.py measures, each a subprocess on 127.0.0.1, and the project's database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from loadgen import Target

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # the process harness (harness/), a top-level package of this checkout
import harness  # noqa: E402

PY = sys.executable
PROJECT = ROOT  # the project under test; --project points elsewhere (a snapshot of a commit)
ASGI_SERVER = "daphne"  # the project's server; --asgi uvicorn tries another
PROJECT_ENV = {
    "DJANGO_SETTINGS_MODULE": "chatproject.settings",
    "CHAT_POST_RATE": "0",  # PROTOCOL.md 1: "0 turns it off, for imports and load tests"
    # The per-socket frame budget (50/s) would refuse a sender above 50 messages/s; the
    # benchmark's few senders go faster than any person, so the budget is raised, not removed.
    "CHAT_FRAME_RATE": "100000",
    "CHAT_FRAME_BURST": "100000",
    "CHAT_MAX_CONNECTIONS": "0",  # the memory step opens 10,000 and more
    "DJANGO_DEBUG": "false",
    "DJANGO_LOG_LEVEL": "WARNING",
}


def uvicorn_flags() -> list[str]:
    """uvicorn as deploy/worker starts it (CHAT_SERVER=uvicorn), less pings and proxy."""
    # The project's protocol class where the measured checkout has it (an older commit: uvicorn's own).
    sources = [PROJECT / "chat" / "serving.py", PROJECT / "chat" / "serving" / "uvicorn.py"]
    ours = any(p.exists() and "class WebSocketProtocol" in p.read_text() for p in sources)
    ws = "chat.serving:WebSocketProtocol" if ours else "websockets-sansio"
    return ["--ws", ws, "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
            "--ws-per-message-deflate", "false", "--no-access-log", "--log-level", "warning"]


def config(kind: str, out: Path, *, db_url: str | None = None, redis_url: str | None = None,
           asgi: str | None = None, wrap: list[str] = (), name: str | None = None) -> harness.Config:
    """The harness config of one server: ``kind`` "bare" (bench/reference/bare_ws.py),
    "tutorial" (the Channels tutorial) or a project kind (the project at PROJECT on
    ``db_url``); ``redis_url``: channels-redis at that URL instead of the in-memory layer."""
    name = name or f"server-{kind}"
    if kind == "bare":
        return harness.Config("command", command=lambda port: [PY, str(BENCH / "reference" / "bare_ws.py"), str(port)],
                              wrap=wrap, health=None, settle=0.5, start_timeout=60, name=name)
    if kind == "tutorial":
        env = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "TUTORIAL_DB": str(out / "tutorial.sqlite3")}
        if redis_url:
            env["TUTORIAL_REDIS_URL"] = redis_url
        return harness.Config("daphne", app="mysite.asgi:application", cwd=BENCH / "reference" / "tutorial", env=env,
                              wrap=wrap, health=None, settle=1.0, start_timeout=60, name=name)
    server = asgi or ASGI_SERVER
    return harness.Config(
        server, flags=uvicorn_flags() if server == "uvicorn" else [], cwd=PROJECT, wrap=wrap, start_timeout=60, name=name,
        # One process: the in-memory layer; several: channels-redis.
        database_url=db_url, env={**PROJECT_ENV, "REDIS_URL": redis_url or None},
    )


class Server:
    def __init__(self, kind: str, out: Path, *, db_url: str | None = None, tokens: list[str] | None = None,
                 profile: Path | None = None, redis_url: str | None = None, log_name: str | None = None,
                 asgi: str | None = None):
        """One server of ``kind`` (see config()), started and ready; ``log_name`` names its
        log in ``out``; ``profile``: run it under py-spy, which writes that file."""
        self.kind = kind
        wrap = []
        if profile is not None:
            # py-spy starts the server (attaching to a running pyenv Python fails here) and
            # samples without stopping it (--nonblocking), every thread, idle ones too.
            spy = str(Path(PY).parent / "py-spy")
            wrap = [spy, "record", "--nonblocking", "--threads", "--idle", "-r", "200", "-f", "raw", "-o", str(profile), "--"]
        name = log_name.removesuffix(".log") if log_name else None
        self.process = harness.Process(config(kind, out, db_url=db_url, redis_url=redis_url, asgi=asgi, wrap=wrap,
                                              name=name), out)
        self.port, self.log = self.process.port, self.process.log
        self.process.start()
        pid = self._child_pid() if profile is not None else self.process.pid
        self.target = Target(kind="bare" if kind == "bare" else "tutorial" if kind == "tutorial" else "project",
                             port=self.port, pid=pid, tokens=tokens or [])
        self.process.wait_healthy()

    def _child_pid(self) -> int:
        deadline = time.monotonic() + 10
        pid = self.process.pid
        while time.monotonic() < deadline:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise RuntimeError("py-spy started no server")

    def stop(self) -> None:
        if self.target.pid != self.process.pid:  # under py-spy: stop the server, py-spy writes its file
            os.kill(self.target.pid, 15)
            try:
                self.process.process.wait(30)
                return
            except subprocess.TimeoutExpired:
                pass
        self.process.stop()


# --- databases -----------------------------------------------------------------------------


def prepare_database(kind: str, out: Path, pg_url: str, users: int, rooms: int) -> tuple[str, dict]:
    """A fresh database for the project, migrated, with users, tokens and rooms."""
    if kind == "sqlite":
        path = out / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        import psycopg

        base, name = pg_url.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = pg_url
    env = {**os.environ, **PROJECT_ENV, "DATABASE_URL": url}
    done = subprocess.run(
        [PY, str(BENCH / "project_setup.py"), "--users", str(users), "--rooms", str(rooms), "--project", str(PROJECT)],
        cwd=PROJECT, env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode:
        raise RuntimeError(f"project_setup failed: {done.stderr[-3000:]}")
    return url, json.loads(done.stdout)





def describe_project() -> str:
    """The commit under test, and whether its tree has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "chat", "chatproject"], cwd=PROJECT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"commit {sha}" + (" with uncommitted changes" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        marker = PROJECT / "COMMIT"
        return f"commit {marker.read_text().strip()}" if marker.exists() else f"project at {PROJECT}"
