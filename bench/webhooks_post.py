"""Posting speed with outgoing webhooks built in: messages stored per second through
message_post (one post per transaction, the REST door) and message_post_many (batches of 50,
the socket's group commit), in a room without subscriptions and in one with a subscription
(outbox rows written, a delivery task enqueued after commit; no worker runs, so nothing is
sent), against the reference: the same posts on the code of another checkout (the main
branch, before webhooks).

Each measurement runs in a fresh child process on its own SQLite database (or PostgreSQL
database, with --postgres), the kinds interleaved, ROUNDS times; the table shows medians.

    .venv/bin/python bench/webhooks_post.py --reference /work/main
    .venv/bin/python bench/webhooks_post.py --reference /work/main --postgres postgres://postgres@127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SINGLE, BATCH, BATCHES = 300, 50, 10


def child(kind: str, database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    os.environ["CHAT_POST_RATE"] = "0"
    os.environ["CHAT_WEBHOOK_ALLOW_PRIVATE"] = "1"
    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from chat import rules, services

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username=f"bench-{kind}-{time.time_ns()}")
    room = services.room_create(owner=user, slug=f"b{time.time_ns()}")
    if kind == "hooked":
        access = rules.room_access(user=user, room=room, door=rules.Door.API)
        services.subscription_create(access=access, actor=user, url="http://127.0.0.1:9/never-called")
    room.refresh_from_db()
    tag = time.time_ns()
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        services.message_post(room=room, author=user, body="counted", client_id=f"q{tag}")
        single_queries = len(queries)
        services.message_post_many(
            [services.Post(room=room, author=user, body=f"counted {i}", client_id=f"q{tag}-{i}") for i in range(BATCH)]
        )
        batch_queries = len(queries) - single_queries
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(SINGLE):
        services.message_post(room=room, author=user, body=f"single {i}", client_id=f"s{tag}-{i}")
    single, single_cpu = SINGLE / (time.perf_counter() - started), SINGLE / (time.process_time() - cpu)
    started, cpu = time.perf_counter(), time.process_time()
    for b in range(BATCHES):
        services.message_post_many(
            [services.Post(room=room, author=user, body=f"batch {b} {i}", client_id=f"b{tag}-{b}-{i}") for i in range(BATCH)]
        )
    n = BATCH * BATCHES
    batched, batched_cpu = n / (time.perf_counter() - started), n / (time.process_time() - cpu)
    print(json.dumps({"single": single, "batched": batched, "single_cpu": single_cpu, "batched_cpu": batched_cpu,
                      "single_queries": single_queries, "batch_queries": batch_queries}))


def run(root: Path, kind: str, database_url: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--database-url", database_url],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=Path, help="a checkout of the code before webhooks (e.g. /work/main)")
    parser.add_argument("--postgres", help="postgres://user@host:port (databases bench_webhooks_*, created if needed)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.getcwd())
        child(args.child, args.database_url)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))

    def url(name: str) -> str:
        if args.postgres:
            base = args.postgres.rstrip("/")
            subprocess.run(["psql", base + "/postgres", "-qc", f"CREATE DATABASE bench_webhooks_{name}"],
                           capture_output=True)
            return f"{base}/bench_webhooks_{name}"
        return f"sqlite:///{tmp / name}.sqlite3"

    setups = []
    if args.reference:
        setups.append(("reference (no webhooks code), room without subscriptions", args.reference, "plain", url("ref")))
    setups.append(("this branch, room without subscriptions", HERE, "plain", url("plain")))
    setups.append(("this branch, room with 1 subscription", HERE, "hooked", url("hooked")))
    keys = ("single", "batched", "single_cpu", "batched_cpu", "single_queries", "batch_queries")
    results = {label: {key: [] for key in keys} for label, *_ in setups}
    for round_ in range(args.rounds):
        # Interleaved, the order turned each round: a loaded machine drifts.
        for label, root, kind, database_url in (setups if round_ % 2 == 0 else setups[::-1]):
            got = run(root, kind, database_url)
            for key in keys:
                results[label][key].append(got[key])
    engine = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\nmessages stored per second ({engine}; medians of {args.rounds} interleaved runs; "
          f"{SINGLE} single posts, {BATCHES} batches of {BATCH})\n")
    print("wall: messages per second of elapsed time; cpu: per second of this process's CPU time (SQLite runs")
    print("in the process; less sensitive to other load); queries: per message_post / per batch of 50\n")
    print(f"| {'setup':<58} | {'post wall':>9} | {'post cpu':>8} | {'batch wall':>10} | {'batch cpu':>9} | {'queries':>7} |")
    print(f"|{'-' * 60}|{'-' * 11}|{'-' * 10}|{'-' * 12}|{'-' * 11}|{'-' * 9}|")
    for label, v in results.items():
        med = {key: statistics.median(v[key]) for key in keys}
        print(f"| {label:<58} | {med['single']:>9.0f} | {med['single_cpu']:>8.0f} | {med['batched']:>10.0f} | "
              f"{med['batched_cpu']:>9.0f} | {med['single_queries']:>3.0f}/{med['batch_queries']:<3.0f} |")


if __name__ == "__main__":
    main()
