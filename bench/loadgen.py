"""The load generator: connects peers to one server and runs open-loop steps against it.

One asyncio process (bench/wsclient.py on the hot path). Each step sends ``rate`` messages per
second for ``duration`` seconds, message k from sender k mod S at its scheduled time
t_k = start + k / rate, whether or not earlier sends or deliveries have kept up (open loop).
Every body carries the step, k and t_k (``~B<step>:<k>:<t_k µs>~``), so each peer computes
the delivery latency from the body and marks k in its own bitmap: a second copy is a
duplicate, a missing one is lost. Latency is measured from the scheduled time, so a sender
that falls behind shows up as latency instead of hiding it (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from array import array
from dataclasses import dataclass, field
from typing import Callable

from wsclient import Client, connect

MARK = b"~B"
FILLER = b" lorem ipsum dolor sit amet, consectetur"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- what differs between servers ------------------------------------------------------


@dataclass
class Target:
    """How to talk to one kind of server."""

    kind: str  # "bare", "tutorial", "project"
    port: int
    pid: int
    tokens: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # Source addresses, peer i from local_hosts[i mod len] (empty: the kernel's choice,
    # 127.0.0.1): nginx as deployed allows 200 sockets per client address.
    local_hosts: list[str] = field(default_factory=list)

    def path(self, room: str | None) -> str:
        if self.kind == "bare":
            return "/"
        return f"/ws/chat/{room}/" if room else "/ws/chat/"

    def headers(self, i: int) -> dict[str, str]:
        if self.kind == "tutorial":  # AllowedHostsOriginValidator wants an allowed Origin
            return {"Origin": f"http://127.0.0.1:{self.port}"}
        if self.kind == "project":  # a program's login: the REST API's token
            return {"Authorization": f"Token {self.tokens[i]}"}
        return {}

    def waits_for_joined(self, room: str | None) -> bool:
        return self.kind == "project" and room is not None

    def frame(self, room: str, body: bytes, k: int, step: int) -> bytes:
        if self.kind == "bare":
            return body
        if self.kind == "tutorial":
            return b'{"message": "%s"}' % body
        return b'{"type":"send","room":"%s","body":"%s","client_id":"%s-%d-%d"}' % (
            room.encode(), body, self.run_id.encode(), step, k,
        )


# --- per step counters ------------------------------------------------------------------


class Tally:
    """What every peer adds to during a step."""

    def __init__(self) -> None:
        self.step = -1
        self.delivered = 0
        self.dups = 0
        self.stale = 0  # deliveries of an earlier step
        self.other = 0  # frames without a benchmark message (acks, presence, joined)
        self.acks = 0
        self.errors = 0
        self.error_sample = b""
        self.latencies = array("d")
        self.last_delivery = 0.0

    def reset(self, step: int) -> None:
        self.__init__()
        self.step = step


class Peer:
    """One connection: its room, its bitmap of the step's messages, its frame handler."""

    __slots__ = ("i", "room", "tally", "seen", "client", "joined")

    def __init__(self, i: int, room: str | None, tally: Tally):
        self.i = i
        self.room = room
        self.tally = tally
        self.seen = bytearray()
        self.client: Client | None = None
        self.joined: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_text(self, payload: bytes) -> None:
        i = payload.find(MARK)
        tally = self.tally
        if i < 0:
            tally.other += 1
            if payload.startswith(b'{"type":"ack"'):
                tally.acks += 1
            elif payload.startswith(b'{"type":"joined"'):
                if not self.joined.done():
                    self.joined.set_result(True)
            elif payload.startswith(b'{"type":"error"'):
                tally.errors += 1
                tally.error_sample = payload[:200]
            return
        step, k, sent = payload[i + 2 : payload.find(b"~", i + 2)].split(b":")
        if int(step) != tally.step:
            tally.stale += 1
            return
        k = int(k)
        seen = self.seen
        if seen[k]:
            tally.dups += 1
            return
        seen[k] = 1
        now = time.monotonic()
        tally.delivered += 1
        tally.last_delivery = now
        tally.latencies.append(now - int(sent) * 1e-6)


_steps = itertools.count(1)


def next_step() -> int:
    """A step number unique in this run: client_ids repeat nothing (a repeated client_id of
    the same user is acked again and not broadcast, PROTOCOL.md 3.3 item 2)."""
    return next(_steps)


