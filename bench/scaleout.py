"""Scale-out benchmark: K processes of the project on one Redis, beside the Channels tutorial.

    .venv/bin/python bench/scaleout.py             # full run, writes docs/performance/scaleout.{txt,json}
    .venv/bin/python bench/scaleout.py --quick     # 2 s steps, one bisection; writes /tmp/chat-scale/
    .venv/bin/python bench/scaleout.py --rooms     # also 10 rooms of 100 clients

Needs PostgreSQL at 127.0.0.1:5432 (drops and creates the database ``bench_scale``) and Redis at
127.0.0.1:6379; only database 5 of Redis is used, and it is flushed before each set of servers.

For K = 1, 2, 3 (``--procs``) the run starts K processes of the project (Daphne, or ``--asgi
uvicorn``) on the same PostgreSQL database with REDIS_URL set (channels-redis and the Redis
presence store), then K processes of the Channels tutorial on the same Redis (channels-redis at
its defaults, bench/reference/tutorial with TUTORIAL_REDIS_URL). Clients of one 100-client room
(and with ``--rooms`` 10 rooms of 100) are spread round robin over the K processes, and so are
the 10 senders of each room. bench/loadgen.py's open-loop rate search finds the best passing
rate (no loss, duplicate or error, p99 <= 250 ms), exactly as in bench/fanout.py.

Each step also records:

- server CPU: the sum of the K processes (``srv`` in the step lines may exceed 100%), each
  process's share of a core, and Redis's, over the step's busy time (first send to last
  delivery); ``µs/deliv`` is the K processes' CPU per delivery;
- the project's own counters, scraped from every process's /metrics before and after the
  step: ``chat_layer_messages_received_total{type="room.event"}`` of each process divided by the
  room events all processes committed (``chat_room_events_total``). The hub joins one channel
  per process to the room's group, so the expected value is 1.0 for every process with sockets
  in the room; a design with a channel per socket would receive N/K (the recipients there);
- Redis's side: after each search one more step at a low fixed rate (``--probe-rate``) with
  ``redis-cli monitor`` running, counted for our database index only (the Redis is shared:
  INFO commandstats is server-wide, it is kept in the JSON but not used): the messages
  channels-redis pushes into the processes' inboxes per room event and process, how many
  channel names each carries (channels-redis 4 sends one message per process and group_send,
  naming every receiving channel of that process), and the layer's commands per event.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import loadgen
import servers
from fanout import machine, raise_nofile
from loadgen import StepResult, Tally, Target
from report import STEP_HEADER, cpu_per_delivery, step_line
from servers import Server, describe_project, prepare_database

TRANSCRIPT: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    TRANSCRIPT.append(text)


# --- the CPU of a group of processes --------------------------------------------------------
#
# loadgen.run_step reads one server's CPU through loadgen.server_cpu_seconds(target.pid). A
# group of K servers gets a made-up negative pid; the function below answers for it with the
# sum of the K processes, and records every process's (and Redis's) CPU at the first and the
# last read of a step, which are the start and the end of the step's busy time.

GROUPS: dict[int, list[int]] = {}
_process_cpu = loadgen.server_cpu_seconds


class Probe:
    tally: Tally | None = None
    step = -1
    redis_pid: int | None = None
    pg_pids: list[int] = []
    first: tuple | None = None
    last: tuple | None = None
    # Read at each snapshot too, when set (bench/scaling.py: cgroup throttling, nginx, the machine).
    more: "Callable[[], dict] | None" = None

    @classmethod
    def arm(cls, tally: Tally, step: int) -> None:
        cls.tally, cls.step, cls.first, cls.last = tally, step, None, None
        cls.pg_pids = []
        for d in Path("/proc").iterdir():  # PostgreSQL's processes (the servers' backends among them)
            try:
                if d.name.isdigit() and (d / "comm").read_text().strip() in ("postgres", "postmaster"):
                    cls.pg_pids.append(int(d.name))
            except OSError:
                pass


def _redis_cpu() -> float:
    try:
        return _process_cpu(Probe.redis_pid) if Probe.redis_pid else 0.0
    except OSError:
        return 0.0


def _pg_cpu() -> dict[int, float]:
    cpu = {}
    for pid in Probe.pg_pids:
        try:
            cpu[pid] = _process_cpu(pid)
        except OSError:
            pass
    return cpu


def group_cpu_seconds(pid: int) -> float:
    pids = GROUPS.get(pid)
    if pids is None:
        return _process_cpu(pid)
    per = [_process_cpu(p) for p in pids]
    if Probe.tally is not None and Probe.tally.step == Probe.step:  # after run_step's reset
        snap = (time.monotonic(), per, _redis_cpu(), _pg_cpu(), Probe.more() if Probe.more else None)
        if Probe.first is None:
            Probe.first = snap
        Probe.last = snap
    return sum(per)


loadgen.server_cpu_seconds = group_cpu_seconds


# --- counters: the project's /metrics and Redis's INFO -----------------------------------------


def scrape(server: Server) -> dict[str, float]:
    """The chat_* samples of one project process (its /metrics)."""
    return {key: value for key, value in server.process.metrics().items() if key.startswith("chat_")}


def total(sample: dict[str, float], name: str) -> float:
    """The sum of a counter over its labels."""
    return sum(v for k, v in sample.items() if k == name or k.startswith(name + "{"))


RECEIVED = 'chat_layer_messages_received_total{type="room.event"}'
SENT = 'chat_layer_messages_sent_total{type="room.event"}'


class Redis:
    def __init__(self, url: str):
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        Probe.redis_pid = int(self.client.info("server")["process_id"])
        if not Path(f"/proc/{Probe.redis_pid}/stat").exists():  # Redis elsewhere: no CPU reading
            Probe.redis_pid = None

    def flush(self) -> None:
        self.client.flushdb()  # this database index only

    def stats(self) -> dict:
        commands = {k.removeprefix("cmdstat_"): v["calls"] for k, v in self.client.info("commandstats").items()}
        s = self.client.info("stats")
        return {"commands": commands, "net_in": s["total_net_input_bytes"], "net_out": s["total_net_output_bytes"]}


async def layer_drained(cluster: "Cluster", before: list[dict] | None, limit: float = 20.0) -> list[dict] | None:
    """The processes' counters once their layer traffic has stopped: the room.event messages
    sent have stopped growing and (since ``before``) every process has received each one;
    at most ``limit`` s. (A group commit publishes a batch of events as one message.)"""
    if cluster.kind != "project":
        return None
    deadline = time.monotonic() + limit
    now = cluster.metrics()
    while True:
        await asyncio.sleep(0.3)
        again = cluster.metrics()
        sent = [m.get(SENT, 0) for m in again]
        stable = sent == [m.get(SENT, 0) for m in now]
        if before is not None:
            published = sum(b.get(SENT, 0) - a.get(SENT, 0) for a, b in zip(before, again))
            stable = stable and all(b.get(RECEIVED, 0) - a.get(RECEIVED, 0) >= published for a, b in zip(before, again))
        if stable or time.monotonic() > deadline:
            return again
        now = again


def _die_with_parent() -> None:
    """In the child: SIGTERM when the benchmark process dies, however it dies (PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


PREFIX = "asgi"  # channels-redis' default key prefix (neither settings change it)


class Monitor:
    """``redis-cli monitor`` into a file while a step runs; counts the layer's commands after.

    MONITOR also shows the commands Lua scripts run (``[db lua]``): channels-redis' group_send
    is a script with one ZADD per process inbox (``asgi:specific.<process>!``), the message
    naming the receiving channels (``specific.<process>!<local>``) in ``__asgi_channel__``.
    """

    LINE = re.compile(r'^[\d.]+ \[(\d+) ([^\]]*)\] "([^"]+)"(.*)$')
    ARG = re.compile(r' "((?:[^"\\]|\\.)*)"')

    def __init__(self, url: str, path: Path):
        from urllib.parse import urlparse

        u = urlparse(url)
        self.host, self.port, self.db = u.hostname or "127.0.0.1", u.port or 6379, int((u.path or "/0")[1:] or 0)
        self.path = path

    def __enter__(self) -> "Monitor":
        self.path.unlink(missing_ok=True)
        self.out = self.path.open("wb")
        self.process = subprocess.Popen(["redis-cli", "-h", self.host, "-p", str(self.port), "monitor"],
                                        stdout=self.out, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        atexit.register(self._stop)
        time.sleep(0.3)
        return self

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def __exit__(self, *exc) -> None:
        try:
            time.sleep(0.5)
        finally:
            self._stop()
            atexit.unregister(self._stop)
            self.out.close()

    def count(self, events: int, procs: int) -> dict:
        commands: dict[str, int] = {}
        inboxes: dict[str, int] = {}
        names = upkeep = 0
        with self.path.open("rb") as f:
            for raw in f:
                line = raw.decode("latin-1")
                m = self.LINE.match(line)
                if not m or int(m.group(1)) != self.db or '"asgi' not in m.group(4):
                    continue
                cmd = m.group(3).upper()
                arg = self.ARG.match(m.group(4))
                key = arg.group(1) if arg else ""
                if cmd in ("ZADD", "EXPIRE") and ":group:" in key and m.group(2) != "lua":
                    upkeep += 1  # group_add: joins, and the hub's re-join of its groups every 60 s
                    continue
                commands[cmd] = commands.get(cmd, 0) + 1
                if cmd == "ZADD":
                    if key.startswith(PREFIX) and key.endswith("!"):  # a process inbox, not its $inflight or a group
                        inboxes[key] = inboxes.get(key, 0) + 1
                        # every channel of the process is "<inbox name><local part>"
                        names += m.group(4)[arg.end():].count(key[len(PREFIX):])
        pushes = sum(inboxes.values())
        return {"events": events, "layer_commands": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
                "layer_cmds_per_event": sum(commands.values()) / max(events, 1), "inbox_keys": len(inboxes),
                "pushes_per_event_proc": pushes / max(events, 1) / procs, "names_per_push": names / max(pushes, 1),
                "group_upkeep_commands": upkeep}


def redis_delta(before: dict, after: dict) -> dict:
    names = set(before["commands"]) | set(after["commands"])
    commands = {n: after["commands"].get(n, 0) - before["commands"].get(n, 0) for n in names}
    return {"commands": {n: c for n, c in sorted(commands.items()) if c},
            "net_bytes": (after["net_in"] - before["net_in"]) + (after["net_out"] - before["net_out"])}


# --- one set of K servers ------------------------------------------------------------------


class Cluster:
    def __init__(self, kind: str, k: int, args, *, db_url: str | None, tokens: list[str]):
        self.kind, self.k = kind, k
        self.servers: list[Server] = []
        try:
            for j in range(k):
                self.servers.append(Server(
                    "postgres" if kind == "project" else "tutorial", Path(args.work), db_url=db_url, tokens=tokens,
                    redis_url=args.redis_url, log_name=f"server-{kind}-{k}-{j}.log"))
        except BaseException:
            self.stop()
            raise
        self.gid = -1000 - len(GROUPS)
        GROUPS[self.gid] = [s.target.pid for s in self.servers]
        self.target = Target(kind=self.servers[0].target.kind, port=0, pid=self.gid, tokens=tokens)
        # Where clients of process j connect (bench/scaling.py: nginx's port for j), and from.
        self.ports = [s.port for s in self.servers]
        self.local_hosts: list[str] = []

    def metrics(self) -> list[dict[str, float]] | None:
        if self.kind != "project":
            return None
        return [scrape(s) for s in self.servers]

    async def connect(self, rooms: list[str], tally: Tally) -> list[loadgen.Peer]:
        """Peer i joins rooms[i] on process (i // len(set(rooms))) mod K, with token i."""
        per_room = len(set(rooms))
        proc = [(i // per_room) % self.k for i in range(len(rooms))]
        peers: list = [None] * len(rooms)

        async def one_server(j: int) -> None:
            idx = [i for i in range(len(rooms)) if proc[i] == j]
            server = self.servers[j].target
            target = Target(kind=server.kind, port=self.ports[j], pid=server.pid, local_hosts=self.local_hosts,
                            tokens=[self.target.tokens[i] for i in idx] if self.target.tokens else [])
            got, _ = await loadgen.connect_peers(target, [rooms[i] for i in idx], tally)
            for i, peer in zip(idx, got):
                peers[i] = peer

        await asyncio.gather(*(one_server(j) for j in range(self.k)))
        return peers

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


async def measure(cluster: Cluster, redis: Redis, label: str, rooms: list[str], senders: int, args, *,
                  start: float | None = None, factor: float = 2.0, refine: int | None = None, down: int = 3,
                  describe: Callable[[StepResult, dict, dict, float], list[str]] | None = None) -> dict:
    """Rate search over one workload; every step carries its counters in ``extra``.

    ``start``: the first step's messages/s (default: --start deliveries/s over the room size),
    ``factor`` the search's step, ``refine`` its bisections (default --refine) and ``down`` the
    tries below a failing first rate;
    ``describe(result, first, last, wall)``: with Probe.more set, given its first and last
    readings of the step's busy time, adds to ``result.extra`` and returns more bits of the log.
    """
    tally = Tally()
    peers = await cluster.connect(rooms, tally)
    n_rooms = len(set(rooms))
    sending = peers[: senders * n_rooms]  # `senders` per room, spread over the processes
    room_size = len(rooms) // n_rooms
    sockets = [m.get("chat_sockets_open", 0) for m in cluster.metrics() or []]
    if sockets:
        say(f"  {label}: sockets open per process " + "/".join(f"{n:.0f}" for n in sockets)
            + f" ({len(peers)} clients, {len(sending)} sending)")

    async def run(rate: float, *, lull_wait: float | None = None) -> StepResult:
        step = loadgen.next_step()
        await loadgen.settle(tally)  # the backlog of the last step is not counted in this one
        m0, r0 = await layer_drained(cluster, None), redis.stats()
        Probe.arm(tally, step)
        result = await loadgen.run_step(cluster.target, peers, sending, tally, step=step, rate=rate,
                                        duration=args.duration, lull=args.lull,
                                        lull_wait=args.lull_wait if lull_wait is None else lull_wait)
        first, last = Probe.first, Probe.last
        Probe.tally = None
        extra: dict = {"procs": cluster.k, "rooms": n_rooms, "room_size": room_size}
        more_bits: list[str] = []
        if first and last and last[0] > first[0]:
            wall = last[0] - first[0]
            extra["proc_cpu"] = [(b - a) / wall for a, b in zip(first[1], last[1])]
            extra["redis_cpu"] = (last[2] - first[2]) / wall
            extra["pg_cpu"] = sum(last[3][p] - first[3][p] for p in first[3] if p in last[3]) / wall
            if describe is not None and first[4] is not None:
                result.extra = extra
                more_bits = describe(result, first[4], last[4], wall)
        events = result.sent
        if m0 is not None:
            # The hub's layer sends run one at a time: at the end of a step some may still be
            # queued. Record how many had gone out, then wait (at most 20 s) for the rest.
            m_end = cluster.metrics()
            waited = time.monotonic()
            m1 = await layer_drained(cluster, m0)
            extra["layer_drain_s"] = time.monotonic() - waited
            per = []
            events = sum(total(b, "chat_room_events_total") - total(a, "chat_room_events_total") for a, b in zip(m0, m1))
            for a, e, b in zip(m0, m_end, m1):
                per.append({"received": b.get(RECEIVED, 0) - a.get(RECEIVED, 0), "sent": b.get(SENT, 0) - a.get(SENT, 0),
                            "sent_at_end": e.get(SENT, 0) - a.get(SENT, 0),
                            "room_events": total(b, "chat_room_events_total") - total(a, "chat_room_events_total"),
                            "stored": total(b, "chat_messages_stored_total") - total(a, "chat_messages_stored_total")})
            for a, b, row in zip(m0, m1, per):  # every chat_* counter that moved (gap fills, deliveries by path ...)
                row["counters"] = {k: b[k] - a.get(k, 0) for k in b
                                   if "_created" not in k and "_bucket" not in k and b[k] != a.get(k, 0)}
            extra["processes"] = per
            extra["room_events"] = events
            published = sum(p["sent"] for p in per)
            if events and published:
                extra["recv_per_event"] = [p["received"] / events for p in per]
                extra["recv_per_published"] = [p["received"] / published for p in per]
                extra["events_per_message"] = events / published
                extra["sent_at_end_share"] = sum(p["sent_at_end"] for p in per) / published
        r1 = redis.stats()
        rd = redis_delta(r0, r1)
        extra["redis"] = rd
        if events:
            extra["redis_pops_per_event_proc"] = rd["commands"].get("bzpopmin", 0) / events / cluster.k
        extra["log_bits"] = more_bits
        result.extra = extra
        return result

    def log(r: StepResult) -> None:
        say(step_line(label, r, args.p99))
        e = getattr(r, "extra", {})
        bits = []
        if "proc_cpu" in e:
            bits.append("cpu " + "/".join(f"{c:.0%}" for c in e["proc_cpu"])
                        + f", redis {e['redis_cpu']:.0%}, postgres {e['pg_cpu']:.0%}")
        if "recv_per_event" in e:
            bits.append("layer msgs received per room event " + "/".join(f"{x:.2f}" for x in e["recv_per_event"])
                        + ", per message published " + "/".join(f"{x:.2f}" for x in e["recv_per_published"])
                        + f", {e['events_per_message']:.2f} events/message; {e['sent_at_end_share']:.0%} published"
                        f" by the step's end, the rest {e['layer_drain_s']:.1f} s later")
            fills = [p["counters"].get('chat_gap_fills_total{reason="order"}', 0) for p in e["processes"]]
            filled = [p["counters"].get("chat_gap_filled_events_total", 0) for p in e["processes"]]
            bits.append("gap fills (order) " + "/".join(f"{f:.0f}" for f in fills)
                        + ", events read by fills " + "/".join(f"{f:.0f}" for f in filled))
            stores = [(p["counters"].get("chat_store_seconds_sum", 0), p["counters"].get("chat_store_seconds_count", 0))
                      for p in e["processes"]]
            if any(n for _, n in stores):
                bits.append("store (queued + stored) mean " + "/".join(f"{t / n * 1e3:.0f}" if n else "-" for t, n in stores)
                            + " ms")
        say("      " + "; ".join(bits))
        for bit in e.get("log_bits", []):
            say("      " + bit)

    best, steps = await loadgen.search(run, start=start or args.start / room_size, p99_limit_ms=args.p99,
                                       refine=args.refine if refine is None else refine, retries=args.retries,
                                       factor=factor, down=down, log=log)
    probe = None
    if args.probe_rate:
        # One more step at a low fixed rate with Redis MONITOR on: what the layer writes to
        # Redis per room event, counted in our database index only.
        with Monitor(args.redis_url, Path(args.work) / f"monitor-{label.replace(' ', '_')}.txt") as monitor:
            r = await run(args.probe_rate, lull_wait=0)
        # The events committed in the step (/metrics), not the messages sent: after an
        # overloaded step a backlog can still be committing.
        probe = monitor.count(int(r.extra.get("room_events") or r.sent), cluster.k)
        probe["step"] = r
        say(f"  probe at {r.rate:g} msg/s ({r.delivered}/{r.expected} delivered, p99 {r.p99_ms:.0f} ms), Redis db "
            f"{monitor.db}: {probe['pushes_per_event_proc']:.2f} layer messages per event and process "
            f"({probe['inbox_keys']} process inboxes), {probe['names_per_push']:.1f} channel names in each, "
            f"{probe['layer_cmds_per_event']:.1f} layer commands per event, group upkeep aside "
            f"({', '.join(f'{c} {n / max(r.sent, 1):.1f}' for c, n in probe['layer_commands'].items())})")
    await loadgen.close_peers(peers)
    return {"procs": cluster.k, "rooms": n_rooms, "room_size": room_size, "best": best, "steps": steps, "probe": probe}


# --- the table ------------------------------------------------------------------------------


def fmt_list(values, f: str) -> str:
    return "/".join(format(v, f) for v in values)


def summary(results: dict, args) -> str:
    lines = [f"machine: {results['machine']}", f"project: {results['project_version']}",
             f"steps of {args.duration:g} s, 10 senders per room spread over the processes, "
             f"pass = no loss, duplicate or error and p99 <= {args.p99:g} ms",
             "deliv/s, p99 and the CPU columns are of the best passing step; µs/deliv is the K processes' CPU "
             "per delivery at the busiest lossless step",
             "layer/event/proc: room.event layer messages each process's hub received per room event committed "
             "(the project's /metrics, best step; a per-recipient design: N/K); ev/msg: room events per layer "
             "message (group commit batches)",
             "Redis columns: one extra step at --probe-rate msg/s with MONITOR on, our db only: messages "
             "pushed into the processes' inboxes per event and process, channel names each carries, "
             "layer commands per event", ""]
    head = (f"{'server':<20} {'K':>2} {'rooms':>6} {'deliv/s':>9} {'x K=1':>6} {'p99 ms':>7} {'µs/deliv':>8} "
            f"{'CPU per process':>16} {'redis':>6} {'pg':>4} {'layer/event/proc':>16} {'ev/msg':>6} {'Redis msgs/ev/proc':>18} "
            f"{'names/msg':>9} {'layer cmds/ev':>13}")
    lines.append(head)
    notes = []
    for run in results["runs"]:
        best, label, k = run["best"], run["label"], run["procs"]
        base = next((r["best"] for r in results["runs"]
                     if r["label"] == label and r["rooms"] == run["rooms"] and r["procs"] == 1), None)
        where = f"{run['rooms']}x{run['room_size']}"
        probe = run.get("probe") or {}
        redis_side = (f" {probe['pushes_per_event_proc']:>18.2f} {probe['names_per_push']:>9.1f} "
                      f"{probe['layer_cmds_per_event']:>13.1f}" if probe else "")
        if best is None:
            low = min(run["steps"], key=lambda s: s.offered) if run["steps"] else None
            lines.append(f"{label:<20} {k:>2} {where:>6} {'-':>9} {'-':>6} {'-':>7} "
                         f"{cpu_per_delivery(run) if run['steps'] else float('nan'):>8.1f} {'-':>16} {'-':>6} {'-':>4} {'-':>16} {'-':>6}"
                         + redis_side)
            if low is not None:
                notes.append(f"{label}, K={k}, {where}: no rate passed; at the lowest, {low.offered:,.0f} offered "
                             f"deliveries/s, p99 was {low.p99_ms:.0f} ms" + (f" and {low.lost} lost" if low.lost else ""))
            continue
        e = getattr(best, "extra", {})
        ratio = (f"{best.deliveries_per_s / base.deliveries_per_s:.2f}" if base is not None else "-")
        layer = (f"{min(e['recv_per_event']):.2f}-{max(e['recv_per_event']):.2f}" if e.get("recv_per_event") else "-")
        lines.append(
            f"{label:<20} {k:>2} {where:>6} {best.deliveries_per_s:>9,.0f} {ratio:>6} {best.p99_ms:>7.1f} "
            f"{cpu_per_delivery(run):>8.1f} {fmt_list(e.get('proc_cpu', []), '.0%'):>16} "
            f"{e.get('redis_cpu', 0):>6.0%} {e.get('pg_cpu', 0):>4.0%} {layer:>16} "
            f"{format(e['events_per_message'], '.2f') if 'events_per_message' in e else '-':>6}" + redis_side)
    lines += ["", *notes]
    return "\n".join(lines)


def jsonable(results: dict) -> dict:
    return json.loads(json.dumps(results, default=lambda o: o.as_dict() if hasattr(o, "as_dict") else str(o)))


async def main(args) -> None:
    servers.PROJECT = servers.ROOT
    servers.ASGI_SERVER = args.asgi
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    version = describe_project()
    clients = 100 * (10 if args.rooms else 1)
    say(f"{args.machine}; {raise_nofile(clients + 500)}; project: {version}; redis {args.redis_url}")
    redis = Redis(args.redis_url)
    db_url, setup = prepare_database("postgres", work, args.pg_url, clients + 50, 10)
    results: dict = {"machine": args.machine, "project_version": version, "args": vars(args).copy(), "runs": []}
    labels = {"project": "project" + (f" ({args.asgi})" if args.asgi != "daphne" else ""), "tutorial": "Channels tutorial"}
    workloads = [("1x100", {"project": [setup["rooms"]["one"]] * 100, "tutorial": ["bench"] * 100})]
    if args.rooms:
        slugs = setup["rooms"]["many"][:10]
        workloads.append(("10x100", {"project": [slugs[i % 10] for i in range(1000)],
                                     "tutorial": [f"bench_{i % 10:03d}" for i in range(1000)]}))
    started = time.monotonic()
    for k in args.procs:
        for kind in args.servers:
            redis.flush()
            say(f"\n== {labels[kind]}, {k} process{'es' if k > 1 else ''}")
            cluster = Cluster(kind, k, args, db_url=db_url, tokens=setup["tokens"] if kind == "project" else [])
            try:
                say(STEP_HEADER)
                for name, rooms in workloads:
                    run = await measure(cluster, redis, f"{kind} K={k} {name}", rooms[kind], 10, args)
                    run["label"] = labels[kind]
                    results["runs"].append(run)
            finally:
                cluster.stop()
    results["seconds"] = time.monotonic() - started
    text = summary(results, args)
    say("\n" + text)
    say(f"\nrun time {results['seconds'] / 60:.1f} min")
    (out / "scaleout.txt").write_text(text + "\n\nsteps:\n" + "\n".join(TRANSCRIPT) + "\n")
    (out / "scaleout.json").write_text(json.dumps(jsonable(results), indent=1) + "\n")
    print(f"table and steps: {out / 'scaleout.txt'}, results: {out / 'scaleout.json'}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 s steps, one bisection, /tmp/chat-scale/")
    p.add_argument("--procs", default="1,2,3", help="process counts K")
    p.add_argument("--servers", default="project,tutorial")
    p.add_argument("--rooms", action="store_true", help="also 10 rooms of 100 clients")
    p.add_argument("--duration", type=float, default=None, help="seconds of sending per step")
    p.add_argument("--start", type=float, default=2500, help="first step's offered deliveries/s")
    p.add_argument("--refine", type=int, default=None)
    p.add_argument("--p99", type=float, default=250.0)
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--probe-rate", type=float, default=20.0,
                   help="messages/s (all rooms together) of the step with Redis MONITOR on after each search (0: none)")
    p.add_argument("--lull", type=float, default=0.5)
    p.add_argument("--lull-wait", type=float, default=30.0)
    p.add_argument("--asgi", choices=["daphne", "uvicorn"], default="daphne")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_SCALE_PG_URL", "postgres://postgres@127.0.0.1:5432/bench_scale"))
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    p.add_argument("--out", default=None)
    p.add_argument("--work", default="/tmp/chat-scale/work", help="server logs")
    args = p.parse_args(argv)
    args.procs = [int(k) for k in args.procs.split(",") if k]
    args.servers = [s for s in args.servers.split(",") if s]
    if set(args.servers) - {"project", "tutorial"}:
        p.error("--servers: project, tutorial")
    q = args.quick
    args.duration = args.duration or (2.0 if q else 5.0)
    args.refine = args.refine if args.refine is not None else (1 if q else 2)
    args.out = args.out or ("/tmp/chat-scale" if q else str(servers.ROOT / "docs" / "performance"))
    args.machine = machine()
    return args


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(parse_args()))
