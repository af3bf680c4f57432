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
    """A private redis-server that keeps nothing on disk: a restart comes back empty.
    ``replica_of``: the port of the primary it replicates."""

    def __init__(self, log_dir: Path, *, name: str = "redis", replica_of: int | None = None):
        def argv(port: int) -> list[str]:
            replica = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
            return ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                    "--dir", str(log_dir), "--daemonize", "no", *replica]

        super().__init__(harness.Config("command", command=argv, health=None, name=name), log_dir)

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


SENTINEL_MASTER = "chat"


class Sentinel(Process):
    """``redis-server --sentinel`` watching the primary on ``primary_port``: it is down after
    1 s without an answer, and two of three sentinels agreeing start a failover."""

    def __init__(self, log_dir: Path, primary_port: int):
        def argv(port: int) -> list[str]:
            conf = Path(log_dir) / f"sentinel-{port}.conf"  # the sentinel rewrites it: its own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {log_dir}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
                f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
            )
            return ["redis-server", str(conf), "--sentinel"]

        super().__init__(harness.Config("command", command=argv, health=None, name="sentinel"), log_dir)

    def primary_port(self) -> int | None:
        import redis

        try:
            address = redis.Redis(port=self.port, socket_timeout=1).sentinel_get_master_addr_by_name(SENTINEL_MASTER)
        except Exception:
            return None
        return int(address[1]) if address else None


def _redis_topology(kind: str, log_dir: Path, started: list) -> str:
    """Start the cluster's Redis: "single" (one server), "shards" (two servers, the channel
    layer hashing over both) or "sentinel" (a primary, a replica and three sentinels).
    Appends every process to ``started`` as it starts (the primary or first shard first);
    returns the REDIS_URL the workers get."""
    if kind == "single":
        started.append(Redis(log_dir).start())
        return started[-1].url
    if kind == "shards":
        for i in range(2):
            started.append(Redis(log_dir, name=f"redis-shard{i}").start())
        return ",".join(s.url for s in started[-2:])
    if kind == "sentinel":
        primary = Redis(log_dir, name="redis-primary").start()
        started.append(primary)
        replica = Redis(log_dir, name="redis-replica", replica_of=primary.port).start()
        started.append(replica)
        harness.wait_for(lambda: replica.client().info("replication").get("master_link_status") == "up", 10, "replication")
        sentinels = [Sentinel(log_dir, primary.port) for _ in range(3)]
        for sentinel in sentinels:
            started.append(sentinel.start().wait_healthy())
        # Every sentinel knows the replica and the other sentinels before the fault.
        harness.wait_for(lambda: all(_sentinel_ready(s) for s in sentinels), 20, "sentinels to see each other")
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
        return f"redis+sentinel://{hosts}/{SENTINEL_MASTER}/0"
    raise ValueError(f"unknown Redis topology {kind!r}")


def _sentinel_ready(sentinel: Sentinel) -> bool:
    import redis

    try:
        master = redis.Redis(port=sentinel.port, socket_timeout=1).sentinel_master(SENTINEL_MASTER)
    except Exception:
        return False
    return int(master.get("num-slaves", 0)) >= 1 and int(master.get("num-other-sentinels", 0)) >= 2


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
    redis: Redis  # the primary, or the first shard
    db_proxy: DatabaseProxy | None
    workers: list[Process]
    nginx: Nginx
    log_dir: Path
    redis_parts: list[Process]  # every Redis process: shards, or primary, replica, sentinels
    redis_url: str

    def worker_env(self) -> dict:
        return self.workers[0].config.environment()

    def restart_worker(self, worker: Process) -> None:
        worker.start().wait_healthy()


def _database_url_via(proxy_port: int) -> str:
    parts = urlsplit(test_database_url())
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{proxy_port}"))


@contextmanager
def cluster(log_dir: Path, *, workers: int = 2, extra_env: dict | None = None, redis: str = "single"):
    """Start Redis (``redis``: see _redis_topology), the database proxy (PostgreSQL), N
    workers and nginx; stop them all after."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list = []
    try:
        redis_url = _redis_topology(redis, log_dir, started)
        redis_parts = list(started)
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
            redis_url=redis_url,
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
        yield Cluster(redis_parts[0], db_proxy, pool, nginx, log_dir, redis_parts, redis_url)
    finally:
        for part in reversed(started):
            part.stop(20)  # a worker drains for up to CHAT_SHUTDOWN_TIMEOUT (10 s)
