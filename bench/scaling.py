"""Growth with processes at equal CPU (issue 18): K project processes, each held to the same
CPU budget, on one Redis and PostgreSQL behind nginx.

    .venv/bin/python bench/scaling.py                  # K = 1, 2, 4, 6, both workloads: docs/performance/scaling.{txt,json}
    .venv/bin/python bench/scaling.py --quick          # K = 1, 2, 2 s steps, one bisection: /tmp/chat-scaling/
    .venv/bin/python bench/scaling.py --quota 0.15     # a smaller budget: more room for the rest of the machine

Needs root (cgroup v1 ``cpu`` at /sys/fs/cgroup/cpu), nginx, PostgreSQL at 127.0.0.1:5432 (drops
and creates ``bench_scale``) and Redis at 127.0.0.1:6379 (database 5, flushed before each K).

For each K (``--procs``) the run starts K processes of the project (Daphne, or ``--asgi
uvicorn``) with REDIS_URL set, moves process j into its own cgroup
/sys/fs/cgroup/cpu/chat-bench/p<j> with ``cpu.cfs_quota_us`` = ``--quota`` cores × the
10,000 µs period (harness.cgroups.PERIOD_US), and starts nginx (deploy/nginx/'s configuration through harness.Nginx) with
one extra listening port per process (explicit per-port routing, ``per_port``): client i of a
room goes to process (i mod K) of that room's clients as bench/scaleout.py places them, so the
senders and every room's members are spread evenly (the sockets open per process, from
/metrics, are printed after connecting). The load generator, nginx, Redis and PostgreSQL stay
outside the groups. Clients connect from 127.0.0.2 … (100 a source address): nginx as deployed
allows 200 sockets per client address.

Workloads (bench/scaleout.py's measure(): bench/loadgen.py's open-loop rate search, pass = no
loss, duplicate or error and p99 <= 250 ms, every guarantee on: stored, acked, seq order, gap
fills):

- deliveries: 100 clients in one room, 10 senders: deliveries/s;
- stored: 1,000 clients in 100 rooms of 10, every client sending (bench/fanout.py's 100-room
  workload): stored messages/s.

K = 1 starts at ``--start`` / ``--rooms-start``, doubling until a step fails, then ``--refine``
bisections (3: a bracket of 9%); each later K starts at 0.9 × K × the K = 1 rate, stepping by
1.25× (down to 0.29 of linear at most), then one bisection fewer (6%). Every step prints each process's CPU against
its quota and its cgroup's throttled periods (cpu.stat) over the step's busy time, the load
generator's, nginx's, Redis's and PostgreSQL's CPU and the machine's total, and the layer
messages each process received per room event (/metrics); after each search one step at
``--probe-rate`` with Redis MONITOR counts the messages pushed per event and process. The table
gives linearity = rate_K / (K × rate_1) and names what was at its limit at the first failing
rate; a WARNING line says when that was the load generator, nginx or the whole machine rather
than the servers' budgets. The groups are removed at exit (processes moved back first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import loadgen
import scaleout
import servers
from fanout import machine, raise_nofile
from loadgen import StepResult
from report import STEP_HEADER
from scaleout import Cluster, Probe, Redis, jsonable, measure, say
from servers import describe_project, prepare_database

from harness import Nginx, cgroups, nginx_binary

CORES = os.cpu_count() or 1
BUSY = 0.85  # a share of its budget (or of a core) from which a part counts as at its limit
WORKLOADS = {"deliveries": ("100 clients in 1 room", "deliv/s"), "stored": ("1,000 clients in 100 rooms of 10", "msgs/s")}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += loadgen.server_cpu_seconds(pid)
        except OSError:
            pass
    return total


class Budget:
    """What one step's snapshots read besides the servers' CPU (scaleout.Probe.more)."""

    def __init__(self, groups: cgroups.CpuGroups | None, nginx: Nginx, quota: float):
        self.groups, self.quota = groups, quota
        self.nginx_pids = [nginx.process.pid, *_children(nginx.process.pid)]

    def read(self) -> dict:
        return {"groups": [g.stat() for g in self.groups] if self.groups else [], "nginx": _cpu(self.nginx_pids),
                "machine": loadgen.machine_busy_seconds()}

    def describe(self, result: StepResult, first: dict, last: dict, wall: float) -> list[str]:
        e = result.extra
        e["nginx_cpu"] = (last["nginx"] - first["nginx"]) / wall
        e["machine_cpu"] = (last["machine"] - first["machine"]) / wall
        bits = []
        if first["groups"]:
            e["throttle"] = [{"periods": b["nr_periods"] - a["nr_periods"], "throttled": b["nr_throttled"] - a["nr_throttled"],
                              "throttled_s": (b["throttled_time"] - a["throttled_time"]) / 1e9}
                             for a, b in zip(first["groups"], last["groups"])]
            e["quota_used"] = [c / self.quota for c in e["proc_cpu"]]
            bits.append(f"budget {self.quota:g} core each: used " + "/".join(f"{u:.0%}" for u in e["quota_used"])
                        + ", throttled in " + "/".join(f"{t['throttled'] / max(t['periods'], 1):.0%}" for t in e["throttle"])
                        + " of periods (" + "/".join(f"{t['throttled_s'] / wall:.2f}" for t in e["throttle"])
                        + " s/s held back)")
        bits.append(f"load generator {result.loadgen_cpu:.0%}, nginx {e['nginx_cpu']:.0%}, machine "
                    f"{e['machine_cpu']:.2f} of {CORES} cores")
        return bits


def limits(step: StepResult, quota: float) -> list[str]:
    """What was at its limit in ``step``: the servers' budgets, the load generator, nginx, the machine."""
    e = getattr(step, "extra", {}) or {}
    found = []
    used = (e.get("quota_used") or [c / quota for c in e.get("proc_cpu", [])]) if quota else []
    if used and sum(used) / len(used) >= BUSY:
        found.append("servers")
    if step.loadgen_cpu >= BUSY:
        found.append("load generator")
    if e.get("nginx_cpu", 0) >= BUSY:
        found.append("nginx")
    if e.get("machine_cpu", 0) >= 0.9 * CORES:
        found.append("machine")
    return found


