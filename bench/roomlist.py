"""The live room list: what each way of keeping unread badges current costs (docs/decisions.md).

A. join all: the page's socket joins every room of the user; a post reaches each online
   member's socket as the room's ordinary `message` frame, and the layer carries it once per
   server process (the hub's room group). Extra cost: each page load joins R rooms.
B. a per-user summary frame: a post sends each online member a small frame with the room's
   new unread count, through their user group: one layer message per member per post, and the
   counts come from the database (one grouped query per post).

Measured here, in-process, on the configured database (SQLite by default; DATABASE_URL for
PostgreSQL) and channel layer (REDIS_URL for Redis; else in-memory):

- the page-load cost of A: the server's work for one `join` with `since` (access check,
  membership, resume), per room, times R;
- per post, A: encoding the frame once + one group_send; B: the grouped unread query for the
  room's members + one group_send per online member;
- bytes per socket: the `message` frame (A) against a summary frame (B).

Run:  .venv/bin/python bench/roomlist.py [--members 200] [--rooms 20] [--runs 30]
      DATABASE_URL=postgres://… REDIS_URL=redis://127.0.0.1:6379/14 .venv/bin/python bench/roomlist.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ["CHAT_POST_RATE"] = "0"

import django  # noqa: E402

django.setup()

from channels.layers import get_channel_layer  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count, OuterRef, Subquery  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from chat import protocol, rules, selectors, services  # noqa: E402
from chat.models import Membership, Message, Room  # noqa: E402


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def unread_counts(room: Room) -> dict[int, int]:
    """B's query: each member's unread count in ``room`` after a post."""
    unread = (
        Message.objects.filter(room=room, seq__gt=OuterRef("read_seq"), deleted=False)
        .exclude(author=OuterRef("user"))
        .order_by()
        .values("room")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return dict(Membership.objects.filter(room=room).annotate(n=Subquery(unread)).values_list("user_id", "n"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=200, help="members of the busy room, all online")
    parser.add_argument("--rooms", type=int, default=20, help="rooms per user (joined on each page load in A)")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, keepdb=False)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(args) -> None:
    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"u{i}") for i in range(args.members)])
    busy = Room.objects.create(slug="busy", name="Busy")
    Membership.objects.bulk_create([Membership(room=busy, user=u) for u in users])
    reader = users[0]
    rooms = [busy] + [Room.objects.create(slug=f"r{i}", name=f"r{i}") for i in range(args.rooms - 1)]
    Membership.objects.bulk_create([Membership(room=r, user=reader) for r in rooms[1:]])
    for i in range(50):  # some history to count
        services.message_post(room=busy, author=users[1 + i % 5], body=f"message {i}", client_id=str(uuid.uuid4()))

    # A, page load: one join with `since` per room (what the consumer does for each).
    def join_all():
        for room in rooms:
            access = rules.room_access(user=reader, slug=room.slug, door=rules.Door.SOCKET)
            services.room_join(access=access, user=reader)
            selectors.room_resume(room_id=room.pk, since=room.seq)

    join_runs = timed(join_all, args.runs)

    # Per post.
    message, _ = services.message_post(room=busy, author=users[1], body="Lunch at noon? " * 4, client_id=str(uuid.uuid4()))
    frame_a = protocol.encode(protocol.message_frame(message=message, seq=message.seq))
    frame_b = json.dumps({"type": "rooms.unread", "room": "busy", "seq": message.seq, "unread": 12}, separators=(",", ":"))
    encode_runs = timed(lambda: protocol.encode(protocol.message_frame(message=message, seq=message.seq)), args.runs * 10)
    query_runs = timed(lambda: unread_counts(busy), args.runs)
    assert len(unread_counts(busy)) == args.members

    layer = get_channel_layer()
    payload = {"type": "chat.bench", "text": frame_b}

    async def sends(n: int) -> list[float]:
        out = []
        for _ in range(args.runs):
            start = time.perf_counter()
            for i in range(n):
                await layer.group_send(f"chat.bench.{i}", payload)
            out.append(time.perf_counter() - start)
        return out

    send_one = asyncio.run(sends(1))
    send_all = asyncio.run(sends(args.members))

    layer_name = type(layer).__name__
    db = connection.vendor
    if db == "postgresql":
        db = f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 100}"
    print(
        f"{args.members} online members in the busy room, {args.rooms} rooms per user; "
        f"{db}, {layer_name}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; median of {args.runs} runs"
    )
    print("| cost | A: join all rooms | B: per-user summary frame |")
    print("|---|---|---|")
    print(f"| page load (server work to subscribe) | {median_ms(join_runs):.1f} ms ({args.rooms} joins) | 0 (one socket, no joins) |")
    print(
        f"| per post, server | encode once {median_ms(encode_runs) * 1000:.0f} µs + 1 group_send "
        f"{median_ms(send_one):.2f} ms | unread query {median_ms(query_runs):.2f} ms + {args.members} group_sends "
        f"{median_ms(send_all):.1f} ms |"
    )
    print(f"| per post, layer messages | 1 per server process | {args.members} (one per online member) |")
    print(f"| per post, bytes per socket | {len(frame_a)} (the message frame) | {len(frame_b)} (a summary) |")
    print(
        f"| per post, bytes to all sockets | {len(frame_a) * args.members:,} | {len(frame_b) * args.members:,} |"
    )


if __name__ == "__main__":
    main()
