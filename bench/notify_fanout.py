"""Notification delivery across real server processes (issue 15, PROTOCOL.md 7).

    .venv/bin/python bench/notify_fanout.py                        # both parts, PostgreSQL
    .venv/bin/python bench/notify_fanout.py --db sqlite --part room --clients 300 --rates 5,10

(a) ``room``: one Daphne process (in-memory layer), a room of ``--clients`` sockets, each a
    different user; 90% have joined the room (so they get its messages and are members), the
    rest are only connected (a mention still reaches them: the room is public). 10 of the
    joined sockets send, open loop: message k is sent at t0 + k/rate by sender k mod 10 and
    mentions user 10 + k mod (clients - 10) (round robin over all but the senders). Per step: the ``notification``
    frames (deliveries/s, p50/p99 from the *scheduled* send to the frame, none lost), the room
    messages delivered (p99), and the server's CPU per message; each rate runs with mentions
    and again without (``cc nobody``), alternately, so the two see the same machine.
(b) ``redis``: two Daphne processes on Redis (``--redis-url``; its database is flushed), 50
    users with a socket on each process, a sender on the first; each message mentions all 50
    and the next is sent once every socket has its frame. Per message: p50/p99 from the send
    to the frames, and each process's channel-layer messages of type ``user.notifications``
    (chat_layer_messages_sent_total / _received_total from /metrics): the design sends one per
    message to every process, not one per user.

PostgreSQL at ``--pg-url`` (the database is dropped and created; default
``chat_mentions_fanout``) or SQLite in ``--out``. Everything listens on 127.0.0.1, ports from the OS.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
from fanout import machine, raise_nofile  # noqa: E402
from servers import Server, describe_project, prepare_database  # noqa: E402
from wsclient import connect  # noqa: E402

SENDERS = 10
ROOM = "bench"
BODY = re.compile(rb"note (\d+) (\d+) (\d+) cc")
NOTIFICATION = b'{"type":"notification"'


def say(text: str = "") -> None:
    print(text, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Counts:
    """What every socket adds to during a step."""

    def __init__(self, step: int = -1):
        self.step = step
        self.notified: list[float] = []  # latency of each notification frame
        self.delivered: list[float] = []  # latency of each room message
        self.last = 0.0
        self.errors = 0
        self.error_sample = b""
        self.seen: set[tuple[int, int]] = set()  # (k, socket) of notifications: a second is a duplicate
        self.dups = 0


class Socket:
    def __init__(self, i: int, counts: list[Counts]):
        self.i, self.counts, self.client = i, counts, None
        self.joined = asyncio.get_running_loop().create_future()

    def on_text(self, payload: bytes) -> None:
        counts = self.counts[0]
        match = BODY.search(payload)
        if match is None:
            if payload.startswith(b'{"type":"joined"') and not self.joined.done():
                self.joined.set_result(True)
            elif payload.startswith(b'{"type":"error"'):
                counts.errors += 1
                counts.error_sample = payload[:300]
            return
        step, k, sent = (int(x) for x in match.groups())
        if step != counts.step:
            return
        now = time.monotonic()
        latency = now - sent * 1e-6
        if payload.startswith(NOTIFICATION):
            if (k, self.i) in counts.seen:
                counts.dups += 1
                return
            counts.seen.add((k, self.i))
            counts.notified.append(latency)
            counts.last = now
        else:
            counts.delivered.append(latency)


async def open_sockets(port: int, tokens: list[str], paths: list[str], counts: list[Counts]) -> list[Socket]:
    sockets = [Socket(i, counts) for i in range(len(paths))]
    gate = asyncio.Semaphore(32)

    async def one(s: Socket) -> None:
        async with gate:
            s.client = await connect(port, paths[s.i], headers={"Authorization": f"Token {tokens[s.i]}"},
                                     on_text=s.on_text)
            if paths[s.i] != "/ws/chat/":
                await asyncio.wait_for(s.joined, 30)

    await asyncio.gather(*(one(s) for s in sockets))
    return sockets


def send(client, *, step: int, k: int, sent_us: int, tail: str) -> None:
    body = f"note {step} {k} {sent_us} cc {tail}"
    client.send_text(b'{"type":"send","room":"%s","body":"%s","client_id":"n%d-%d"}' % (
        ROOM.encode(), body.encode(), step, k))


async def wait_for(counts: Counts, expected: int, *, quiet: float = 2.0, limit: float = 15.0) -> None:
    start = last_change = time.monotonic()
    seen = -1
    while len(counts.notified) < expected and time.monotonic() - start < limit:
        if len(counts.notified) != seen:
            seen, last_change = len(counts.notified), time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return
        await asyncio.sleep(0.05)


# --- (a) a room of N -----------------------------------------------------------------------


async def part_room(args, db_url: str, tokens: list[str], names: list[str]) -> list[str]:
    n = args.clients
    server = Server(args.db, args.out, db_url=db_url, tokens=tokens, log_name=f"notify-room-{args.db}.log")
    lines = []
    try:
        holder = [Counts()]
        joined = int(n * 0.9)
        paths = [f"/ws/chat/{ROOM}/" if i < joined else "/ws/chat/" for i in range(n)]
        started = time.monotonic()
        sockets = await open_sockets(server.port, tokens, paths, holder)
        say(f"(a) {n} sockets connected in {time.monotonic() - started:.1f} s ({joined} joined {ROOM!r})")
        senders = sockets[:SENDERS]
        step = 0
        lines += [
            f"(a) one process, {args.db}, a room of {n} sockets ({joined} joined, {n - joined} only connected), "
            f"{SENDERS} senders, {args.duration:g} s per step, open loop",
            "",
            "| rate msgs/s | mentions | notification frames (received / expected) | notification deliveries/s "
            "| notification p50 / p99 ms | room deliveries/s | room p99 ms | server CPU µs/msg |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for rate in args.rates:
            for kind in ("mentions", "none"):
                step += 1
                counts = holder[0] = Counts(step)
                total = int(rate * args.duration)
                expected = 0
                cpu0 = loadgen.server_cpu_seconds(server.target.pid)
                t0 = time.monotonic() + 0.2
                for k in range(total):
                    at = t0 + k / rate
                    delay = at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sender = k % SENDERS
                    target = SENDERS + k % (n - SENDERS)  # round robin over the others
                    tail = f"@{names[target]}" if kind == "mentions" else "nobody"
                    expected += kind == "mentions"
                    send(senders[sender].client, step=step, k=k, sent_us=int(at * 1e6), tail=tail)
                if kind == "mentions":
                    await wait_for(counts, expected)
                await loadgen_settle(counts, total * joined)
                cpu = loadgen.server_cpu_seconds(server.target.pid) - cpu0
                got = len(counts.notified)
                window = (counts.last - t0) if got else float("nan")
                room_rate = len(counts.delivered) / args.duration
                line = (
                    f"| {rate:g} | {'one each' if kind == 'mentions' else 'none'} | "
                    + (f"{got} / {expected}" + (f" ({counts.dups} dup)" if counts.dups else "") if kind == "mentions" else "–")
                    + f" | {got / window:,.1f}" * (kind == "mentions") + " | –" * (kind != "mentions")
                    + (f" | {percentile(counts.notified, .5) * 1e3:.0f} / {percentile(counts.notified, .99) * 1e3:.0f}"
                       if kind == "mentions" else " | –")
                    + f" | {room_rate:,.0f} | {percentile(counts.delivered, .99) * 1e3:.0f} | {cpu / total * 1e6:,.0f} |"
                    + (f" errors {counts.errors}: {counts.error_sample!r}" if counts.errors else "")
                )
                say(line)
                lines.append(line)
                await asyncio.sleep(1.0)
        for s in sockets:
            s.client.close()
        await asyncio.sleep(0.5)
    finally:
        server.stop()
    return lines


async def loadgen_settle(counts: Counts, expected_room: int, *, quiet: float = 1.5, limit: float = 20.0) -> None:
    """Wait until the room's deliveries are all in or nothing has come for ``quiet`` s."""
    start = last_change = time.monotonic()
    seen = -1
    while len(counts.delivered) < expected_room and time.monotonic() - start < limit:
        if len(counts.delivered) != seen:
            seen, last_change = len(counts.delivered), time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return
        await asyncio.sleep(0.05)


