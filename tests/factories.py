"""Test data builders."""

import itertools

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from chat import services
from chat.models import Room

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery"


def make_user(username: str | None = None, **extra):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


def make_room(*, owner=None, slug: str | None = None, private: bool = False) -> Room:
    owner = owner or make_user()
    return services.room_create(owner=owner, slug=slug or f"room{next(_counter)}", private=private)


def make_token(user) -> str:
    return Token.objects.create(user=user).key