def limiting_step(run: dict) -> StepResult | None:
    """The step that bounded the search: the lowest failing rate above the best, else the best."""
    best = run["best"]
    above = [s for s in run["steps"] if best is None or s.rate > best.rate]
    failed = [s for s in above if not s.ok(run["p99"])]
    return min(failed, key=lambda s: s.rate) if failed else best


def rate_of(step: StepResult, workload: str) -> float:
    """Deliveries/s, or stored messages/s (every stored message is delivered to its room)."""
    return step.deliveries_per_s if workload == "deliveries" else step.deliveries_per_s / step.fanout


def summary(results: dict, args) -> str:
    quota = args.quota
    lines = [f"machine: {results['machine']}", f"project: {results['project_version']} on {args.asgi}",
             f"budget: {quota:g} core per process (cfs_quota_us {round(quota * cgroups.PERIOD_US)} of {cgroups.PERIOD_US})" if quota
             else "budget: none (--quota 0: processes unconfined)",
             f"steps of {args.duration:g} s; pass = no loss, duplicate or error and p99 <= {args.p99:g} ms; "
             "clients through nginx, per-port routing", "",
             "rate: deliveries/s (deliveries) or stored messages/s (stored) of the best passing step; linearity = "
             "rate_K / (K x rate_1)",
             "CPU/quota: each process's CPU over the step's busy time as a share of its budget; throttled: the "
             "share of CFS periods its group was throttled in (cpu.stat)",
             "gen, nginx, redis, pg: CPU in cores; machine: all of the machine's busy CPU, cores of "
             f"{CORES}; limit: what was at its limit at the first failing rate",
             "layer/ev/proc, layer/pub/proc: room.event layer messages each process received per room event "
             "committed and per layer message published (/metrics: 1.00 per publish is one message per process and "
             "room; a group commit publishes a room's batch of events as one); Redis msgs/ev/proc: messages pushed into the processes' inboxes per event and process (MONITOR "
             f"step at {args.probe_rate:g} msg/s)", ""]
    head = (f"{'workload':<10} {'K':>2} {'rate':>8} {'p99 ms':>7} {'x K=1':>6} {'linear':>6} {'CPU/quota':>30} "
            f"{'throttled':>30} {'gen':>5} {'nginx':>5} {'redis':>5} {'pg':>5} {'machine':>7} {'layer/ev/proc':>13} {'layer/pub/proc':>14} "
            f"{'Redis msgs/ev/proc':>18}  limit")
    lines.append(head)
    notes, verdicts = [], []
    for run in results["runs"]:
        w, k, best = run["workload"], run["procs"], run["best"]
        base = next((r for r in results["runs"] if r["workload"] == w and r["procs"] == 1), None)
        probe = run.get("probe") or {}
        redis_side = f"{probe['pushes_per_event_proc']:.2f}" if probe else "-"
        limit_step = limiting_step(run)
        limit = ", ".join(limits(limit_step, quota)) if limit_step else "-"
        if best is None:
            lines.append(f"{w:<10} {k:>2} {'-':>8} {'-':>7} {'-':>6} {'-':>6} {'-':>30} {'-':>30} {'-':>5} {'-':>5} "
                         f"{'-':>5} {'-':>5} {'-':>7} {'-':>13} {'-':>14} {redis_side:>18}  {limit or '-'}")
            low = min(run["steps"], key=lambda s: s.rate, default=None)
            r1 = base["best"] if base is not None else None
            if low is not None and r1 is not None:
                notes.append(f"{w}, K={k}: no rate passed; the lowest tried, {rate_of(low, w):,.0f} (p99 "
                             f"{low.p99_ms:.0f} ms, {low.lost} lost), is {rate_of(low, w) / (k * rate_of(r1, w)):.2f} "
                             "of linear")
            else:
                notes.append(f"{w}, K={k}: no rate passed")
            verdicts.append((w, k, None))
            continue
        e = getattr(best, "extra", {}) or {}
        rate = rate_of(best, w)
        ratio = linear = "-"
        if base is not None and base["best"] is not None:
            r1 = rate_of(base["best"], w)
            ratio, linear = f"{rate / r1:.2f}", f"{rate / (k * r1):.2f}"
            verdicts.append((w, k, rate / (k * r1)))
        used = "/".join(f"{u:.0%}" for u in e.get("quota_used", [])) or "-"
        throttled = "/".join(f"{t['throttled'] / max(t['periods'], 1):.0%}" for t in e.get("throttle", [])) or "-"
        layer = (f"{min(e['recv_per_event']):.2f}-{max(e['recv_per_event']):.2f}" if e.get("recv_per_event") else "-")
        per_pub = (f"{min(e['recv_per_published']):.2f}-{max(e['recv_per_published']):.2f}"
                   if e.get("recv_per_published") else "-")
        lines.append(
            f"{w:<10} {k:>2} {rate:>8,.0f} {best.p99_ms:>7.1f} {ratio:>6} {linear:>6} {used:>30} {throttled:>30} "
            f"{best.loadgen_cpu:>5.2f} {e.get('nginx_cpu', 0):>5.2f} {e.get('redis_cpu', 0):>5.2f} {e.get('pg_cpu', 0):>5.2f} "
            f"{e.get('machine_cpu', 0):>7.2f} {layer:>13} {per_pub:>14} {redis_side:>18}  {limit or '-'}")
        if limit_step is not None:
            others = [x for x in limits(limit_step, quota) if x != "servers"]
            if others:
                le = getattr(limit_step, "extra", {}) or {}
                notes.append(f"WARNING: {w}, K={k}: at {rate_of(limit_step, w):,.0f} (the first failing rate) the "
                             f"{' and the '.join(others)} {'was' if len(others) == 1 else 'were'} at the limit, not only "
                             f"the servers' budgets (load generator {limit_step.loadgen_cpu:.2f} core, nginx "
                             f"{le.get('nginx_cpu', 0):.2f}, machine {le.get('machine_cpu', 0):.2f} of {CORES}): "
                             "this K's rate is a floor of what the processes can do")
    lines += ["", *notes]
    unjudged = sorted({r["workload"] for r in results["runs"] if r["procs"] == 1 and r["best"] is None})
    missed = [f"{w} K={k}" + (f" ({x:.2f})" if x is not None else "") for w, k, x in verdicts
              if k > 1 and w not in unjudged and (x is None or x < 0.8)]
    if any(k > 1 for _, k, _ in verdicts) or unjudged:
        lines.append("target (issue 18), linearity >= 0.8 at every K: "
                     + ("missed at " + ", ".join(missed) if missed else "met" if not unjudged else "no miss")
                     + (f"; not judged for {', '.join(unjudged)} (no rate passed at K=1)" if unjudged else ""))
    return "\n".join(lines)


