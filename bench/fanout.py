"""Fan-out benchmark: this project beside a bare websockets server and the Channels tutorial.

    .venv/bin/pip install -r bench/requirements.txt      # matplotlib, for the plot
    .venv/bin/python bench/fanout.py                     # the full run (~20 min), writes docs/performance/
    .venv/bin/python bench/fanout.py --quick             # ~3 min, writes /tmp/chat-bench/

Servers (each a subprocess on 127.0.0.1, one process, started fresh):

- ``bare``: bench/reference/bare_ws.py, a ``websockets`` broadcast server (the floor);
- ``tutorial``: bench/reference/tutorial, the Channels tutorial's consumer on Daphne with the
  in-memory layer at its defaults;
- ``sqlite`` / ``postgres``: this project on Daphne, every socket logged in with its own user's
  token, every message stored and acked, seq order and gap filling on, CHAT_POST_RATE=0.

Workloads, each an open-loop rate search (see bench/loadgen.py): N clients in one room
(100 and 1,000) with S senders; the rate doubles until a step loses, duplicates or errs, or
its p99 passes the limit, then two bisections; the best passing step is the server's capacity.
Then 1,000 clients in 100 rooms of 10, every client sending (the project only): stored
messages/s. And, for every server, memory per idle connection (RSS delta of the server
process over 5,000 connections) and connects/s.

The load generator is one asyncio process on the same two cores as the server; each step
reports both processes' CPU (share of one core) so a saturated generator is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import loadgen
from loadgen import StepResult, Tally, Target

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
TRANSCRIPT: list[str] = []


def say(text: str = "") -> None:
    """Print a line and keep it for the transcript file."""
    print(text, flush=True)
    TRANSCRIPT.append(text)


LABELS = {
    "bare": "bare websockets",
    "tutorial": "Channels tutorial",
    "sqlite": "project, SQLite",
    "postgres": "project, PostgreSQL",
}


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daphne(app: str, port: int) -> list[str]:
    return [PY, "-m", "daphne", "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=1024", app]


class Server:
    def __init__(self, kind: str, out: Path, *, db_url: str | None = None, tokens: list[str] | None = None,
                 profile: Path | None = None):
        self.kind = kind
        self.port = free_port()
        env = {**os.environ}
        if kind == "bare":
            cmd, cwd = [PY, str(BENCH / "reference" / "bare_ws.py"), str(self.port)], ROOT
        elif kind == "tutorial":
            cwd = BENCH / "reference" / "tutorial"
            cmd = daphne("mysite.asgi:application", self.port)
            env.update(DJANGO_SETTINGS_MODULE="mysite.settings", TUTORIAL_DB=str(out / "tutorial.sqlite3"))
        elif ASGI_SERVER == "uvicorn":
            cwd = PROJECT
            cmd = [PY, "-m", "uvicorn", "chatproject.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
                   "--ws", "websockets-sansio", "--loop", "uvloop", "--http", "httptools", "--backlog", "1024",
                   "--no-access-log", "--log-level", "warning"]
            env.update(PROJECT_ENV, DATABASE_URL=db_url)
            env.pop("REDIS_URL", None)
        else:
            cmd, cwd = daphne("chatproject.asgi:application", self.port), PROJECT
            env.update(PROJECT_ENV, DATABASE_URL=db_url)
            env.pop("REDIS_URL", None)  # one process: the in-memory layer
        if profile is not None:
            # py-spy starts the server (attaching to a running pyenv Python fails here) and
            # samples without stopping it (--nonblocking), every thread, idle ones too.
            spy = str(Path(PY).parent / "py-spy")
            cmd = [spy, "record", "--nonblocking", "--threads", "--idle", "-r", "200", "-f", "raw", "-o", str(profile),
                   "--", *cmd]
        self.log = out / f"server-{kind}.log"
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


# --- measurements --------------------------------------------------------------------------


async def memory(target: Target, n: int, room: str | None) -> dict:
    """RSS delta of the server per idle connection, and connects/s, over ``n`` connections."""
    tally = Tally()
    rooms = room if isinstance(room, list) else [room]
    warm, _ = await loadgen.connect_peers(target, [rooms[i % len(rooms)] for i in range(50)], tally)
    await loadgen.close_peers(warm)
    await asyncio.sleep(1.0)
    before = loadgen.rss_bytes(target.pid)
    peers, per_second = await loadgen.connect_peers(target, [rooms[i % len(rooms)] for i in range(n)], tally)
    await asyncio.sleep(3.0)
    after = loadgen.rss_bytes(target.pid)
    await loadgen.close_peers(peers)
    await asyncio.sleep(1.0)
    where = None if room is None else room if isinstance(room, str) else f"{len(room)} rooms"
    return {"connections": n, "kb_per_conn": (after - before) / n / 1024, "connects_per_s": per_second,
            "rss_mb": after / 2**20, "room": where}


def step_line(label: str, r: StepResult, p99: float) -> str:
    verdict = "ok" if r.ok(p99) else "FAIL"
    extra = f" errors={r.errors} ({r.error_sample[:60]})" if r.errors else ""
    extra += f" closed={r.closed}" if r.closed else ""
    extra += f" acks={r.acks}" if r.acks and r.acks != r.sent else ""
    return (f"  {label:<22} {r.rate:>8.1f} {r.offered:>9,.0f} {r.sent:>7} {r.delivered:>9} {r.lost:>7} {r.dups:>4} "
            f"{r.deliveries_per_s:>9,.0f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.max_ms:>7.0f} "
            f"{r.server_cpu:>4.0%} {r.loadgen_cpu:>4.0%} {r.other_cpu:>5.0%} {verdict}{extra}")


STEP_HEADER = (f"  {'server':<22} {'msg/s':>8} {'offered':>9} {'sent':>7} {'delivered':>9} {'lost':>7} {'dup':>4} "
               f"{'deliv/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'srv':>4} {'gen':>4} {'other':>5}")


async def fanout(target: Target, label: str, *, clients: int, senders: int, args) -> dict:
    """Rate search with ``clients`` in one room and ``senders`` of them sending."""
    tally = Tally()
    room = "bench" if target.kind != "bare" else None
    peers, per_second = await loadgen.connect_peers(target, [room] * clients, tally)
    async def run(rate: float) -> StepResult:
        return await loadgen.run_step(target, peers, peers[:senders], tally, step=loadgen.next_step(), rate=rate,
                                      duration=args.duration, lull=args.lull, lull_wait=args.lull_wait)

    if args.rates:  # fixed rates, no search (profiling)
        steps = []
        for rate in args.rates:
            steps.append(await run(rate))
            say(step_line(label, steps[-1], args.p99))
        best = max((s for s in steps if s.ok(args.p99)), key=lambda s: s.rate, default=None)
    else:
        best, steps = await loadgen.search(run, start=args.start / clients, p99_limit_ms=args.p99,
                                           refine=args.refine, retries=args.retries, log=lambda r: say(step_line(label, r, args.p99)))
    await loadgen.close_peers(peers)
    return {"clients": clients, "senders": senders, "best": best, "steps": steps, "connects_per_s": per_second}


async def rooms(target: Target, label: str, slugs: list[str], *, clients: int, args) -> dict:
    """Rate search with ``clients`` spread over ``slugs`` (peer i in room i mod len), every client sending."""
    tally = Tally()
    peers, per_second = await loadgen.connect_peers(target, [slugs[i % len(slugs)] for i in range(clients)], tally)
    async def run(rate: float) -> StepResult:
        return await loadgen.run_step(target, peers, peers, tally, step=loadgen.next_step(), rate=rate,
                                      duration=args.duration,
                                      lull=args.lull, lull_wait=args.lull_wait)

    if args.rates:
        steps = []
        for rate in args.rates:
            steps.append(await run(rate))
            say(step_line(label, steps[-1], args.p99))
        best = max((s for s in steps if s.ok(args.p99)), key=lambda s: s.rate, default=None)
    else:
        best, steps = await loadgen.search(run, start=args.rooms_start, p99_limit_ms=args.p99, refine=args.refine,
                                           retries=args.retries, log=lambda r: say(step_line(label, r, args.p99)))
    await loadgen.close_peers(peers)
    return {"clients": clients, "rooms": len(slugs), "best": best, "steps": steps}


# --- report --------------------------------------------------------------------------------


def cpu_per_delivery(run: dict) -> float:
    """Server CPU µs per delivery at the busiest step that delivered everything.

    Less sensitive to other load on the machine than the rate itself: a server that gets
    half the CPU delivers half as fast, but spends about the same CPU per delivery.
    """
    full = [s for s in run["steps"] if not s.lost and s.deliveries_per_s] or run["steps"]
    top = max(full, key=lambda s: s.deliveries_per_s)
    return top.server_cpu / top.deliveries_per_s * 1e6


def summary(results: dict, args) -> str:
    lines = [f"machine: {results['machine']}", f"project: {args.project_version}",
             f"steps of {args.duration:g} s, {args.senders} senders, pass = no loss, duplicate or error and p99 <= {args.p99:g} ms",
             ""]
    fan = results["fanout"]
    ns = sorted({int(n) for per in fan.values() for n in per})
    head = f"{'server':<26}" + "".join(f" {'deliv/s N=' + str(n):>16} {'p99 ms':>7} {'µs/deliv':>8}" for n in ns)
    head += f" {'KB/idle conn':>13} {'connects/s':>11}"
    lines.append(head)
    for kind, per in fan.items():
        row = f"{LABELS[kind]:<26}"
        for n in ns:
            best = per.get(str(n), {}).get("best")
            row += (f" {best.deliveries_per_s:>16,.0f} {best.p99_ms:>7.1f} {cpu_per_delivery(per[str(n)]):>8.1f}"
                    if best else f" {'-':>16} {'-':>7} {'-':>8}")
        mem = results["memory"].get(kind, [])
        if mem:
            row += f" {mem[0]['kb_per_conn']:>13.1f} {mem[0]['connects_per_s']:>11,.0f}"
        lines.append(row)
    for kind in ("sqlite", "postgres"):
        for m in results["memory"].get(kind, [])[1:]:
            lines.append(f"{LABELS[kind] + ', joined':<26}" + " " * (34 * len(ns)) +
                         f" {m['kb_per_conn']:>13.1f} {m['connects_per_s']:>11,.0f}")

    def best(kind, n):
        b = fan.get(kind, {}).get(str(n), {}).get("best")
        return b.deliveries_per_s if b else None

    lines.append("")
    for n in ns:
        for kind in ("sqlite", "postgres"):
            ours, tut, bare = best(kind, n), best("tutorial", n), best("bare", n)
            if ours and tut:
                lines.append(f"N={n}: {LABELS[kind]} / tutorial = {ours / tut:.1f}x (target 8x)"
                             + (f"; / bare = {ours / bare:.2f} (target 0.5)" if bare else ""))
    for kind, r in results["rooms"].items():
        b = r["best"]
        full = [s for s in r["steps"] if not s.lost] or r["steps"]
        top = max(full, key=lambda s: s.rate)
        cost = top.server_cpu / (top.deliveries_per_s / top.fanout) * 1e3
        lines.append(f"{r['clients']} clients in {r['rooms']} rooms, {LABELS[kind]}: "
                     + (f"{b.rate:,.0f} stored msgs/s ({b.deliveries_per_s:,.0f} deliveries/s), p99 {b.p99_ms:.0f} ms"
                        if b else "no passing step") + f"; server CPU {cost:.2f} ms per stored message"
                     + " (target 2,000/s on PostgreSQL)")
    return "\n".join(lines)


def plot(results: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fan = results["fanout"]
    ns = sorted({int(n) for per in fan.values() for n in per})
    panels = len(ns) + (1 if results["rooms"] else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.6), squeeze=False)
    colors = {"bare": "tab:gray", "tutorial": "tab:orange", "sqlite": "tab:blue", "postgres": "tab:green"}

    def draw(ax, kind, steps, x_of):
        steps = sorted({s.rate: s for s in steps}.values(), key=x_of)  # a retried rate: its last try
        xs = [x_of(s) for s in steps]
        ax.plot(xs, [s.p99_ms for s in steps], "-o", color=colors[kind], label=f"{LABELS[kind]} p99", ms=4)
        ax.plot(xs, [s.p50_ms for s in steps], "--", color=colors[kind], alpha=0.6, label=f"{LABELS[kind]} p50")
        bad = [s for s in steps if s.lost or s.dups or s.errors]
        ax.plot([x_of(s) for s in bad], [s.p99_ms for s in bad], "x", color="red", ms=9, mew=2)

    for ax, n in zip(axes[0], ns):
        for kind, per in fan.items():
            if str(n) in per:
                draw(ax, kind, per[str(n)]["steps"], lambda s: s.offered)
        ax.set_title(f"{n} clients in one room, {args.senders} senders")
        ax.set_xlabel("offered deliveries/s")
    if results["rooms"]:
        ax = axes[0][-1]
        for kind, r in results["rooms"].items():
            draw(ax, kind, r["steps"], lambda s: s.rate)
        ax.set_title("1,000 clients in 100 rooms, all sending")
        ax.set_xlabel("offered messages/s (each to 10)")
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(args.p99, color="red", lw=0.8, ls=":")
        ax.set_ylabel("delivery latency, ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Latency against offered rate (red x: loss, duplicates or errors; dotted: p99 limit) — {args.machine}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --- main ----------------------------------------------------------------------------------


def raise_nofile(need: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        raise SystemExit(f"ulimit -n is {soft} (hard {hard}); {need} are needed")
    return f"ulimit -n {soft}"


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


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


def report(path: Path, args) -> None:
    """Print the summary and redraw the plot of an earlier run's results.json."""
    data = json.loads(path.read_text())
    fields = set(StepResult.__dataclass_fields__)

    def revive(node):
        if isinstance(node, dict):
            if "deliveries_per_s" in node:
                return StepResult(**{k: v for k, v in node.items() if k in fields})
            return {k: revive(v) for k, v in node.items()}
        if isinstance(node, list):
            return [revive(v) for v in node]
        return node

    results = revive(data)
    saved = data["args"]
    for name in ("duration", "senders", "p99"):
        setattr(args, name, saved[name])
    args.machine = data["machine"]
    args.project_version = saved.get("project_version", "?")
    text = summary(results, args)
    print(text)
    (path.parent / "summary.txt").write_text(text + "\n")
    plot(results, path.parent / "latency.png", args)


