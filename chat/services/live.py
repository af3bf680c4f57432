"""Writes of the live state: read positions, direct-message rooms, new members announced."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from .. import protocol, realtime, rules
from ..models import Membership, Room
from ..protocol import ChatError
from .notifications import notifications_read_upto

DM_PREFIX = "dm-"


def read_mark(*, room: Room, user, seq: int, origin: str | None = None, door: rules.Door = rules.Door.API) -> int:
    """Move the user's read position in the room up to ``seq``; return the position.

    A position never moves backwards (a lower ``seq`` is ignored) and is clamped to the
    room's seq. When it moves, the user's other sockets get a `read` frame (all but
    ``origin``, the socket that said so).
    """
    access = rules.check_join(rules.room_access(user=user, room=room, door=door))
    room = access.room
    target = max(0, min(seq, room.seq))
    joined = False
    if access.role is None:
        joined = Membership.objects.get_or_create(room=room, user=user, defaults={"read_seq": room.seq})[1]
    moved = Membership.objects.filter(room=room, user=user, read_seq__lt=target).update(read_seq=target)
    if joined or moved:
        # The read position reached these messages: their notifications are read too.
        notifications_read_upto(user_id=user.pk, room_id=room.pk, seq=max(target, room.seq if joined else 0))
    if moved:
        event = protocol.read_event(room=room.slug, seq=target, origin=origin)
        transaction.on_commit(lambda: realtime.user_event_publish(user_id=user.pk, event=event))
        return target
    return Membership.objects.values_list("read_seq", flat=True).get(room=room, user=user)


def dm_open(*, user, username: str) -> tuple[Room, bool]:
    """Return (the private two-person room of ``user`` and ``username``, created).

    The pair's room is created once, whichever side asks first (Room.dm_key is unique).
    """
    other = get_user_model().objects.filter(username=username, is_active=True).first()
    if other is None:
        raise ChatError(protocol.NOT_FOUND, "No such user.")
    if other.pk == user.pk:
        raise ChatError(protocol.INVALID, "A direct message needs another user.")
    low, high = sorted([user, other], key=lambda u: u.pk)
    key = f"{low.pk}:{high.pk}"
    existing = Room.objects.filter(dm_key=key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            room = Room.objects.create(
                slug=f"{DM_PREFIX}{low.pk}-{high.pk}",
                name=f"{low.username}, {high.username}",
                private=True,
                dm_key=key,
            )
            Membership.objects.bulk_create([Membership(room=room, user=low), Membership(room=room, user=high)])
    except IntegrityError:
        return Room.objects.get(dm_key=key), False
    announce_membership(room=room, user_ids=[other.pk])
    return room, True


def announce_membership(*, room: Room, user_ids: list[int]) -> None:
    """After commit, tell every socket of each new member their read position in ``room``
    (a `read` frame), so an open room list adds the room at once (docs/decisions.md)."""
    positions = dict(Membership.objects.filter(room=room, user_id__in=user_ids).values_list("user_id", "read_seq"))
    for user_id, seq in positions.items():
        event = protocol.read_event(room=room.slug, seq=seq, origin=None)
        transaction.on_commit(lambda user_id=user_id, event=event: realtime.user_event_publish(user_id=user_id, event=event))
