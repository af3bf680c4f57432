"""Stored messages/s with and without mentions (issue 15's target: with them at least 0.9x).

A room of 1,000 members; batches of 50 posts through message_post_many (the socket's group
commit), in process, on the database DATABASE_URL names. In the "mentions" runs every post
mentions one member (``status update 17 cc @bench-m341``), in the "plain" runs none
(``status update 17 cc nobody``). The two kinds alternate, ROUNDS times each, in one run, so
both see the same machine; it prints the medians of wall-clock msgs/s and of CPU time per
message (this process's, all threads: the in-memory layer's async_to_sync hops are threads)
and their ratios, beside the reference run in docs/performance.md. A hub runs on a loop
thread, as in a server process (``--no-hub``: none, every publish an async_to_sync hop).

    DATABASE_URL=sqlite:////tmp/notify-bench.sqlite3 .venv/bin/python bench/notify_store.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat_notify .venv/bin/python bench/notify_store.py
    ... bench/notify_store.py --callgrind      # instructions per stored message, noise-free

``--callgrind`` runs each kind under ``valgrind --tool=callgrind`` twice, with
CALLGRIND_BATCHES[0] and [1] batches, and divides the difference in instructions by the
difference in messages: what is not per message cancels out. Instrumentation is off until
the warm-up is done (``--instr-atstart=no``, then ``callgrind_control -i on``), which makes
a run several times faster; the difference is the same. (Instructions of this process
only: PostgreSQL's own work is another process's; SQLite's is counted.)
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ["CHAT_POST_RATE"] = "0"
os.environ.setdefault("DJANGO_DEBUG", "false")  # as the servers run (bench/servers.py): no query log

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from chat import services  # noqa: E402
from chat.models import Membership, Notification, Room  # noqa: E402

MEMBERS, BATCH, BATCHES, ROUNDS = 1000, 50, 10, 7
CALLGRIND_BATCHES = (2, 8)
KINDS = ("plain", "mentions")


def start_hub() -> None:
    """Run this process's hub on a loop thread, as a server process does: committed events
    and notifications are then handed to it (call_soon_threadsafe) instead of each costing
    an async_to_sync hop to the layer in the posting thread."""
    import asyncio
    import threading

    from chat.realtime.hub import ahub

    loop, ready = asyncio.new_event_loop(), threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(ahub())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    if not ready.wait(10):
        raise SystemExit("the hub did not start")


def setup(hub: bool):
    call_command("migrate", verbosity=0)
    if hub:
        start_hub()
    User = get_user_model()
    owner, _ = User.objects.get_or_create(username="bench-owner")
    room = Room.objects.filter(slug="bench-mentions").first() or services.room_create(owner=owner, slug="bench-mentions")
    have = User.objects.filter(username__startswith="bench-m").count()
    User.objects.bulk_create([User(username=f"bench-m{i}") for i in range(have, MEMBERS)])
    users = list(User.objects.filter(username__startswith="bench-m").order_by("pk"))
    Membership.objects.bulk_create([Membership(room=room, user=u) for u in users], ignore_conflicts=True)
    return room, users


class Poster:
    def __init__(self, room, users):
        self.room, self.users, self.posters = room, users, users[:BATCH]
        self.counter = int(time.time() * 1000) * 10 + os.getpid() % 10

    def run(self, kind: str, batches: int) -> tuple[float, float]:
        """Post ``batches`` batches; return (wall seconds, CPU seconds)."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            posts = []
            for author in self.posters:
                self.counter += 1
                target = self.users[(self.counter * 7) % MEMBERS]
                if target.pk == author.pk:
                    target = self.users[-1]
                body = f"status update {self.counter}" + (f" cc @{target.username}" if kind == "mentions" else " cc nobody")
                posts.append(services.Post(room=self.room, author=author, body=body, client_id=f"b{self.counter}"))
            services.message_post_many(posts, skip_locked=True)  # as chat/batching.py calls it
        return time.perf_counter() - wall, time.process_time() - cpu


def measure(rounds: int, batches: int, hub: bool) -> None:
    room, users = setup(hub)
    poster = Poster(room, users)
    poster.run("plain", 2)  # warm-up: compiled queries, regexes, the layer
    poster.run("mentions", 2)
    before = Notification.objects.filter(room=room).count()
    rate = {kind: [] for kind in KINDS}
    cpu = {kind: [] for kind in KINDS}
    n = BATCH * batches
    for _ in range(rounds):
        for kind in KINDS:
            wall_s, cpu_s = poster.run(kind, batches)
            rate[kind].append(n / wall_s)
            cpu[kind].append(cpu_s / n * 1e6)
    made = Notification.objects.filter(room=room).count() - before
    plain, mentions = statistics.median(rate["plain"]), statistics.median(rate["mentions"])
    cpu_plain, cpu_mentions = statistics.median(cpu["plain"]), statistics.median(cpu["mentions"])
    print(f"{django.db.connection.vendor}{'' if hub else ', no hub'}: {rounds} alternating rounds of {n} messages each kind "
          f"(batches of {BATCH}, room of {MEMBERS}); notifications stored: {made} (expected {rounds * n})")
    print("| | stored msgs/s (median) | CPU µs per message (median) |")
    print("|---|---:|---:|")
    print(f"| without mentions | {plain:,.0f} | {cpu_plain:,.0f} |")
    print(f"| one mention each | {mentions:,.0f} | {cpu_mentions:,.0f} |")
    print(f"| ratio (with / without) | {mentions / plain:.2f} | {cpu_mentions / cpu_plain:.2f} |")
    print("per round, msgs/s: " + "; ".join(f"{k} " + " ".join(f"{r:.0f}" for r in rate[k]) for k in KINDS))


def one(kind: str, batches: int, hub: bool) -> None:
    """The body of a callgrind run: the warm-up, then ``batches`` batches of ``kind``."""
    room, users = setup(hub)
    poster = Poster(room, users)
    poster.run("plain", 1)
    poster.run("mentions", 1)
    # Instrument from here on (the run started with --instr-atstart=no); callgrind_control
    # returns once the tool has switched.
    subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True, stdout=subprocess.DEVNULL)
    poster.run(kind, batches)


def callgrind(hub: bool) -> None:
    totals: dict[tuple[str, int], int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            for batches in CALLGRIND_BATCHES:
                out = Path(tmp) / f"cg-{kind}-{batches}.out"
                subprocess.run(
                    ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable, __file__,
                     "--one", kind, "--batches", str(batches), *([] if hub else ["--no-hub"])],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                totals[kind, batches] = int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)[1])
    low, high = CALLGRIND_BATCHES
    per = {kind: (totals[kind, high] - totals[kind, low]) / ((high - low) * BATCH) for kind in KINDS}
    print(f"{django.db.connection.vendor}{'' if hub else ', no hub'}: callgrind, instructions per stored message "
          f"(({high} - {low}) batches of {BATCH}, this process only)")
    print("| | instructions per message |")
    print("|---|---:|")
    print(f"| without mentions | {per['plain']:,.0f} |")
    print(f"| one mention each | {per['mentions']:,.0f} |")
    print(f"| ratio (with / without) | {per['mentions'] / per['plain']:.2f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--batches", type=int, default=BATCHES)
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--no-hub", dest="hub", action="store_false",
                   help="no hub: every publish is an async_to_sync hop to the layer in the posting thread")
    p.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        one(args.one, args.batches, args.hub)
    elif args.callgrind:
        callgrind(args.hub)
    else:
        measure(args.rounds, args.batches, args.hub)
