"""Server processes on loopback: start N on a config, wait until healthy, stop, kill, logs.

``Config`` says what to run: Daphne or uvicorn with the project's ASGI application, a worker
through deploy/worker (as systemd and the Procfile start it), or any other command (Redis,
a TCP proxy, a benchmark's reference server). ``Process`` is one of them on a free port with
a log file of its own; it can be started again on the same port. ``start()`` starts N at
once and waits until every one answers; ``running()`` also stops them afterwards.

Nothing here imports Django or the project. The database and Redis come from the caller
(``Config.database_url``/``redis_url``, ``Config.env``) or else from the environment the
caller runs in, so each pytest-xdist worker's servers use that worker's database and Redis
db. Ports are always free ones picked at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "chatproject.asgi:application"
BACKLOG = 1024  # pending connections per listening socket: a benchmark opens hundreds at once
# As ./run starts Daphne: a socket that stops answering pings is dropped within 25 s.
DAPHNE_FLAGS = (
    "--ping-interval", "10", "--ping-timeout", "15",
    "--websocket-max-message-size", "262144", "--websocket-max-frame-size", "262144",
)
# As deploy/worker starts uvicorn, less the proxy flags (clients connect directly).
UVICORN_FLAGS = (
    "--loop", "uvloop", "--http", "httptools", "--ws", "chat.serving:WebSocketProtocol", "--lifespan", "off",
    "--ws-ping-interval", "10", "--ws-ping-timeout", "15", "--ws-max-size", "262144",
    "--ws-per-message-deflate", "false", "--timeout-keep-alive", "75", "--timeout-graceful-shutdown", "5",
    "--no-access-log",
)
SERVERS = ("daphne", "uvicorn", "worker", "command")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Return once ``predicate()`` is true; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise RuntimeError(f"timed out waiting for {what}")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Config:
    """What one server process runs, and in which environment.

    ``server``: "daphne" or "uvicorn" (``app`` on 127.0.0.1, ``flags`` after the defaults so
    they win), "worker" (deploy/worker PORT ``flags``; CHAT_SERVER in ``env`` picks the
    server) or "command" (``command(port)`` is the whole argv). ``env`` goes over the
    caller's environment, a value of None removing the variable; ``database_url`` and
    ``redis_url``, when given, set DATABASE_URL and REDIS_URL (``env`` wins over them).
    ``health``: the path that answers 200 once the process is ready, or None for "accepts
    TCP connections"; ``settle``: seconds to wait after that. ``wrap``: a prefix of the
    argv (a profiler).
    """

    server: str = "daphne"
    flags: Sequence[str] = ()
    env: Mapping[str, str | None] = field(default_factory=dict)
    database_url: str | None = None
    redis_url: str | None = None
    cwd: Path = ROOT
    app: str = APP
    command: Callable[[int], list[str]] | None = None
    wrap: Sequence[str] = ()
    health: str | None = "/healthz"
    settle: float = 0.0
    start_timeout: float = 30.0
    name: str | None = None

    def __post_init__(self):
        if self.server not in SERVERS:
            raise ValueError(f"unknown server {self.server!r}: one of {', '.join(SERVERS)}")
        if self.server == "command" and self.command is None:
            raise ValueError('server="command" needs command=')

    def with_env(self, **env: str | None) -> "Config":
        """This config with ``env`` added to its environment."""
        return replace(self, env={**self.env, **env})

    def argv(self, port: int) -> list[str]:
        if self.server == "daphne":
            endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog={BACKLOG}"
            argv = [sys.executable, "-m", "daphne", "-e", endpoint, *self.flags, self.app]
        elif self.server == "uvicorn":
            argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                    "--backlog", str(BACKLOG), *self.flags, self.app]
        elif self.server == "worker":
            argv = [str(self.cwd / "deploy" / "worker"), str(port), *self.flags]
        else:
            argv = list(self.command(port))
        return [*self.wrap, *argv]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "PYTHON": sys.executable}  # PYTHON: the interpreter deploy/worker runs
        extra = {}
        if self.database_url is not None:
            extra["DATABASE_URL"] = self.database_url
        if self.redis_url is not None:
            extra["REDIS_URL"] = self.redis_url
        for key, value in {**extra, **self.env}.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


class Listening:
    """A local process listening on ``self.port``: its base URLs."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


class Process(Listening):
    """One process of ``config`` on ``port`` (default: a free one), logging to
    ``log_dir/<name>-<port>.log`` (appended to when started again)."""

    def __init__(self, config: Config, log_dir: Path, port: int | None = None):
        self.config = config
        self.port = port or free_port()
        self.name = config.name or config.server
        self.log = Path(log_dir) / f"{self.name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<Process {self.name} :{self.port} {state}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> "Process":
        """Start the process (again, on the same port, if it ran before); do not wait."""
        if self.alive():
            raise RuntimeError(f"{self!r} is already running")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.config.argv(self.port), cwd=self.config.cwd, env=self.config.environment(),
                stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def ready(self) -> bool:
        """True once the process answers its health check (or accepts connections)."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log_text()}")
        try:
            if self.config.health is None:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            with urllib.request.urlopen(f"{self.http}{self.config.health}", timeout=3) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float | None = None) -> "Process":
        """Return once ready (then wait ``config.settle``); RuntimeError, and the process
        killed, if it exits or is not ready within ``timeout`` (default: the config's)."""
        try:
            wait_for(self.ready, timeout or self.config.start_timeout, f"{self.name} on port {self.port}", poll=0.1)
        except RuntimeError as exc:
            self.kill()
            raise RuntimeError(f"{exc}\n{self.log_text()}") from None
        time.sleep(self.config.settle)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def terminate(self) -> None:
        """SIGTERM, without waiting (a graceful drain)."""
        self.signal(signal.SIGTERM)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM and wait up to ``timeout`` seconds, then SIGKILL; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL (a crash: no drain, no clean-up) and reap it."""
        if self.alive():
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)

    def log_text(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of the log."""
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def metrics(self) -> dict[str, float]:
        """The process's /metrics (Prometheus text) as {"name{labels}": value}."""
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=5) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


def start(count: int, config: Config, *, log_dir: Path, timeout: float | None = None) -> list[Process]:
    """Start ``count`` processes of ``config`` at once and wait until each is healthy; on any
    failure stop those started and raise."""
    processes: list[Process] = []
    try:
        for _ in range(count):
            processes.append(Process(config, log_dir).start())
        for process in processes:
            process.wait_healthy(timeout)
    except BaseException:
        stop(processes)
        raise
    return processes


def stop(processes: Sequence[Process], timeout: float = 10) -> None:
    """SIGTERM every process, then wait for each (SIGKILL after ``timeout`` seconds)."""
    for process in processes:
        if process.alive():
            process.terminate()
    for process in processes:
        process.stop(timeout)


@contextmanager
def running(count: int, config: Config, *, log_dir: Path, timeout: float | None = None):
    """``start()`` as a context: yields the processes and stops them all on the way out."""
    processes = start(count, config, log_dir=log_dir, timeout=timeout)
    try:
        yield processes
    finally:
        stop(processes)
