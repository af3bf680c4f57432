"""The servers bench/fanout.py measures, each a subprocess on 127.0.0.1, and the project's database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from loadgen import Target

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
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
    "DJANGO_DEBUG": "false",
    "DJANGO_LOG_LEVEL": "WARNING",
}

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daphne(app: str, port: int) -> list[str]:
    return [PY, "-m", "daphne", "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=1024", app]


def uvicorn(port: int) -> list[str]:
    """The project under uvicorn as deploy/worker starts it (CHAT_SERVER=uvicorn), less pings and proxy."""
    # The project's protocol class where the measured checkout has it (an older commit: uvicorn's own).
    sources = [PROJECT / "chat" / "serving.py", PROJECT / "chat" / "serving" / "uvicorn.py"]
    ours = any(p.exists() and "class WebSocketProtocol" in p.read_text() for p in sources)
    ws = "chat.serving:WebSocketProtocol" if ours else "websockets-sansio"
    return [PY, "-m", "uvicorn", "chatproject.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--ws", ws, "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--backlog", "1024",
            "--ws-per-message-deflate", "false", "--no-access-log", "--log-level", "warning"]


class Server:
    def __init__(self, kind: str, out: Path, *, db_url: str | None = None, tokens: list[str] | None = None,
                 profile: Path | None = None, redis_url: str | None = None, log_name: str | None = None,
                 asgi: str | None = None):
        """``redis_url`` (bench/scaleout.py): the project, or the tutorial, on channels-redis at
        that URL instead of the in-memory layer; ``log_name`` names the log file in ``out``;
        ``asgi`` the project's server (default ASGI_SERVER)."""
        self.kind = kind
        self.port = free_port()
        env = {**os.environ}
        if kind == "bare":
            cmd, cwd = [PY, str(BENCH / "reference" / "bare_ws.py"), str(self.port)], ROOT
        elif kind == "tutorial":
            cwd = BENCH / "reference" / "tutorial"
            cmd = daphne("mysite.asgi:application", self.port)
            env.update(DJANGO_SETTINGS_MODULE="mysite.settings", TUTORIAL_DB=str(out / "tutorial.sqlite3"))
            if redis_url:
                env["TUTORIAL_REDIS_URL"] = redis_url
        else:
            cwd = PROJECT
            if (asgi or ASGI_SERVER) == "uvicorn":
                cmd = uvicorn(self.port)
            else:
                cmd = daphne("chatproject.asgi:application", self.port)
            env.update(PROJECT_ENV, DATABASE_URL=db_url)
            env.pop("REDIS_URL", None)  # one process: the in-memory layer
            if redis_url:
                env["REDIS_URL"] = redis_url  # several processes: channels-redis
        if profile is not None:
            # py-spy starts the server (attaching to a running pyenv Python fails here) and
            # samples without stopping it (--nonblocking), every thread, idle ones too.
            spy = str(Path(PY).parent / "py-spy")
            cmd = [spy, "record", "--nonblocking", "--threads", "--idle", "-r", "200", "-f", "raw", "-o", str(profile),
                   "--", *cmd]
        self.log = out / (log_name or f"server-{kind}.log")
        self.process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        pid = self.process.pid
        if profile is not None:
            pid = self._child_pid()
        self.target = Target(kind="bare" if kind == "bare" else "tutorial" if kind == "tutorial" else "project",
                             port=self.port, pid=pid, tokens=tokens or [])
        self._wait_ready()

    def _child_pid(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise RuntimeError("py-spy started no server")

    def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.port}/healthz"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
            try:
                if self.target.kind == "project":
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            return
                else:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        time.sleep(0.5 if self.kind == "bare" else 1.0)
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.target.pid != self.process.pid:  # under py-spy: stop the server, py-spy writes its file
            os.kill(self.target.pid, 15)
            try:
                self.process.wait(30)
                return
            except subprocess.TimeoutExpired:
                pass
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