async def one_k(k: int, args, redis: Redis, db_url: str, setup: dict, workloads: dict, results: dict) -> None:
    redis.flush()
    say(f"\n== project ({args.asgi}), {k} process{'es' if k > 1 else ''}"
        + (f", {args.quota:g} core each" if args.quota else ", no CPU budget"))
    groups = nginx = None
    cluster = Cluster("project", k, args, db_url=db_url, tokens=setup["tokens"])
    try:
        if args.quota:
            groups = cgroups.CpuGroups(args.cgroup, k, args.quota)
            for group, server in zip(groups, cluster.servers):
                group.add(server.target.pid)
            say(f"  cgroups {groups.parent}/p0..p{k - 1}: cpu.cfs_quota_us {groups[0].quota_us} of "
                f"{groups[0].period_us}; pids " + "/".join(str(g.pids()[0]) for g in groups))
        nginx = Nginx(cluster.ports, Path(args.work) / f"nginx-{k}", per_port=True).start()
        cluster.ports = nginx.ports
        cluster.local_hosts = [f"127.0.0.{2 + n}" for n in range(11)]  # <= 100 sockets an address
        budget = Budget(groups, nginx, args.quota)
        Probe.more = budget.read
        say(STEP_HEADER)
        for name, rooms in workloads.items():
            base = next((r for r in results["runs"] if r["workload"] == name and r["procs"] == 1), None)
            if base is not None and base["best"] is not None and k > 1:
                # Around the linear rate: a bracket of 1.25^(1/2^refine), 6% with the default refine 2.
                # Down to 0.9 / 1.25^5 = 0.29 of linear before giving up.
                start, factor, refine, down = 0.9 * k * base["best"].rate, 1.25, max(args.refine - 1, 1), 6
            else:
                start = args.start / len(rooms) if name == "deliveries" else args.rooms_start
                factor, refine, down = 2.0, args.refine, 3
            began = time.monotonic()
            run = await measure(cluster, redis, f"K={k} {name}", rooms, 10, args, start=start, factor=factor,
                                refine=refine, down=down, describe=budget.describe)
            run.update(workload=name, p99=args.p99, seconds=time.monotonic() - began)
            results["runs"].append(run)
            best = run["best"]
            step = limiting_step(run)
            say((f"  K={k} {name}: best {rate_of(best, name):,.0f} {WORKLOADS[name][1]} (p99 {best.p99_ms:.0f} ms)"
                 if best else f"  K={k} {name}: no rate passed")
                + f"; {len(run['steps'])} steps, {run['seconds']:.0f} s with connecting and the MONITOR step")
            others = [x for x in limits(step, args.quota) if x != "servers"] if step is not None else []
            if others:
                say(f"  WARNING: K={k} {name}: at the first failing rate the {' and the '.join(others)} "
                    f"{'was' if len(others) == 1 else 'were'} at the limit, not only the servers' budgets")
    finally:
        Probe.more = None
        if nginx is not None:
            nginx.stop()
        cluster.stop()
        if groups is not None:
            groups.remove()


