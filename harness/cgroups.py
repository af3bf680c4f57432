"""CPU budgets for server processes: cgroup v1 ``cpu`` child groups with a CFS quota.

    with CpuGroups("chat-bench", count=4, cores=0.25) as groups:
        groups[0].add(pid)              # the process (every thread of it) gets a quarter core
        groups[0].stat()                # {"nr_periods": …, "nr_throttled": …, "throttled_time": ns}

One parent group (``/sys/fs/cgroup/cpu/<name>``, no limit of its own, ``cpu.shares`` of
``count`` processes) holds ``p0``, ``p1`` …, each with ``cpu.cfs_quota_us = cores ×
cpu.cfs_period_us``: a ceiling, not a reservation (a machine busy with other work can give a
group less; its throttled periods in ``stat()`` tell the two apart). On the way out (and at exit, and
for a parent left behind by a killed run) every process still inside is moved back to the
group it came from and the groups are removed. Needs root and a writable cgroup v1 ``cpu``
hierarchy; ``unavailable()`` says why not, for a skip or an error message.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
# 10 ms, not the kernel's default 100 ms: a process that spends its quarter core early in a
# period is frozen for the rest of it, and 75 ms freezes, stacked over a message's hops
# between processes, are the p99 (a first full run at 100 ms passed no rate of the 100-room
# workload at any K, and K = 2 delivered less than K = 1).
PERIOD_US = 10_000


def unavailable(root: Path = CPU_ROOT) -> str | None:
    """None when child groups with a CPU quota can be made under ``root``, else the reason."""
    if not (root / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {root} (cpu.cfs_quota_us missing)"
    if not os.access(root, os.W_OK) or not os.access(root / "cgroup.procs", os.W_OK):
        return f"{root} is not writable (root is needed)"
    return None


def own_group(pid: int, root: Path = CPU_ROOT) -> Path:
    """The cpu group ``pid`` is in now (its line of /proc/<pid>/cgroup with the cpu controller)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return root / path.lstrip("/")
    return root


class CpuGroup:
    """One child group: ``cores`` of CPU per period for everything in it."""

    def __init__(self, path: Path, cores: float, period_us: int = PERIOD_US, root: Path = CPU_ROOT):
        self.path, self.cores, self.period_us, self.root = path, cores, period_us, root
        self.quota_us = max(1000, round(cores * period_us))  # the kernel's floor is 1 ms
        self.came_from: dict[int, Path] = {}
        path.mkdir()
        (path / "cpu.cfs_period_us").write_text(str(period_us))
        (path / "cpu.cfs_quota_us").write_text(str(self.quota_us))

    def add(self, pid: int) -> None:
        """Move the process, every thread of it, into the group (children it starts later follow)."""
        self.came_from[pid] = own_group(pid, self.root)
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def stat(self) -> dict[str, int]:
        """cpu.stat: nr_periods, nr_throttled, throttled_time (ns) since the group was made."""
        return {k: int(v) for k, v in (line.split() for line in (self.path / "cpu.stat").read_text().splitlines())}

    def remove(self) -> None:
        """Move whatever is still inside back where it came from, then remove the group."""
        _empty(self.path, self.came_from, self.root)


def _empty(path: Path, came_from: dict[int, Path] | None = None, root: Path = CPU_ROOT) -> None:
    if not path.exists():
        return
    for child in (p for p in path.iterdir() if p.is_dir()):
        _empty(child, came_from, root)
    for pid in (int(p) for p in (path / "cgroup.procs").read_text().split()):
        back = (came_from or {}).get(pid, root)
        try:
            (back if back.exists() else root).joinpath("cgroup.procs").write_text(str(pid))
        except ProcessLookupError:
            pass  # it exited meanwhile
    path.rmdir()


class CpuGroups:
    """``count`` child groups ``p0`` … under ``root/name``, each with ``cores`` of CPU."""

    def __init__(self, name: str, count: int, cores: float, *, period_us: int = PERIOD_US, root: Path = CPU_ROOT):
        reason = unavailable(root)
        if reason:
            raise RuntimeError(reason)
        self.root, self.parent = root, root / name
        _empty(self.parent, root=root)  # a run killed before its clean-up left it behind
        self.parent.mkdir()
        atexit.register(self.remove)
        # Under contention the parent competes with every process outside it as one entity of
        # its cpu.shares: at the default (1024, one process's weight) K groups would share one
        # process's turn. K times that, and each child (1024) weighs as one process again.
        (self.parent / "cpu.shares").write_text(str(1024 * max(count, 1)))
        try:
            self.groups = [CpuGroup(self.parent / f"p{i}", cores, period_us, root) for i in range(count)]
        except BaseException:
            self.remove()
            raise

    def __getitem__(self, i: int) -> CpuGroup:
        return self.groups[i]

    def __len__(self) -> int:
        return len(self.groups)

    def __enter__(self) -> "CpuGroups":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Every process back where it came from, every group removed (idempotent)."""
        came_from: dict[int, Path] = {}
        for group in getattr(self, "groups", []):
            came_from.update(group.came_from)
        _empty(self.parent, came_from, self.root)
        atexit.unregister(self.remove)
