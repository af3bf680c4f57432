"""Fan-out benchmark: this project beside a bare websockets server and the Channels tutorial.

    .venv/bin/pip install -r bench/requirements.txt      # matplotlib (the plot), py-spy (--profile)
    .venv/bin/python bench/fanout.py                     # the full run (~45 min), writes docs/performance/
    .venv/bin/python bench/fanout.py --quick             # ~10 min, writes /tmp/chat-bench/

PostgreSQL must listen on 127.0.0.1:5432 (the run drops and creates the database bench_chat).

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
reports both processes' CPU (share of one core) and the rest of the machine's, so a saturated
generator or a busy neighbour is visible. Each step starts in a lull of the machine's other
load (waiting at most --lull-wait seconds), and a failing rate gets --retries more tries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import sys
import time
import urllib.request
from pathlib import Path

import loadgen
import servers
from loadgen import StepResult, Tally, Target
from report import LABELS, PROJECT_KINDS, STEP_HEADER, plot, server_latency_line, step_line, summary
from servers import Server, describe_project, prepare_database

TRANSCRIPT: list[str] = []


def say(text: str = "") -> None:
    """Print a line and keep it for the transcript file."""
    print(text, flush=True)
    TRANSCRIPT.append(text)



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



def scrape_histograms(target: Target) -> dict[str, list[tuple[float, float]]]:
    """The project server's latency histograms from its /metrics: {name: [(le, cumulative count)]}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{target.port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        if line.startswith(("chat_delivery_seconds_bucket", "chat_ack_seconds_bucket")):
            series, _, value = line.rpartition(" ")
            name = series.split("_bucket", 1)[0]
            le = series.split('le="', 1)[1].split('"', 1)[0]
            found.setdefault(name, []).append((float(le), float(value)))
    return found


SERVER_LINES: dict[int, str] = {}  # id(StepResult) -> its server_latency_line


def log_step(label: str, result: StepResult, p99: float) -> None:
    """Print the step's line, and under it the server's own view of the step's latency."""
    say(step_line(label, result, p99))
    if id(result) in SERVER_LINES:
        say(SERVER_LINES.pop(id(result)))


async def timed_step(target: Target, step):
    """Run ``step()``; for the project, print its own latency histograms over the step under it."""
    if target.kind != "project":
        return await step(), None
    before = await asyncio.to_thread(scrape_histograms, target)
    result = await step()
    after = await asyncio.to_thread(scrape_histograms, target)
    return result, server_latency_line(before, after)


async def fanout(target: Target, label: str, *, clients: int, senders: int, args) -> dict:
    """Rate search with ``clients`` in one room and ``senders`` of them sending."""
    tally = Tally()
    room = "bench" if target.kind != "bare" else None
    peers, per_second = await loadgen.connect_peers(target, [room] * clients, tally)
    share = args.react_share if target.kind == "project" else 0.0
    seed = await asyncio.to_thread(_seed_message, target, room) if share else None

    async def run(rate: float) -> StepResult:
        # With --react-share, reactions are that share of the room's events: toggles of 👍 on
        # one message by the senders, each one `message.reacted` to every client (not counted
        # as deliveries: the step measures what they cost the messages).
        reacting = asyncio.create_task(
            _reactions(peers[:senders], seed, rate * share / (1 - share), args.duration)
        ) if share else None
        try:
            result, server = await timed_step(target, lambda: loadgen.run_step(
                target, peers, peers[:senders], tally, step=loadgen.next_step(), rate=rate,
                duration=args.duration, lull=args.lull, lull_wait=args.lull_wait))
            if server:
                SERVER_LINES[id(result)] = server
            return result
        finally:
            if reacting is not None:
                reacting.cancel()

    if args.rates:  # fixed rates, no search (profiling)
        steps = []
        for rate in args.rates:
            steps.append(await run(rate))
            log_step(label, steps[-1], args.p99)
        best = max((s for s in steps if s.ok(args.p99)), key=lambda s: s.rate, default=None)
    else:
        best, steps = await loadgen.search(run, start=args.start / clients, p99_limit_ms=args.p99,
                                           refine=args.refine, retries=args.retries, log=lambda r: log_step(label, r, args.p99))
    overload = None
    if target.kind == "project":
        overload = await overload_step(target, peers, peers[:senders], tally, label, steps, args)
    await loadgen.close_peers(peers)
    return {"clients": clients, "senders": senders, "best": best, "steps": steps, "connects_per_s": per_second,
            "overload": overload}