async def main(args) -> None:
    servers.PROJECT = servers.ROOT
    servers.ASGI_SERVER = args.asgi
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    version = describe_project()
    clients = 1000 if "stored" in args.workloads else 100
    say(f"{args.machine}; {raise_nofile(2 * clients + 500)}; project: {version}; redis {args.redis_url}")
    if args.quota and max(args.procs) * args.quota > CORES - 0.5:
        say(f"WARNING: {max(args.procs)} x {args.quota:g} = {max(args.procs) * args.quota:g} cores of {CORES} leaves "
            f"{CORES - max(args.procs) * args.quota:g} for the load generator, nginx, Redis and PostgreSQL: watch the "
            "gen and machine columns at the largest K (or use a smaller --quota)")
    redis = Redis(args.redis_url)
    db_url, setup = prepare_database("postgres", work, args.pg_url, clients + 50, 100)
    many = setup["rooms"]["many"]
    every = {"deliveries": [setup["rooms"]["one"]] * 100, "stored": [many[i % 100] for i in range(1000)]}
    workloads = {name: every[name] for name in args.workloads}
    results: dict = {"machine": args.machine, "project_version": version, "args": vars(args).copy(), "runs": []}
    started = time.monotonic()
    for k in args.procs:
        await one_k(k, args, redis, db_url, setup, workloads, results)
    results["seconds"] = time.monotonic() - started
    text = summary(results, args)
    say("\n" + text)
    say(f"\nrun time {results['seconds'] / 60:.1f} min")
    (out / "scaling.txt").write_text(text + "\n\nsteps:\n" + "\n".join(scaleout.TRANSCRIPT) + "\n")
    (out / "scaling.json").write_text(json.dumps(jsonable(results), indent=1) + "\n")
    print(f"table and steps: {out / 'scaling.txt'}, results: {out / 'scaling.json'}")


