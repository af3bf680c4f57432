"""The one process harness: the project's servers as child processes, for tests/ (real
servers, the fault cluster), bench/ and scripts/.

    from harness import Config, running
    with running(2, Config("uvicorn", redis_url=url), log_dir=tmp) as (a, b):
        ...

A top-level package, importable without Django: pytest puts the checkout's root on
sys.path, bench/'s scripts add it (bench/servers.py), and bench can start the servers of
another checkout (``Config.cwd``) while the harness stays this one's.
"""

from .cgroups import CpuGroups
from .nginx import Nginx, nginx_binary
from .processes import (
    APP,
    DAPHNE_FLAGS,
    ROOT,
    UVICORN_FLAGS,
    Config,
    Process,
    free_port,
    rss_bytes,
    running,
    start,
    stop,
    wait_for,
)

__all__ = [
    "APP", "CpuGroups", "DAPHNE_FLAGS", "ROOT", "UVICORN_FLAGS", "Config", "Nginx", "Process", "free_port", "nginx_binary",
    "rss_bytes", "running", "start", "stop", "wait_for",
]
