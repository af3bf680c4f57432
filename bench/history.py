"""History paging at depth: keyset (the API's) against DRF's LimitOffsetPagination.

On PostgreSQL, fills a room with N messages (default 1,000,000; kept between runs), then times
three pages of 50 — the newest, one 500,000 messages deep and the oldest (1,000,000 deep) — with:

- keyset: selectors.message_history() + message_payload(), what the view does;
- keyset over HTTP: GET /api/v1/rooms/<slug>/messages/?before=… through Django's full stack
  in-process (token auth, room access, throttle off, JSON rendering);
- offset: DRF LimitOffsetPagination on the same queryset (its COUNT(*) included, as DRF runs it).

Run:  DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat .venv/bin/python bench/history.py
      [--messages 1000000] [--runs 200] [--offset-runs 30] [--drop]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ["CHAT_READ_RATE"] = "0"  # measure the page, not the throttle

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.pagination import LimitOffsetPagination  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.test import APIClient, APIRequestFactory  # noqa: E402

from chat import selectors, services  # noqa: E402
from chat.models import Message, Room, RoomEvent  # noqa: E402
from chat.protocol import message_payload  # noqa: E402

SLUG = "bench-history"
LIMIT = 50


def fill(room: Room, author, count: int) -> None:
    """Messages with seqs 1..count in one INSERT … SELECT (seconds, not hours)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Message._meta.db_table}
                (room_id, author_id, seq, body, html, mentions, reply_count, client_id, created_at, deleted)
            SELECT %s, %s, g, 'message ' || g || ' lorem ipsum dolor sit amet, consectetur adipiscing',
                   '<p>message ' || g || ' lorem ipsum dolor sit amet, consectetur adipiscing</p>', '[]', 0,
                   'bench-' || g, now() - (%s - g) * interval '1 second', false
            FROM generate_series(1, %s) AS g
            """,
            [room.pk, author.pk, count, count],
        )
        Room.objects.filter(pk=room.pk).update(seq=count)
        cursor.execute(f"ANALYZE {Message._meta.db_table}")


def prepare(count: int, drop: bool):
    user = get_user_model().objects.get_or_create(username="bench-history")[0]
    room = Room.objects.filter(slug=SLUG).first()
    if room is not None and (drop or room.seq != count):
        print(f"dropping {SLUG} ({room.seq} messages)", flush=True)
        with connection.cursor() as cursor:  # in SQL: the ORM's cascade would load every row
            for model in (RoomEvent, Message):
                cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE room_id = %s", [room.pk])
        room.delete()
        room = None
    if room is None:
        room = services.room_create(owner=user, slug=SLUG, name="History benchmark")
        started = time.perf_counter()
        fill(room, user, count)
        print(f"filled {count:,} messages in {time.perf_counter() - started:.1f} s", flush=True)
        room.refresh_from_db()
    token = Token.objects.get_or_create(user=user)[0].key
    return room, token


def timed(fn, runs: int) -> list[float]:
    fn()  # warm: connection, plans, caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--offset-runs", type=int, default=30)
    parser.add_argument("--drop", action="store_true", help="refill the room even if it is there")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run this on PostgreSQL: set DATABASE_URL=postgres://…")

    room, token = prepare(args.messages, args.drop)
    n = args.messages
    # Pages: (label, rows skipped from the newest end). "1,000,000 deep" is the oldest page.
    pages = [("newest", 0), (f"{n // 2:,} deep", n // 2), (f"{n:,} deep", n - LIMIT)]

    client = APIClient(SERVER_NAME="localhost")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    factory = APIRequestFactory()
    offset_queryset = Message.objects.filter(room=room).select_related("room", "author").order_by("-seq")

    def keyset(skip):
        before = None if skip == 0 else n - skip + 1

        def run():
            page = selectors.message_history(room=room, before=before, limit=LIMIT)
            rows = [message_payload(m) for m in page.messages]
            assert len(rows) == LIMIT and rows[-1]["seq"] == n - skip
        return run

    def keyset_http(skip):
        url = f"/api/v1/rooms/{SLUG}/messages/?limit={LIMIT}" + ("" if skip == 0 else f"&before={n - skip + 1}")

        def run():
            response = client.get(url)
            assert response.status_code == 200 and len(response.json()["results"]) == LIMIT
        return run

    def offset(skip):
        request = Request(factory.get(f"/?limit={LIMIT}&offset={skip}"))

        def run():
            rows = LimitOffsetPagination().paginate_queryset(offset_queryset, request)
            payload = [message_payload(m) for m in rows]
            assert len(payload) == LIMIT and payload[0]["seq"] == n - skip
        return run

    methods = [
        ("keyset (selector)", keyset, args.runs),
        ("keyset (HTTP view)", keyset_http, args.runs),
        ("LimitOffsetPagination", offset, args.offset_runs),
    ]
    results = {}
    for name, make, runs in methods:
        for label, skip in pages:
            samples = timed(make(skip), runs)
            results[name, label] = (statistics.median(samples), p99(samples), runs)
            print(f"  {name:24} {label:>14}: median {results[name, label][0]:8.2f} ms", flush=True)

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print()
    print(f"{n:,} messages in one room, limit {LIMIT}; PostgreSQL {pg_version}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    header = f"| {'method':24} | {'page':>16} | {'runs':>4} | {'median ms':>9} | {'p99 ms':>8} | {'vs newest (median)':>18} |"
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    for name, _make, _runs in methods:
        base = results[name, "newest"][0]
        for label, _skip in pages:
            median, high, runs = results[name, label]
            print(f"| {name:24} | {label:>16} | {runs:>4} | {median:9.2f} | {high:8.2f} | {median / base:17.1f}x |")


if __name__ == "__main__":
    main()
