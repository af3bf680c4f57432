"""Stored messages/s with and without mentions: a room of 1,000 members, batches of 50 posts
through message_post_many (the socket's group commit), every post mentioning one member in
the "mentions" runs. Runs the two kinds interleaved, ROUNDS times, and prints the medians.

    DATABASE_URL=sqlite:////tmp/notify-bench.sqlite3 .venv/bin/python bench/notify_store.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat_notify .venv/bin/python bench/notify_store.py
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ["CHAT_POST_RATE"] = "0"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from chat import services  # noqa: E402
from chat.models import Membership, Notification, Room  # noqa: E402

MEMBERS, BATCH, BATCHES, ROUNDS = 1000, 50, 10, 5


def main() -> None:
    call_command("migrate", verbosity=0)
    User = get_user_model()
    owner, _ = User.objects.get_or_create(username="bench-owner")
    room = Room.objects.filter(slug="bench-mentions").first() or services.room_create(owner=owner, slug="bench-mentions")
    have = User.objects.filter(username__startswith="bench-m").count()
    User.objects.bulk_create([User(username=f"bench-m{i}") for i in range(have, MEMBERS)])
    users = list(User.objects.filter(username__startswith="bench-m").order_by("pk"))
    Membership.objects.bulk_create([Membership(room=room, user=u) for u in users], ignore_conflicts=True)
    posters = users[:BATCH]
    results = {"plain": [], "mentions": []}
    counter = int(time.time() * 1000)
    for _ in range(ROUNDS):
        for kind in ("plain", "mentions"):
            started = time.perf_counter()
            for b in range(BATCHES):
                posts = []
                for i, author in enumerate(posters):
                    counter += 1
                    target = users[(counter * 7) % MEMBERS].username
                    body = f"status update {counter}" + (f" cc @{target}" if kind == "mentions" else " cc nobody")
                    posts.append(services.Post(room=room, author=author, body=body, client_id=f"b{counter}"))
                services.message_post_many(posts)
            results[kind].append(BATCH * BATCHES / (time.perf_counter() - started))
    plain, mentions = statistics.median(results["plain"]), statistics.median(results["mentions"])
    print(f"{django.db.connection.vendor}: stored msgs/s, median of {ROUNDS} runs of {BATCH * BATCHES}: "
          f"without mentions {plain:.0f}, with one mention each {mentions:.0f} ({(mentions / plain - 1) * 100:+.1f}%); "
          f"notifications stored: {Notification.objects.filter(room=room).count()}")


if __name__ == "__main__":
    main()
