"""A small production set-up on loopback for the fault tests: its own Redis, a TCP proxy in
front of the test database (so the database can be cut), N Daphne workers started with
deploy/worker, and nginx with deploy/nginx/'s configuration in front of them.

Every process is a child of the test started through the process harness (harness/), on
spare loopback ports, and is stopped on exit;
nothing here touches the machine's shared Redis or PostgreSQL beyond the test database.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import harness
from harness import Nginx, Process, nginx_binary, rss_bytes  # noqa: F401  (faults.py and tests import them here)
from tests.servers import ROOT, test_database_url


class Redis(Process):
    """A private redis-server that keeps nothing on disk: a restart comes back empty."""

    def __init__(self, log_dir: Path):
        argv = lambda port: ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",  # noqa: E731
                             "--appendonly", "no", "--dir", str(log_dir), "--daemonize", "no"]
        super().__init__(harness.Config("command", command=argv, health=None, name="redis"), log_dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "Redis":
        super().start()
        harness.wait_for(self.ping, 10, "redis")
        return self

    def ping(self) -> bool:
        try:
            return self.client(timeout=1).ping()
        except Exception:
            return False

    def client(self, timeout: float = 2):
        import redis

        return redis.Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)


class DatabaseProxy(Process):
    """tests/faults/tcpproxy.py in front of the test database (PostgreSQL only)."""

    def __init__(self, target: tuple[str, int], log_dir: Path):
        argv = lambda port: [sys.executable, "-m", "tests.faults.tcpproxy", str(port), target[0], str(target[1])]  # noqa: E731
        super().__init__(harness.Config("command", command=argv, cwd=ROOT, health=None, name="dbproxy"), log_dir)

    def cut(self) -> None:
        self.signal(signal.SIGUSR1)

    def freeze(self) -> None:
        """Connections stay open, nothing passes: the database "hangs"."""
        self.signal(signal.SIGHUP)

    def restore(self) -> None:
        """Listen again (after cut) and pass data on again (after freeze)."""
        self.signal(signal.SIGUSR2)


@dataclass
class Cluster:
    redis: Redis
    db_proxy: DatabaseProxy | None
    workers: list[Process]
    nginx: Nginx
    log_dir: Path

    def worker_env(self) -> dict:
        return self.workers[0].config.environment()

    def restart_worker(self, worker: Process) -> None:
        worker.start().wait_healthy()


def _database_url_via(proxy_port: int) -> str:
    parts = urlsplit(test_database_url())
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{proxy_port}"))


@contextmanager
def cluster(log_dir: Path, *, workers: int = 2, extra_env: dict | None = None):
    """Start Redis, the database proxy (PostgreSQL), N workers and nginx; stop them all after."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list = []
    try:
        redis = Redis(log_dir).start()
        started.append(redis)
        database_url = test_database_url()
        db_proxy = None
        if database_url.startswith("postgres"):
            parts = urlsplit(database_url)
            db_proxy = DatabaseProxy((parts.hostname or "127.0.0.1", parts.port or 5432), log_dir)
            started.append(db_proxy.start().wait_healthy())
            database_url = _database_url_via(db_proxy.port)
        config = harness.Config(
            "worker",
            database_url=database_url,
            redis_url=redis.url,
            env={
                "DJANGO_SETTINGS_MODULE": "chatproject.settings",
                "CHAT_POST_RATE": "0",
                "DJANGO_LOG_LEVEL": "WARNING",
                # As in production: DEBUG keeps every query's SQL per connection (memory checks).
                "DJANGO_DEBUG": "0",
                "CHAT_TEST_DB_NAME": None,
                **(extra_env or {}),
            },
        )
        pool = harness.start(workers, config, log_dir=log_dir)
        started += pool
        nginx = Nginx(pool, log_dir).start()
        started.append(nginx)
        yield Cluster(redis, db_proxy, pool, nginx, log_dir)
    finally:
        for part in reversed(started):
            part.stop(20)  # a worker drains for up to CHAT_SHUTDOWN_TIMEOUT (10 s)