def server_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used (the first line of /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK  # less idle and iowait


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# --- connecting ---------------------------------------------------------------------------


async def connect_peers(target: Target, rooms: list[str | None], tally: Tally, *, concurrency: int = 32) -> tuple[list[Peer], float]:
    """Connect one peer per entry of ``rooms`` (peer i uses token i); return (peers, connects/s).

    A peer counts as connected when it can receive the room's messages: after the handshake,
    and for the project after its `joined` frame.
    """
    peers = [Peer(i, room, tally) for i, room in enumerate(rooms)]
    gate = asyncio.Semaphore(concurrency)

    async def one(peer: Peer) -> None:
        async with gate:
            for attempt in range(3):
                try:
                    peer.client = await connect(
                        target.port, target.path(peer.room), headers=target.headers(peer.i), on_text=peer.on_text,
                        local_host=target.local_hosts[peer.i % len(target.local_hosts)] if target.local_hosts else None,
                    )
                    break
                except (OSError, asyncio.TimeoutError):
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.5)
            if target.waits_for_joined(peer.room):
                await asyncio.wait_for(peer.joined, 30)

    start = time.monotonic()
    await asyncio.gather(*(one(p) for p in peers))
    return peers, len(peers) / (time.monotonic() - start)


async def close_peers(peers: list[Peer]) -> None:
    for peer in peers:
        if peer.client is not None:
            peer.client.close()
    await asyncio.sleep(0.5)


# --- one step ------------------------------------------------------------------------------


@dataclass
class StepResult:
    rate: float  # messages/s offered
    fanout: float  # recipients per message (room size)
    sent: int
    expected: int
    delivered: int
    lost: int
    dups: int
    errors: int
    acks: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float  # share of one core, over send + drain
    loadgen_cpu: float
    other_cpu: float  # every other process on the machine (the machine is shared): noise
    sender_lag_ms: float  # how far behind schedule the last send went out
    closed: int
    error_sample: str = ""

    @property
    def offered(self) -> float:
        return self.rate * self.fanout

    def ok(self, p99_limit_ms: float) -> bool:
        return self.lost == 0 and self.dups == 0 and self.errors == 0 and self.closed == 0 and self.p99_ms <= p99_limit_ms

    def as_dict(self) -> dict:
        return {**self.__dict__, "offered": self.offered}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


async def settle(tally: Tally, *, quiet: float = 1.0, limit: float = 60.0) -> None:
    """Wait until nothing has arrived for ``quiet`` seconds: an earlier step's backlog, or the
    presence frames of a join storm, are gone."""
    deadline = time.monotonic() + limit
    last = (tally.stale, tally.delivered, tally.other)
    calm_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now_state = (tally.stale, tally.delivered, tally.other)
        if now_state != last:
            last, calm_since = now_state, time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return


