"""harness.cgroups: a child group's CFS quota holds a busy process to its budget, and the
clean-up moves it back and removes the groups (bench/scaling.py relies on both)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cgroups

REASON = cgroups.unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"cgroup v1 cpu not writable here: {REASON}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_busy_process_in_a_group_gets_its_quota_and_is_moved_back_after():
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    name = f"chat-test-{os.getpid()}"
    try:
        before = cgroups.own_group(spin.pid)
        with cgroups.CpuGroups(name, count=2, cores=0.2) as groups:
            assert (groups[0].path / "cpu.cfs_quota_us").read_text().strip() == str(round(0.2 * cgroups.PERIOD_US))
            assert (groups.parent / "cpu.shares").read_text().strip() == "2048"  # two processes' weight
            groups[0].add(spin.pid)
            assert groups[0].pids() == [spin.pid] and groups[1].pids() == []
            cpu0, t0 = _cpu_seconds(spin.pid), time.monotonic()
            time.sleep(2.0)
            used = (_cpu_seconds(spin.pid) - cpu0) / (time.monotonic() - t0)
            stat = groups[0].stat()
        # An upper bound only: a loaded machine can give the process less, never more.
        assert used <= 0.2 * 1.2, f"used {used:.2f} cores with a quota of 0.2"
        assert stat["nr_throttled"] > 0 and stat["throttled_time"] > 0
        assert not (cgroups.CPU_ROOT / name).exists()
        assert cgroups.own_group(spin.pid) == before and spin.poll() is None
    finally:
        spin.kill()
        spin.wait()
        if (cgroups.CPU_ROOT / name).exists():
            cgroups.CpuGroups(name, 0, 0.1).remove()