# --- (b) 50 users on 2 processes on Redis ---------------------------------------------------


def layer_counts(server: Server) -> tuple[float, float]:
    """(sent, received) channel-layer messages of type user.notifications of one process."""
    values = server.process.metrics()
    sent = sum(v for k, v in values.items()
               if k.startswith("chat_layer_messages_sent_total") and 'type="user.notifications"' in k)
    received = sum(v for k, v in values.items()
                   if k.startswith("chat_layer_messages_received_total") and 'type="user.notifications"' in k)
    return sent, received


async def part_redis(args, db_url: str, tokens: list[str], names: list[str]) -> list[str]:
    users = args.mentioned
    subprocess.run(["redis-cli", "-u", args.redis_url, "flushdb"], check=True, capture_output=True)
    a = Server(args.db, args.out, db_url=db_url, tokens=tokens, redis_url=args.redis_url, log_name="notify-redis-a.log")
    b = Server(args.db, args.out, db_url=db_url, tokens=tokens, redis_url=args.redis_url, log_name="notify-redis-b.log")
    lines = []
    try:
        holder = [Counts()]
        # Socket i of the mentioned users: user 1 + i // 2 on process A (even i) or B (odd i).
        mentioned = list(range(1, users + 1))
        sockets = []
        for server, offset in ((a, 0), (b, 1)):
            opened = await open_sockets(server.port, [tokens[u] for u in mentioned], ["/ws/chat/"] * users, holder)
            for s in opened:
                s.i = s.i * 2 + offset
            sockets += opened
        sender = (await open_sockets(a.port, [tokens[0]], [f"/ws/chat/{ROOM}/"], holder))[0]
        await asyncio.sleep(1.0)  # every hub has joined its groups
        tail = " ".join(f"@{names[u]}" for u in mentioned)
        before = (layer_counts(a), layer_counts(b))
        latencies: list[float] = []
        per_message: list[float] = []
        loop_start = time.monotonic()
        for k in range(args.messages):
            counts = holder[0] = Counts(1000 + k)
            at = time.monotonic()
            send(sender.client, step=1000 + k, k=k, sent_us=int(at * 1e6), tail=tail)
            await wait_for(counts, 2 * users, quiet=5.0, limit=10.0)
            latencies += counts.notified
            per_message.append(max(counts.notified) if counts.notified else float("nan"))
            if len(counts.notified) != 2 * users:
                say(f"message {k}: {len(counts.notified)} of {2 * users} frames")
            await asyncio.sleep(args.gap)
        elapsed = time.monotonic() - loop_start
        await asyncio.sleep(0.5)
        after = (layer_counts(a), layer_counts(b))
        (sa, ra), (sb, rb) = ((x[0] - y[0], x[1] - y[1]) for x, y in zip(after, before))
        m = args.messages
        lines += [
            f"(b) two processes on Redis, {args.db}: {users} users with a socket on each process, one sender on "
            f"process A; {m} messages, each mentioning all {users}, sent one after another ({args.gap:g} s apart)",
            "",
            "| notification frames (received / expected) | p50 ms | p99 ms | last frame of a message, median ms "
            "| layer messages per message: A sent, A received, B sent, B received |",
            "|---:|---:|---:|---:|---|",
            f"| {len(latencies)} / {2 * users * m} | {percentile(latencies, .5) * 1e3:.1f} | "
            f"{percentile(latencies, .99) * 1e3:.1f} | {statistics.median(per_message) * 1e3:.1f} | "
            f"{sa / m:.1f}, {ra / m:.1f}, {sb / m:.1f}, {rb / m:.1f} |",
        ]
        for line in lines[-1:]:
            say(line)
        say(f"({elapsed:.1f} s for the {m} messages)")
        for s in [*sockets, sender]:
            s.client.close()
        await asyncio.sleep(0.5)
    finally:
        a.stop()
        b.stop()
    return lines


async def main(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    say(raise_nofile(args.clients + 200))
    say(f"{machine()}; {describe_project()}; load average {open('/proc/loadavg').read().split()[:3]}")
    db_url, setup = prepare_database(args.db, args.out, args.pg_url, max(args.clients, args.mentioned + 1), 0)
    tokens = setup["tokens"]
    names = [f"bench{i:05d}" for i in range(len(tokens))]  # bench/project_setup.py's names, in token order
    lines = []
    if args.part in ("room", "both"):
        lines += await part_room(args, db_url, tokens, names) + [""]
    if args.part in ("redis", "both"):
        lines += await part_redis(args, db_url, tokens, names)
    say("\n" + "\n".join(lines))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/chat_mentions_fanout")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--part", choices=["room", "redis", "both"], default="both")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[10.0, 20.0, 40.0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--mentioned", type=int, default=50)
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--gap", type=float, default=0.2)
    p.add_argument("--out", type=Path, default=Path("/tmp/chat-notify-bench"))
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
