"""Notices benchmark (PROTOCOL.md 9): a price feed of K keys at R updates/s, published over
the REST API, to N sockets in one room; some of the sockets stop reading.

    .venv/bin/python bench/notices.py                       # 1,000 sockets, 200 keys, 50 updates/s
    .venv/bin/python bench/notices.py --clients 300 --duration 10    # smaller, on a busy machine

One server (this project on Daphne, SQLite, the in-memory layer, CHAT_NOTICE_RATE default 20),
started fresh for each run; the load generator is one asyncio process on the same cores.
Two runs side by side:

- ``all read``: every socket reads (the reference);
- ``10% stalled``: a tenth of the sockets stop reading right after `joined` (the client
  pauses its transport; their receive buffer is 4 KiB, so the kernel's buffers fill within
  the run and the server has to hold values back), the others read.

With ``--pad B`` both run again with B bytes of padding in every update's data (more bytes
per second into each stalled socket).

Each update's data carries its publish time; a reading socket's latency is receive time minus
that (one clock: the same machine). Reported per run: updates published/s, notices delivered
per second to reading sockets, p50/p99 latency, the server's RSS after connecting and at the
end, its CPU, and for the stalled run the frames the server held back (conflated, from
/metrics). The publisher is open-loop: update k is due at start + k / rate.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import loadgen
import servers
from servers import Server, prepare_database
from wsclient import Client, connect

_T = re.compile(rb'"t":([0-9.]+)')


class Reader:
    """One socket: counts notices and their latency (unless ``stalled``)."""

    def __init__(self, stats: "Stats"):
        self.stats = stats
        self.joined = asyncio.get_running_loop().create_future()
        self.client = None

    def on_text(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"notice"'):
            match = _T.search(payload)
            if match:
                self.stats.record(time.time() - float(match.group(1)))
        elif not self.joined.done() and payload.startswith(b'{"type":"joined"'):
            self.joined.set_result(None)


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.counting = False

    def record(self, latency: float) -> None:
        if self.counting:
            self.latencies.append(latency)


def publisher(port: int, token: str, *, keys: int, rate: float, duration: float, threads: int, pad: int, done: list) -> None:
    """Publish ``rate`` updates/s round-robin over ``keys`` keys for ``duration`` s (open loop)."""
    start = time.time() + 0.2
    total = int(rate * duration)
    lock = threading.Lock()
    state = {"k": 0, "late": 0.0, "errors": 0}

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        while True:
            with lock:
                k = state["k"]
                if k >= total:
                    break
                state["k"] += 1
            due = start + k / rate
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            else:
                state["late"] = max(state["late"], -wait)
            price = 100 + (k % 997) / 10
            data = {"bid": price, "ask": price + 0.1, "t": time.time()}
            if pad:
                data["pad"] = "x" * pad
            body = json.dumps({"key": f"SYM{k % keys:04d}", "data": data})
            conn.request("POST", "/api/v1/rooms/bench/notices/", body, headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                state["errors"] += 1
        conn.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.append({"published": state["k"], "took": time.time() - start, "late_max": state["late"], "errors": state["errors"]})


async def connect_small(port: int, path: str, *, headers: dict, on_text, rcvbuf: int) -> Client:
    """wsclient.connect() with a small receive buffer: a stalled reader whose kernel buffers
    fill within seconds (loopback's autotuned ones would take megabytes first)."""
    import socket

    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    _transport, client = await loop.create_connection(lambda: Client(path, f"127.0.0.1:{port}", headers, on_text), sock=sock)
    await asyncio.wait_for(asyncio.shield(client.opened), 30)
    return client


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def run(label: str, args, db_url: str, tokens: list[str], stalled_share: float, pad: int = 0) -> dict:
    out = Path(args.out)
    server = Server("sqlite", out, db_url=db_url, tokens=tokens, log_name=f"notices-{label}.log")
    try:
        stats = Stats()
        readers = [Reader(stats) for _ in range(args.clients)]
        gate = asyncio.Semaphore(32)

        stalled = int(args.clients * stalled_share)

        async def one(i: int, reader: Reader) -> None:
            headers = {"Authorization": f"Token {tokens[i + 1]}"}
            async with gate:
                if i < stalled:
                    reader.client = await connect_small(server.port, "/ws/chat/bench/", headers=headers,
                                                        on_text=reader.on_text, rcvbuf=4096)
                else:
                    reader.client = await connect(server.port, "/ws/chat/bench/", headers=headers, on_text=reader.on_text)
                await asyncio.wait_for(reader.joined, 60)

        t0 = time.monotonic()
        await asyncio.gather(*(one(i, r) for i, r in enumerate(readers)))
        connect_s = time.monotonic() - t0
        for reader in readers[:stalled]:
            reader.client.transport.pause_reading()
        reading = args.clients - stalled
        await asyncio.sleep(1)
        rss_connected = loadgen.rss_bytes(server.target.pid)
        cpu0 = loadgen.server_cpu_seconds(server.target.pid)
        stats.counting = True
        done: list = []
        thread = threading.Thread(target=publisher, args=(server.port, tokens[0]),
                                  kwargs={"keys": args.keys, "rate": args.rate, "duration": args.duration,
                                          "threads": 2, "pad": pad, "done": done})
        began = time.monotonic()
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the last updates' deliveries
        elapsed = time.monotonic() - began
        stats.counting = False
        cpu = loadgen.server_cpu_seconds(server.target.pid) - cpu0
        rss_end = loadgen.rss_bytes(server.target.pid)
        conflated = metric(server.port, "chat_notices_conflated_total")
        sent = metric(server.port, "chat_notices_sent_total")
        for reader in readers:
            reader.client.close()
        lat = sorted(stats.latencies)
        pub = done[0]
        expected = pub["published"] * reading
        return {
            "label": label, "pad": pad, "clients": args.clients, "stalled": stalled, "connect_s": connect_s,
            "published": pub["published"], "publish_rate": pub["published"] / pub["took"], "publish_errors": pub["errors"],
            "publisher_late_max_s": pub["late_max"],
            "delivered": len(lat), "expected": expected, "deliveries_per_s": len(lat) / elapsed,
            "p50_ms": loadgen._percentile(lat, 0.50) * 1000 if lat else None,
            "p99_ms": loadgen._percentile(lat, 0.99) * 1000 if lat else None,
            "max_ms": lat[-1] * 1000 if lat else None,
            "rss_connected_mb": rss_connected / 2**20, "rss_end_mb": rss_end / 2**20,
            "server_cpu": cpu / elapsed, "server_sent": sent, "server_conflated": conflated,
        }
    finally:
        server.stop()


def table(results: list[dict]) -> str:
    rows = [
        ("sockets (stalled)", lambda r: f"{r['clients']} ({r['stalled']})"),
        ("bytes of padding per update", lambda r: f"{r['pad']}"),
        ("updates published/s", lambda r: f"{r['publish_rate']:.1f}"),
        ("notices delivered/s (reading sockets)", lambda r: f"{r['deliveries_per_s']:,.0f}"),
        ("delivered / published × reading", lambda r: f"{r['delivered'] / r['expected']:.3f}" if r["expected"] else "-"),
        ("latency p50 ms", lambda r: f"{r['p50_ms']:.1f}"),
        ("latency p99 ms", lambda r: f"{r['p99_ms']:.1f}"),
        ("latency max ms", lambda r: f"{r['max_ms']:.1f}"),
        ("server RSS after connecting, MiB", lambda r: f"{r['rss_connected_mb']:.0f}"),
        ("server RSS at the end, MiB", lambda r: f"{r['rss_end_mb']:.0f}"),
        ("server CPU (share of one core)", lambda r: f"{r['server_cpu']:.2f}"),
        ("frames held back (conflated)", lambda r: f"{r['server_conflated']:,.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'':<{width}} | " + " | ".join(f"{r['label']:>14}" for r in results) + " |",
             f"|{'-' * (width + 2)}|" + "|".join("-" * 16 for _ in results) + "|"]
    for name, cell in rows:
        lines.append(f"| {name:<{width}} | " + " | ".join(f"{cell(r):>14}" for r in results) + " |")
    return "\n".join(lines)


async def main(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db_url, setup = prepare_database("sqlite", out, "", users=args.clients + 1, rooms=1)
    tokens = setup["tokens"]  # tokens[0] owns the room "bench": the publisher
    results = []
    runs = [("all read", 0.0, 0), ("10% stalled", args.stalled, 0)]
    if args.pad:
        runs += [(f"all read, +{args.pad} B", 0.0, args.pad), (f"stalled, +{args.pad} B", args.stalled, args.pad)]
    for label, share, pad in runs:
        print(f"run: {label}", flush=True)
        result = await run(label, args, db_url, tokens, share, pad)
        print(json.dumps(result), flush=True)
        results.append(result)
    print()
    print(f"{args.clients} sockets in one room, {args.keys} keys, {args.rate:g} updates/s for {args.duration:g} s "
          f"(CHAT_NOTICE_RATE {servers.PROJECT_ENV.get('CHAT_NOTICE_RATE', '20 (default)')}):")
    print(table(results))
    (out / "notices.json").write_text(json.dumps(results, indent=2))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="updates per second, over all keys")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--stalled", type=float, default=0.1, help="share of sockets that stop reading")
    parser.add_argument("--pad", type=int, default=0,
                        help="also run both with this many bytes of padding in each update's data (fills a "
                        "stalled socket's kernel buffers within the run, so the server has to hold values back)")
    parser.add_argument("--out", default="/tmp/chat-bench-notices")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
