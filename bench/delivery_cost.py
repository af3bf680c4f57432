"""CPU cost per delivery of each server, and of the load generator, measured without the clock.

    .venv/bin/python bench/delivery_cost.py                          # callgrind, the servers (slow: ~15 min)
    .venv/bin/python bench/delivery_cost.py --measure gen-callgrind  # callgrind, the load generator
    .venv/bin/python bench/delivery_cost.py --measure cpu --repeat 5 # CPU time (user + system), no valgrind

bench/fanout.py measures capacity in deliveries/s on a shared two-core machine, where the
server, the load generator and other work take the cores from one another. This script
measures what one delivery costs instead:

- ``server-callgrind``: the server runs under ``valgrind --tool=callgrind``; instructions
  (user space, every thread: the database thread too) are counted over a fixed load, less
  an idle interval's count scaled to the load's duration (timers, the hub's poll), divided by
  the deliveries. Deterministic within a few per cent, whatever else runs on the machine.
- ``gen-callgrind``: the same, of the load generator's process (bench/wsclient.py and the
  per-delivery bookkeeping of bench/loadgen.py), the server running natively.
- ``cpu``: no valgrind; user + system CPU seconds of both processes over the load (the
  kernel's socket work included, which callgrind does not see), every server in turn,
  ``--repeat`` loads per server process, ``--cycles`` times through the servers.

Under callgrind the project runs as bench/cost_asgi.py (its timed background work once an
hour) and Daphne waits 600 s for a handshake; connections open one at a time.

The load is closed loop so that it does not depend on how fast anything runs: in each round
each of ``--senders`` clients sends one message (the benchmark's body, see bench/loadgen.py)
and the next round starts once every client has every message. N clients in one room; each
message goes to all N (the sender too). ``--rounds`` rounds for the load (the tutorial, ~20x
slower, gets ``--tutorial-rounds``).

The load generator runs in a subprocess of its own (``client`` mode) so that it alone can be
put under callgrind or timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
from loadgen import Target, Tally  # noqa: E402

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
VALGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no"]


# --- the load generator's side (a subprocess: `delivery_cost.py client ...`) -----------------


async def client_main(args) -> None:
    tokens = json.loads(Path(args.tokens).read_text()) if args.tokens else []
    target = Target(kind=args.kind, port=args.port, pid=0, tokens=tokens)
    room = None if args.kind == "bare" else "bench"
    tally = Tally()
    # One at a time when the server runs under callgrind (Daphne gives a handshake 5 s).
    peers, _ = await loadgen.connect_peers(target, [room] * args.clients, tally, concurrency=args.concurrency)
    await loadgen.settle(tally, quiet=1.0)
    senders = peers[: args.senders]
    reply("ready")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            break
        if line[0] == "idle":
            await asyncio.sleep(float(line[1]))
            reply("done")
        elif line[0] == "load":
            rounds = int(line[1])
            step = loadgen.next_step()
            total = rounds * len(senders)
            tally.reset(step)
            for peer in peers:
                peer.seen = bytearray(total)
            cpu0, t0 = time.process_time(), time.monotonic()
            k = 0
            for _ in range(rounds):
                for sender in senders:
                    body = b"%s%d:%d:%d~%s" % (loadgen.MARK, step, k, int(time.monotonic() * 1e6), loadgen.FILLER)
                    sender.client.send_text(target.frame(room or "", body, k, step))
                    k += 1
                want, deadline = k * len(peers), time.monotonic() + 300
                while tally.delivered < want and time.monotonic() < deadline:
                    await asyncio.sleep(0.002)
            if args.kind == "project":  # every ack in too
                deadline = time.monotonic() + 10
                while tally.acks + tally.errors < total and time.monotonic() < deadline:
                    await asyncio.sleep(0.002)
            wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
            reply(json.dumps({"deliveries": tally.delivered, "expected": total * len(peers), "dups": tally.dups,
                              "errors": tally.errors, "seconds": wall, "cpu": cpu}))
    await loadgen.close_peers(peers)


def reply(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- the orchestrator -------------------------------------------------------------------------


class Client:
    """The load generator's subprocess, optionally under callgrind."""

    def __init__(self, kind: str, port: int, tokens: Path | None, args, wrap: list[str], concurrency: int):
        argv = [*wrap, PY, str(Path(__file__).resolve()), "client", "--kind", kind, "--port", str(port),
                "--clients", str(args.clients), "--senders", str(args.senders), "--concurrency", str(concurrency)]
        if tokens:
            argv += ["--tokens", str(tokens)]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=BENCH)
        self.expect("ready")

    def expect(self, what: str | None = None) -> str:
        line = self.process.stdout.readline().strip()
        if not line or (what and line != what):
            raise RuntimeError(f"client said {line!r}, expected {what!r}")
        return line

    def ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.expect()

    def quit(self) -> None:
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(120)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.process.kill()