def _seed_message(target: Target, room: str) -> int:
    """Post one message through the REST API (the first client's token); return its id."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{target.port}/api/v1/rooms/{room}/messages/",
        data=json.dumps({"body": "react to me", "client_id": f"seed-{target.run_id}"}).encode(),
        headers={"Authorization": f"Token {target.tokens[0]}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["id"]


async def _reactions(senders, message_id: int, rate: float, duration: float) -> None:
    """Send react/unreact toggles of 👍 on ``message_id`` at ``rate`` per second for ``duration`` s."""
    on = [False] * len(senders)
    start, total = time.monotonic(), int(rate * duration)
    for k in range(total):
        j = k % len(senders)
        kind = b"unreact" if on[j] else b"react"
        on[j] = not on[j]
        senders[j].client.send_text(b'{"type":"%s","id":%d,"emoji":"\\ud83d\\udc4d"}' % (kind, message_id))
        await asyncio.sleep(max(0.0, start + (k + 1) / rate - time.monotonic()))


async def overload_step(target: Target, peers, senders, tally: Tally, label: str, steps: list[StepResult],
                        args) -> StepResult | None:
    """Twice the highest rate tried, then as long as it takes to drain (at most 120 s).

    Beyond capacity latency may grow without bound, but nothing may be lost or repeated.
    """
    if not args.overload or not steps:
        return None
    result = await loadgen.run_step(target, peers, senders, tally, step=loadgen.next_step(),
                                    rate=2 * max(s.rate for s in steps), duration=args.duration, drain=120.0,
                                    quiet=10.0, lull=args.lull, lull_wait=args.lull_wait)
    say(step_line(f"{label} overload", result, args.p99))
    return result


async def rooms(target: Target, label: str, slugs: list[str], *, clients: int, args) -> dict:
    """Rate search with ``clients`` spread over ``slugs`` (peer i in room i mod len), every client sending."""
    tally = Tally()
    peers, per_second = await loadgen.connect_peers(target, [slugs[i % len(slugs)] for i in range(clients)], tally)
    async def run(rate: float) -> StepResult:
        result, server = await timed_step(target, lambda: loadgen.run_step(
            target, peers, peers, tally, step=loadgen.next_step(), rate=rate, duration=args.duration,
            lull=args.lull, lull_wait=args.lull_wait))
        if server:
            SERVER_LINES[id(result)] = server
        return result

    if args.rates:
        steps = []
        for rate in args.rates:
            steps.append(await run(rate))
            log_step(label, steps[-1], args.p99)
        best = max((s for s in steps if s.ok(args.p99)), key=lambda s: s.rate, default=None)
    else:
        best, steps = await loadgen.search(run, start=args.rooms_start, p99_limit_ms=args.p99, refine=args.refine,
                                           retries=args.retries, log=lambda r: log_step(label, r, args.p99))
    overload = await overload_step(target, peers, peers, tally, label, steps, args)
    await loadgen.close_peers(peers)
    return {"clients": clients, "rooms": len(slugs), "best": best, "steps": steps, "overload": overload}





def raise_nofile(need: int) -> str:
    """Raise the soft limit to the hard one; each process (this load generator, every server)
    needs one descriptor per connection, so ``need`` is the largest connection count + slack."""
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
    servers.PROJECT = Path(args.project).resolve()
    servers.ASGI_SERVER = args.asgi
    if args.asgi != "daphne":
        for kind in ("sqlite", "postgres"):
            LABELS[kind] += f", {args.asgi}"
    args.project_version = describe_project()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    say(f"{args.machine}; {raise_nofile(max(args.memory_conns, args.rooms_clients, *args.clients) + 500)}; "
        f"project: {args.project_version}")
    results: dict = {"machine": args.machine, "args": vars(args).copy(), "fanout": {}, "memory": {}, "rooms": {}}
    users = max(args.memory_conns, max(args.clients), args.rooms_clients) + 50

    def profile(kind: str, run: str) -> Path | None:
        return work / f"profile-{kind}-{run}.txt" if args.profile and kind in PROJECT_KINDS else None

    for kind in args.servers:
        db_url, setup = (None, {"tokens": []})
        asgi = "uvicorn" if kind.endswith("-uvicorn") else args.asgi
        if kind in PROJECT_KINDS:
            db_url, setup = prepare_database(kind.removesuffix("-uvicorn"), work, args.pg_url, users, 100)
        say(f"\n== {LABELS[kind]}")
        server = Server(kind, work, asgi=asgi, db_url=db_url, tokens=setup["tokens"])
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
                    server = Server(kind, work, asgi=asgi, db_url=db_url, tokens=setup["tokens"])
                    m = await memory(server.target, args.memory_conns, room)
                    results["memory"][kind].append(m)
                    say(f"  memory: {m['connections']} idle connections{' joined to ' + m['room'] if m['room'] else ''}: "
                          f"{m['kb_per_conn']:.1f} KB each (RSS {m['rss_mb']:.0f} MB), {m['connects_per_s']:,.0f} connects/s")
            results["fanout"][kind] = {}
            server.stop()
            server = Server(kind, work, asgi=asgi, db_url=db_url, tokens=setup["tokens"], profile=profile(kind, "fanout"))
            say(STEP_HEADER)
            for n in filter(None, args.clients):  # --clients 0: the 100-room run only
                results["fanout"][kind][str(n)] = await fanout(server.target, f"{kind} N={n}", clients=n,
                                                               senders=args.senders, args=args)
            if server.target.kind == "project" and args.rooms_clients:
                server.stop()
                server = Server(kind, work, asgi=asgi, db_url=db_url, tokens=setup["tokens"], profile=profile(kind, "rooms"))
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
    p.add_argument("--servers", default="bare,tutorial,sqlite,postgres,postgres-uvicorn",
                   help="any of bare, tutorial, sqlite, postgres, sqlite-uvicorn, postgres-uvicorn")
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
    p.add_argument("--project", default=str(servers.ROOT),
                   help="the project to measure (default: this checkout); e.g. a `git archive` of a commit")
    p.add_argument("--react-share", type=float, default=0.0,
                   help="fan-out runs: this share of the room's events are reactions (e.g. 0.1)")
    p.add_argument("--rates", default="", help="fixed messages/s steps instead of the search, e.g. 100,200")
    p.add_argument("--profile", action="store_true",
                   help="run project servers under py-spy; collapsed stacks go to WORK/profile-<server>-<run>.txt")
    p.add_argument("--asgi", choices=["daphne", "uvicorn"], default="daphne",
                   help="the server of the sqlite and postgres runs (the -uvicorn kinds always use uvicorn, as "
                        "CHAT_SERVER=uvicorn does: uvloop, httptools, chat.serving.WebSocketProtocol)")
    p.add_argument("--no-overload", dest="overload", action="store_false",
                   help="skip the overload step (twice the highest rate tried, drained for up to 120 s)")
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
    args.out = args.out or ("/tmp/chat-bench" if q else str(servers.ROOT / "docs" / "performance"))
    args.machine = machine()
    return args


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    arguments = parse_args()
    if arguments.report:
        report(Path(arguments.report), arguments)
    else:
        asyncio.run(main(arguments))