def report(path: Path, args) -> None:
    """Print the table of an earlier run's scaling.json again."""
    data = json.loads(path.read_text())
    fields = set(StepResult.__dataclass_fields__)

    def revive(node):
        if isinstance(node, dict):
            if "deliveries_per_s" in node:
                step = StepResult(**{k: v for k, v in node.items() if k in fields})
                step.extra = node.get("extra", {})
                return step
            return {k: revive(v) for k, v in node.items()}
        if isinstance(node, list):
            return [revive(v) for v in node]
        return node

    results = revive(data)
    for name in ("quota", "asgi", "duration", "p99", "probe_rate"):
        setattr(args, name, data["args"][name])
    print(summary(results, args))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="K = 1, 2; 2 s steps, one bisection; /tmp/chat-scaling/")
    p.add_argument("--procs", default=None, help="process counts K (default 1,2,4,6; --quick 1,2)")
    p.add_argument("--quota", type=float, default=0.25, help="cores per process (0: no cgroups)")
    p.add_argument("--cgroup", default="chat-bench", help="the parent group under /sys/fs/cgroup/cpu")
    p.add_argument("--workloads", default="deliveries,stored")
    p.add_argument("--duration", type=float, default=None, help="seconds of sending per step")
    p.add_argument("--start", type=float, default=None,
                   help="K = 1's first step, deliveries/s (default 6,000 x quota/0.25)")
    p.add_argument("--rooms-start", type=float, default=None,
                   help="K = 1's first step of the 100-room run, msgs/s (default 150 x quota/0.25)")
    p.add_argument("--refine", type=int, default=None)
    p.add_argument("--p99", type=float, default=250.0)
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--probe-rate", type=float, default=20.0,
                   help="messages/s of the step with Redis MONITOR on after each search (0: none)")
    p.add_argument("--lull", type=float, default=0.5)
    p.add_argument("--lull-wait", type=float, default=None, help="default 30 s, --quick 3 s")
    p.add_argument("--asgi", choices=["daphne", "uvicorn"], default="daphne")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_SCALE_PG_URL", "postgres://postgres@127.0.0.1:5432/bench_scale"))
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    p.add_argument("--out", default=None)
    p.add_argument("--work", default="/tmp/chat-scaling/work", help="server and nginx logs")
    p.add_argument("--report", help="only print the table of this scaling.json again")
    args = p.parse_args(argv)
    if args.report:
        return args
    q = args.quick
    args.procs = [int(k) for k in (args.procs or ("1,2" if q else "1,2,4,6")).split(",") if k]
    args.workloads = [w for w in args.workloads.split(",") if w]
    if set(args.workloads) - set(WORKLOADS) or not args.workloads:
        p.error(f"--workloads: {', '.join(WORKLOADS)}")
    if 1 not in args.procs:
        p.error("--procs must include 1 (linearity is measured against it)")
    if args.quota:
        reason = cgroups.unavailable()
        if reason:
            p.error(f"--quota needs the cgroup v1 cpu controller: {reason} (--quota 0 runs without budgets)")
    if nginx_binary() is None:
        p.error("nginx is not installed")
    scale = (args.quota or 1.0) / 0.25
    args.start = args.start or 6000 * scale
    args.rooms_start = args.rooms_start or 150 * scale
    args.duration = args.duration or (2.0 if q else 5.0)
    args.refine = args.refine if args.refine is not None else (1 if q else 3)
    args.lull_wait = args.lull_wait if args.lull_wait is not None else (3.0 if q else 30.0)
    args.out = args.out or ("/tmp/chat-scaling" if q else str(servers.ROOT / "docs" / "performance"))
    args.machine = machine()
    return args


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    arguments = parse_args()
    if arguments.report:
        report(Path(arguments.report), arguments)
    else:
        asyncio.run(main(arguments))