def callgrind(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True, timeout=120)


def dumped_instructions(out: Path, pid: int, label: str) -> int:
    """The Ir of the dump triggered as ``callgrind_control -d label`` (its file's summary line)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in out.glob(f"cg-*.{pid}.out*"):
            text = path.read_text(errors="replace")
            if f"Trigger: Client Request: {label}" in text or f"Trigger: dump {label}" in text:
                m = re.search(r"^summary: (\d+)", text, re.M)
                if m:
                    return int(m.group(1))
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump {label!r} of {pid} in {out}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_server(kind: str, out: Path, db_url: str | None, wrap: list[str], quiet: bool = False):
    import servers

    if ":" in kind:  # "sqlite:/tmp/before": the project at that directory (a `git archive` of a commit)
        kind, servers.PROJECT = kind.split(":", 1)[0], Path(kind.split(":", 1)[1]).resolve()
    else:
        servers.PROJECT = servers.ROOT

    base = kind.removesuffix("-uvicorn")
    asgi = "uvicorn" if kind.endswith("-uvicorn") else "daphne"
    config = servers.config(base if base in ("bare", "tutorial") else "project", out, db_url=db_url, asgi=asgi,
                            wrap=wrap, name=f"cost-{kind}")
    config = replace(config, start_timeout=600 if wrap else 60)
    if wrap and config.server == "daphne":  # under valgrind a handshake may take longer than Daphne's 5 s
        config = replace(config, flags=[*config.flags, "--websocket_connect_timeout", "600"])
    if quiet and base not in ("bare", "tutorial"):  # bench/cost_asgi.py: no timed background work
        config = replace(config, app="cost_asgi:application",
                         env={**config.env, "PYTHONPATH": os.pathsep.join([str(servers.PROJECT), str(BENCH)])})
    process = servers.harness.Process(config, out)
    process.start()
    process.wait_healthy()
    return process


def measure_one(kind: str, args, out: Path, db_url: str | None, tokens_file: Path | None) -> dict:
    """One server process: connect, then (callgrind) idle and load dumps, or (cpu) --repeat loads."""
    server_wrap = gen_wrap = []
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", kind)
    if args.measure == "server-callgrind":
        server_wrap = [*VALGRIND, f"--callgrind-out-file={out}/cg-server-{safe}.%p.out"]
    elif args.measure == "gen-callgrind":
        gen_wrap = [*VALGRIND, f"--callgrind-out-file={out}/cg-gen-{safe}.%p.out"]
    server = start_server(kind, out, db_url, server_wrap, quiet=args.measure == "server-callgrind")
    ckind = "bare" if kind == "bare" else "tutorial" if kind == "tutorial" else "project"
    rounds = args.tutorial_rounds if kind == "tutorial" else args.rounds
    try:
        client = Client(ckind, server.port, tokens_file if ckind == "project" else None, args, gen_wrap,
                        concurrency=1 if args.measure == "server-callgrind" else 32)
        try:
            client.ask(f"load {max(1, rounds // 4)}")  # warm-up: first-use costs, caches, the JIT-free interpreter's specializations
            if args.measure == "cpu":
                rows = []
                for _ in range(args.repeat):
                    before = cpu_seconds(server.pid)
                    result = json.loads(client.ask(f"load {rounds}"))
                    result["server_cpu"] = cpu_seconds(server.pid) - before
                    rows.append(result)
                return {"kind": kind, "rows": rows}
            pid = server.pid if args.measure == "server-callgrind" else client.process.pid
            callgrind("-z", pid)
            client.ask(f"idle {args.idle}")
            callgrind(f"--dump=idle-{safe}", pid)
            idle = dumped_instructions(out, pid, f"idle-{safe}")
            result = json.loads(client.ask(f"load {rounds}"))
            callgrind(f"--dump=load-{safe}", pid)
            load = dumped_instructions(out, pid, f"load-{safe}")
            # The idle dump covers --idle s plus the dump's own round trip; close enough.
            idle_rate = idle / args.idle
            result.update(idle_ir=idle, load_ir=load, idle_ir_per_s=idle_rate,
                          ir_per_delivery=(load - idle_rate * result["seconds"]) / max(result["deliveries"], 1))
            return {"kind": kind, "rows": [result]}
        finally:
            client.quit()
    finally:
        server.stop(60)


def main(args) -> None:
    import servers

    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("cg-*"):
        old.unlink()
    db_url = tokens_file = None
    if any(k not in ("bare", "tutorial") for k in args.servers):
        db_url, setup = servers.prepare_database("sqlite", out, "", args.clients + 10, 1)
        tokens_file = out / "tokens.json"
        tokens_file.write_text(json.dumps(setup["tokens"]))
    results: dict[str, list[dict]] = {k: [] for k in args.servers}
    for _ in range(1 if args.measure != "cpu" else args.cycles):
        for kind in args.servers:
            r = measure_one(kind, args, out, db_url, tokens_file)
            results[kind].extend(r["rows"])
            for row in r["rows"]:
                print(kind, json.dumps(row), flush=True)
    print()
    print(summary(results, args))


def summary(results: dict[str, list[dict]], args) -> str:
    lines = [f"{args.clients} clients in one room, {args.senders} senders, closed loop; measure: {args.measure}"]
    if args.measure == "cpu":
        lines.append(f"{'server':<16} {'deliveries':>10} {'server µs/deliv':>16} {'generator µs/deliv':>19}  (median of runs; min-max)")
        for kind, rows in results.items():
            s = sorted(r["server_cpu"] / r["deliveries"] * 1e6 for r in rows)
            g = sorted(r["cpu"] / r["deliveries"] * 1e6 for r in rows)
            lines.append(f"{kind:<16} {rows[0]['deliveries']:>10,} {s[len(s) // 2]:>9.2f} ({s[0]:.1f}-{s[-1]:.1f})"
                         f" {g[len(g) // 2]:>9.2f} ({g[0]:.1f}-{g[-1]:.1f})")
    else:
        who = "server" if args.measure == "server-callgrind" else "load generator"
        lines.append(f"{'server':<16} {'deliveries':>10} {who + ' instructions/delivery':>34} {'idle Ir/s':>12}")
        for kind, rows in results.items():
            r = rows[0]
            lines.append(f"{kind:<16} {r['deliveries']:>10,} {r['ir_per_delivery']:>34,.0f} {r['idle_ir_per_s']:>12,.0f}")
    bad = [k for k, rows in results.items() for r in rows if r["deliveries"] != r["expected"] or r["dups"] or r["errors"]]
    if bad:
        lines.append(f"INCOMPLETE (lost, duplicated or refused): {sorted(set(bad))}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode")
    c = sub.add_parser("client")
    c.add_argument("--kind", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--tokens")
    c.add_argument("--clients", type=int, default=100)
    c.add_argument("--senders", type=int, default=10)
    c.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--measure", choices=["server-callgrind", "gen-callgrind", "cpu"], default="server-callgrind")
    p.add_argument("--servers", default="bare,sqlite,sqlite-uvicorn,tutorial",
                   help="any of bare, tutorial, sqlite (the project on Daphne), sqlite-uvicorn; a project kind "
                        "with :DIR measures the project at DIR (e.g. sqlite:/tmp/before, a `git archive` of a commit)")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--rounds", type=int, default=20, help="rounds of the load: rounds x senders messages")
    p.add_argument("--tutorial-rounds", type=int, default=4)
    p.add_argument("--idle", type=float, default=10.0, help="seconds of the idle interval (callgrind)")
    p.add_argument("--repeat", type=int, default=3, help="loads per server process (cpu)")
    p.add_argument("--cycles", type=int, default=2, help="times through every server, interleaved (cpu)")
    p.add_argument("--work", default="/tmp/chat-cost")
    args = p.parse_args(argv)
    if args.mode != "client":
        args.servers = [s for s in args.servers.split(",") if s]
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.mode == "client":
        asyncio.run(client_main(arguments))
    else:
        main(arguments)