async def main(args) -> None:
    global PROJECT, ASGI_SERVER
    PROJECT = Path(args.project).resolve()
    ASGI_SERVER = args.asgi
    if args.asgi != "daphne":
        for kind in ("sqlite", "postgres"):
            LABELS[kind] += f" ({args.asgi})"
    args.project_version = describe_project()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    say(f"{args.machine}; {raise_nofile(args.memory_conns * 2 + 200)}; "
        f"project: {args.project_version}")
    results: dict = {"machine": args.machine, "args": vars(args).copy(), "fanout": {}, "memory": {}, "rooms": {}}
    users = max(args.memory_conns, max(args.clients), args.rooms_clients) + 50

    def profile(kind: str, run: str) -> Path | None:
        return work / f"profile-{kind}-{run}.txt" if args.profile and kind in ("sqlite", "postgres") else None

    for kind in args.servers:
        db_url, setup = (None, {"tokens": []})
        if kind in ("sqlite", "postgres"):
            db_url, setup = prepare_database(kind, work, args.pg_url, users, 100)
        say(f"\n== {LABELS[kind]}")
        server = Server(kind, work, db_url=db_url, tokens=setup["tokens"])
        try:
            if args.memory_conns:
                # The project: logged in only, and logged in and joined to one of 100 rooms
                # (50 a room: presence tells each room's sockets of every join, so one room
                # of 5,000 would measure a join storm, not idle memory).
                rooms_to_try = ([None, setup["rooms"]["many"]] if server.target.kind == "project"
                                else [None if kind == "bare" else "bench"])
                results["memory"][kind] = []
                for room in rooms_to_try:
                    # A fresh process each time: memory freed by an earlier run stays in the
                    # process and would be reused, hiding the cost of the next.
                    server.stop()
                    server = Server(kind, work, db_url=db_url, tokens=setup["tokens"])
                    m = await memory(server.target, args.memory_conns, room)
                    results["memory"][kind].append(m)
                    say(f"  memory: {m['connections']} idle connections{' joined to ' + m['room'] if m['room'] else ''}: "
                          f"{m['kb_per_conn']:.1f} KB each (RSS {m['rss_mb']:.0f} MB), {m['connects_per_s']:,.0f} connects/s")
            results["fanout"][kind] = {}
            server.stop()
            server = Server(kind, work, db_url=db_url, tokens=setup["tokens"], profile=profile(kind, "fanout"))
            say(STEP_HEADER)
            for n in args.clients:
                results["fanout"][kind][str(n)] = await fanout(server.target, f"{kind} N={n}", clients=n,
                                                               senders=args.senders, args=args)
            if server.target.kind == "project" and args.rooms_clients:
                server.stop()
                server = Server(kind, work, db_url=db_url, tokens=setup["tokens"], profile=profile(kind, "rooms"))
                results["rooms"][kind] = await rooms(server.target, f"{kind} 100 rooms", setup["rooms"]["many"],
                                                     clients=args.rooms_clients, args=args)
        finally:
            server.stop()

    text = summary(results, args)
    say("\n" + text)
    loadgen.dump(out / "results.json", results)
    (out / "summary.txt").write_text(text + "\n")
    (out / "steps.txt").write_text("\n".join(TRANSCRIPT) + "\n")
    try:
        plot(results, out / "latency.png", args)
        print(f"\nplot: {out / 'latency.png'}")
    except ImportError:
        print("\nno plot: pip install -r bench/requirements.txt (matplotlib)")
    print(f"results: {out / 'results.json'}, transcript: {out / 'steps.txt'}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short steps, 100 clients only, 1,000 idle connections")
    p.add_argument("--servers", default="bare,tutorial,sqlite,postgres")
    p.add_argument("--clients", default=None, help="room sizes, e.g. 100,1000")
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--duration", type=float, default=None, help="seconds of sending per step")
    p.add_argument("--start", type=float, default=2500, help="first step's offered deliveries/s")
    p.add_argument("--rooms-start", type=float, default=250, help="first step's messages/s in the 100-room run")
    p.add_argument("--rooms-clients", type=int, default=1000, help="0 skips the 100-room run")
    p.add_argument("--refine", type=int, default=None)
    p.add_argument("--p99", type=float, default=250.0, help="latency limit of a passing step, ms")
    p.add_argument("--memory-conns", type=int, default=None, help="0 skips the memory run")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/bench_chat"))
    p.add_argument("--project", default=str(ROOT),
                   help="the project to measure (default: this checkout); e.g. a `git archive` of a commit")
    p.add_argument("--rates", default="", help="fixed messages/s steps instead of the search, e.g. 100,200")
    p.add_argument("--profile", action="store_true",
                   help="run project servers under py-spy; collapsed stacks go to WORK/profile-<server>-<run>.txt")
    p.add_argument("--asgi", choices=["daphne", "uvicorn"], default="daphne",
                   help="the project's ASGI server (uvicorn: with uvloop, httptools, websockets-sansio; not in "
                        "requirements.txt, install it to try)")
    p.add_argument("--report", help="only print the summary and redraw the plot of this results.json")
    p.add_argument("--lull", type=float, default=0.5,
                   help="start a step once the rest of the machine uses fewer cores than this ...")
    p.add_argument("--lull-wait", type=float, default=30.0, help="... or after this many seconds (0: never wait)")
    p.add_argument("--retries", type=int, default=1, help="tries more of a failing rate before it counts as failed")
    p.add_argument("--out", default=None, help="where the table, results and plot go (default: docs/performance/, /tmp for --quick)")
    p.add_argument("--work", default="/tmp/chat-bench", help="server logs and SQLite files")
    args = p.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.rates = [float(r) for r in args.rates.split(",") if r]
    unknown = set(args.servers) - set(LABELS)
    if unknown:
        p.error(f"unknown servers: {unknown}")
    q = args.quick
    args.clients = [int(n) for n in (args.clients or ("100" if q else "100,1000")).split(",")]
    args.duration = args.duration or (2.0 if q else 5.0)
    args.refine = args.refine if args.refine is not None else (1 if q else 2)
    args.memory_conns = args.memory_conns if args.memory_conns is not None else (1000 if q else 5000)
    args.out = args.out or ("/tmp/chat-bench" if q else str(ROOT / "docs" / "performance"))
    args.machine = machine()
    return args


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    arguments = parse_args()
    if arguments.report:
        report(Path(arguments.report), arguments)
    else:
        asyncio.run(main(arguments))