async def quiet_machine(server_pid: int, *, below: float, limit: float) -> float:
    """Wait (at most ``limit`` s) until the rest of the machine uses less than ``below`` cores.

    The machine may be shared with other work (test suites, browsers). Steps start in a lull
    so that, as far as possible, they measure the server and not its neighbours. Return the
    seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < limit:
        t0, all0, srv0, gen0 = time.monotonic(), machine_busy_seconds(), server_cpu_seconds(server_pid), time.process_time()
        await asyncio.sleep(0.5)
        wall = time.monotonic() - t0
        other = (machine_busy_seconds() - all0 - (server_cpu_seconds(server_pid) - srv0) - (time.process_time() - gen0)) / wall
        if other < below:
            break
    return time.monotonic() - start


async def run_step(
    target: Target, peers: list[Peer], senders: list[Peer], tally: Tally, *, step: int, rate: float,
    duration: float, drain: float = 10.0, quiet: float = 2.0, lull: float = 0.5, lull_wait: float = 30.0,
) -> StepResult:
    """Send ``rate`` messages/s for ``duration`` s from ``senders`` (round robin); wait for delivery."""
    total = max(1, int(rate * duration))
    room_size: dict[str | None, int] = {}
    for peer in peers:
        room_size[peer.room] = room_size.get(peer.room, 0) + 1
    expected = sum(room_size[senders[k % len(senders)].room] for k in range(total))
    frames_for = [(s, s.room or "") for s in senders]
    await settle(tally)
    if lull_wait:
        await quiet_machine(target.pid, below=lull, limit=lull_wait)
    tally.reset(step)
    for peer in peers:
        peer.seen = bytearray(total)
    closed_before = sum(1 for p in peers if p.client.closed.done())

    cpu0, gen0, all0 = server_cpu_seconds(target.pid), time.process_time(), machine_busy_seconds()
    start = time.monotonic() + 0.05
    k = 0
    while k < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while k < due:
            sender, room = frames_for[k % len(frames_for)]
            body = b"%s%d:%d:%d~%s" % (MARK, step, k, int((start + k / rate) * 1e6), FILLER)
            sender.client.send_text(target.frame(room, body, k, step))
            k += 1
        await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
    sent_at = time.monotonic()
    lag = sent_at - (start + (total - 1) / rate)

    # CPU is read whenever deliveries progress, so the shares cover the busy time only
    # (start to the last delivery), not the quiet wait that ends a lossy step.
    busy = (time.monotonic(), server_cpu_seconds(target.pid), time.process_time(), machine_busy_seconds())
    last, calm_since = tally.delivered, time.monotonic()
    while tally.delivered < expected and time.monotonic() - sent_at < drain:
        await asyncio.sleep(0.05)
        if tally.delivered != last:
            last, calm_since = tally.delivered, time.monotonic()
            busy = (calm_since, server_cpu_seconds(target.pid), time.process_time(), machine_busy_seconds())
        elif time.monotonic() - calm_since > quiet:
            break
    if target.kind == "project":  # acks trail deliveries by a hair; give them a moment
        deadline = time.monotonic() + 1.0
        while tally.acks + tally.errors < total and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    wall = max(busy[0] - start, 1e-9)
    cpu = (busy[1] - cpu0) / wall
    gen = (busy[2] - gen0) / wall
    other = max(0.0, (busy[3] - all0) / wall - cpu - gen)

    latencies = sorted(tally.latencies)
    active = max((tally.last_delivery or sent_at) - start, duration)
    return StepResult(
        rate=rate,
        fanout=expected / total,
        sent=total,
        expected=expected,
        delivered=tally.delivered,
        lost=expected - tally.delivered,
        dups=tally.dups,
        errors=tally.errors,
        acks=tally.acks,
        deliveries_per_s=tally.delivered / active,
        p50_ms=_percentile(latencies, 0.50) * 1e3,
        p99_ms=_percentile(latencies, 0.99) * 1e3,
        max_ms=(latencies[-1] if latencies else float("nan")) * 1e3,
        server_cpu=cpu,
        loadgen_cpu=gen,
        other_cpu=other,
        sender_lag_ms=max(0.0, lag) * 1e3,
        closed=sum(1 for p in peers if p.client.closed.done()) - closed_before,
        error_sample=tally.error_sample.decode(errors="replace"),
    )


async def search(
    run: Callable[[float], "asyncio.Future[StepResult]"], *, start: float, p99_limit_ms: float,
    factor: float = 2.0, refine: int = 2, cap: float = float("inf"), log: Callable[[StepResult], None] = print,
    retries: int = 1, down: int = 3,
) -> tuple[StepResult | None, list[StepResult]]:
    """Step the rate up by ``factor`` until a step fails, then bisect (geometrically) ``refine`` times.

    A failing rate is tried again up to ``retries`` times and passes if any try passes: on a
    machine shared with other work a burst of someone else's load can sink one step.
    Return (the best passing step, every step).
    """
    steps: list[StepResult] = []
    once = run

    async def run(rate: float) -> StepResult:
        for attempt in range(retries + 1):
            result = await once(rate)
            if result.ok(p99_limit_ms) or attempt == retries:
                return result
            steps.append(result)
            log(result)
    best: StepResult | None = None
    failed: float | None = None
    rate = start
    for _ in range(down):  # the first rate may already be too high: ``down`` tries, each ``factor`` lower
        result = await run(rate)
        steps.append(result)
        log(result)
        if result.ok(p99_limit_ms):
            best = result
            break
        failed, rate = rate, rate / factor
    while best is not None and failed is None and rate * factor <= cap:
        rate *= factor
        result = await run(rate)
        steps.append(result)
        log(result)
        if result.ok(p99_limit_ms):
            best = result
        else:
            failed = rate
    for _ in range(refine if best is not None and failed is not None else 0):
        rate = (best.rate * failed) ** 0.5
        result = await run(rate)
        steps.append(result)
        log(result)
        if result.ok(p99_limit_ms):
            best = result
        else:
            failed = rate
    return best, steps


def dump(path, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=lambda o: o.as_dict() if hasattr(o, "as_dict") else str(o))
