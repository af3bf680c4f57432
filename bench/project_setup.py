"""Prepare a database for bench/fanout.py: migrate, then users with API tokens and rooms.

Run with DATABASE_URL set (bench/fanout.py does it); prints JSON
``{"tokens": [...], "rooms": {"one": slug, "many": [slugs]}}`` on stdout.

Users are bulk-created with unusable passwords (hashing 5,000 passwords would take minutes)
and tokens with generated keys: the server authenticates each socket by its token, exactly as
for a real program. Rooms are made with services.room_create().

    DATABASE_URL=sqlite:////tmp/x.sqlite3 python bench/project_setup.py --users 5000 --rooms 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

_parser = argparse.ArgumentParser()
_parser.add_argument("--users", type=int, default=5000)
_parser.add_argument("--rooms", type=int, default=100)
_parser.add_argument("--project", default=str(Path(__file__).resolve().parent.parent))
ARGS = _parser.parse_args()
sys.path.insert(0, ARGS.project)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from chat import services  # noqa: E402
from chat.models import Room  # noqa: E402

ONE_ROOM = "bench"


def main() -> None:
    args = ARGS

    call_command("migrate", verbosity=0)
    User = get_user_model()
    names = [f"bench{i:05d}" for i in range(args.users)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create(
        [User(username=name, password="!") for name in names if name not in existing], batch_size=1000
    )
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    have_token = set(Token.objects.filter(user__in=users.values()).values_list("user_id", flat=True))
    Token.objects.bulk_create(
        [Token(user=u, key=Token.generate_key()) for u in users.values() if u.pk not in have_token], batch_size=1000
    )
    keys = dict(Token.objects.filter(user__in=users.values()).values_list("user__username", "key"))

    owner = users[names[0]]
    many = [f"bench_{i:03d}" for i in range(args.rooms)]
    have_room = set(Room.objects.filter(slug__in=[ONE_ROOM, *many]).values_list("slug", flat=True))
    for slug in [ONE_ROOM, *many]:
        if slug not in have_room:
            services.room_create(owner=owner, slug=slug)
    json.dump({"tokens": [keys[name] for name in names], "rooms": {"one": ONE_ROOM, "many": many}}, sys.stdout)


if __name__ == "__main__":
    main()
