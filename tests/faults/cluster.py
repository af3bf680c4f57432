"""A small production set-up on loopback for the fault tests: its own Redis, a TCP proxy in
front of the test database (so the database can be cut), N Daphne workers started with
deploy/worker, and nginx with deploy/nginx/'s configuration in front of them.

Every process is a child of the test, on spare loopback ports, and is stopped on exit;
nothing here touches the machine's shared Redis or PostgreSQL beyond the test database.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.servers import ROOT, free_port, test_database_url

DEPLOY = ROOT / "deploy"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def _wait(predicate, timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise RuntimeError(f"timed out waiting for {what}")


def _stop(process: subprocess.Popen | None, timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Redis:
    """A private redis-server that keeps nothing on disk: a restart comes back empty."""

    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.log_dir / f"redis-{self.port}.log").open("a")
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.log_dir), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        _wait(self.ping, 10, "redis")

    def ping(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1).ping()
        except Exception:
            return False

    def stop(self) -> None:
        _stop(self.process)

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)


@dataclass
class DatabaseProxy:
    """tests/faults/tcpproxy.py in front of the test database (PostgreSQL only)."""

    target: tuple[str, int]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.log_dir / "dbproxy.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.tcpproxy", str(self.port), self.target[0], str(self.target[1])],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def cut(self) -> None:
        self.process.send_signal(signal.SIGUSR1)

    def restore(self) -> None:
        self.process.send_signal(signal.SIGUSR2)

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class Worker:
    port: int
    env: dict
    log_dir: Path
    process: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.log_dir / f"worker-{self.port}.log").open("a")
        self.process = subprocess.Popen(
            [str(DEPLOY / "worker"), str(self.port)], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def wait_healthy(self, timeout: float = 30) -> None:
        def healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {(self.log_dir / f'worker-{self.port}.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.http}/healthz", timeout=3) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait(healthy, timeout, f"worker {self.port}", poll=0.2)

    def metrics(self) -> dict[str, float]:
        """This worker's /metrics as {"name{labels}": value} (it answers loopback)."""
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=3) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self) -> None:
        self.process.terminate()

    def stop(self) -> None:
        _stop(self.process, timeout=20)


@dataclass
class Nginx:
    upstreams: list[int]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def config(self) -> str:
        prefix = self.log_dir / "nginx"
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in self.upstreams)
        temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temp}
    include {DEPLOY}/nginx/chat-http.conf;
    upstream chat_workers {{
        least_conn;
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        include {DEPLOY}/nginx/chat-proxy.conf;
    }}
}}
"""

    def start(self) -> None:
        prefix = self.log_dir / "nginx"
        prefix.mkdir(exist_ok=True)
        prefix.chmod(0o777)
        conf = prefix / "nginx.conf"
        conf.write_text(self.config())
        binary = nginx_binary()
        check = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx configuration: {check.stderr}")
        self.process = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=(prefix / "stdout.log").open("w"), stderr=subprocess.STDOUT,
        )

        def up():
            try:
                with urllib.request.urlopen(f"{self.http}/healthz", timeout=3) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait(up, 15, "nginx")

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class Cluster:
    redis: Redis
    db_proxy: DatabaseProxy | None
    workers: list[Worker]
    nginx: Nginx
    log_dir: Path

    def worker_env(self) -> dict:
        return self.workers[0].env

    def restart_worker(self, worker: Worker) -> None:
        worker.start()
        worker.wait_healthy()


def _database_url_via(proxy_port: int) -> str:
    parts = urlsplit(test_database_url())
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{proxy_port}"))


@contextmanager
def cluster(log_dir: Path, *, workers: int = 2, extra_env: dict | None = None):
    """Start Redis, the database proxy (PostgreSQL), N workers and nginx; stop them all after."""
    log_dir.mkdir(parents=True, exist_ok=True)
    redis = Redis(log_dir)
    db_proxy = None
    started: list = []
    try:
        redis.start()
        started.append(redis)
        database_url = test_database_url()
        if database_url.startswith("postgres"):
            parts = urlsplit(database_url)
            db_proxy = DatabaseProxy((parts.hostname or "127.0.0.1", parts.port or 5432), log_dir)
            db_proxy.start()
            started.append(db_proxy)
            database_url = _database_url_via(db_proxy.port)
        env = {
            **os.environ,
            "PYTHON": sys.executable,
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "CHAT_POST_RATE": "0",
            "DJANGO_LOG_LEVEL": "WARNING",
            # As in production: DEBUG keeps every query's SQL per connection (memory checks).
            "DJANGO_DEBUG": "0",
            **(extra_env or {}),
        }
        env.pop("CHAT_TEST_DB_NAME", None)
        pool = [Worker(free_port(), env, log_dir) for _ in range(workers)]
        for worker in pool:
            worker.start()
            started.append(worker)
        for worker in pool:
            worker.wait_healthy()
        nginx = Nginx([w.port for w in pool], log_dir)
        nginx.start()
        started.append(nginx)
        yield Cluster(redis, db_proxy, pool, nginx, log_dir)
    finally:
        for part in reversed(started):
            part.stop()
