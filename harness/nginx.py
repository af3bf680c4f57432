"""nginx in front of server processes, with deploy/nginx/'s configuration (least_conn over
the given upstream ports), on a free loopback port, without TLS.

``per_port=True`` adds one more listening port per upstream (``ports[j]`` proxies to
``upstreams[j]`` only, with the same locations): a benchmark places each client on the
process it chooses, still through nginx."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .processes import ROOT, Listening, Process, free_port, wait_for

DEPLOY = ROOT / "deploy"


def nginx_binary() -> str | None:
    """The nginx executable, or None when this machine has none."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class Nginx(Listening):
    """nginx proxying to ``upstreams`` (ports on 127.0.0.1); its files under ``log_dir/nginx``."""

    def __init__(
        self, upstreams: Sequence[int | Process], log_dir: Path, port: int | None = None, media_root: Path | None = None,
        per_port: bool = False,
    ):
        self.upstreams = [u.port if isinstance(u, Process) else u for u in upstreams]
        self.prefix = Path(log_dir) / "nginx"
        self.port = port or free_port()
        self.ports = [free_port() for _ in self.upstreams] if per_port else []
        # The workers' CHAT_MEDIA_ROOT: chat-files.conf is included with its alias pointing there.
        self.media_root = media_root
        self.process: subprocess.Popen | None = None

    def files_conf(self) -> Path:
        """deploy/nginx/chat-files.conf as deployed, its one site path (the alias of the
        internal location, /srv/chat/media/) replaced by ``media_root``."""
        original = DEPLOY / "nginx" / "chat-files.conf"
        if self.media_root is None:
            return original
        text = original.read_text()
        assert text.count("alias /srv/chat/media/;") == 1, "chat-files.conf changed: update harness/nginx.py"
        copy = self.prefix / "chat-files.conf"
        copy.write_text(text.replace("alias /srv/chat/media/;", f"alias {Path(self.media_root).resolve()}/;"))
        return copy

    def proxy_conf(self, j: int) -> Path:
        """deploy/nginx/chat-proxy.conf with its upstream, chat_workers, replaced by upstream j's own."""
        text = (DEPLOY / "nginx" / "chat-proxy.conf").read_text()
        assert "http://chat_workers;" in text, "chat-proxy.conf changed: update harness/nginx.py"
        text = text.replace("http://chat_workers;", f"http://chat_worker_{j};")
        assert "chat_workers" not in text.replace("`chat_workers`", ""), "chat-proxy.conf changed: update harness/nginx.py"
        copy = self.prefix / f"chat-proxy-{j}.conf"
        copy.write_text(text)
        return copy

    def per_port_config(self) -> str:
        """One upstream and one server block per process (``per_port``)."""
        blocks = []
        for j, (listen, upstream) in enumerate(zip(self.ports, self.upstreams)):
            blocks.append(f"""
    upstream chat_worker_{j} {{
        server 127.0.0.1:{upstream} max_fails=0;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{listen};
        include {self.proxy_conf(j)};
        include {self.files_conf()};
    }}""")
        return "".join(blocks)

    def config(self) -> str:
        prefix = self.prefix
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;" for p in self.upstreams)
        temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""
worker_processes 1;
worker_rlimit_nofile 20000;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; }}  # a proxied WebSocket takes two: 8,192 sockets
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
        include {self.files_conf()};
    }}{self.per_port_config()}
}}
"""

    def start(self, timeout: float = 15) -> "Nginx":
        """Write the configuration, check it (nginx -t), start nginx and wait until
        /healthz answers through it."""
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.prefix.chmod(0o777)  # nginx's worker may run as another user
        conf = self.prefix / "nginx.conf"
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf.write_text(self.config())
        check = subprocess.run([binary, "-t", "-p", str(self.prefix), "-c", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx configuration: {check.stderr}")
        with (self.prefix / "stdout.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT
            )
        self.last_answer = "none"
        try:
            wait_for(self._up, timeout, "nginx")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc} (its last /healthz answer: {self.last_answer})") from None
        return self

    def _up(self) -> bool:
        import urllib.error
        import urllib.request

        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(self.prefix / 'error.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.http}/healthz", timeout=3) as response:
                return response.status == 200
        except urllib.error.HTTPError as exc:  # the workers' 503 names the failed check
            self.last_answer = f"{exc.code} {exc.read()[:200].decode(errors='replace')}"
            return False
        except OSError as exc:
            self.last_answer = repr(exc)
            return False

    def stop(self, timeout: float = 10) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
