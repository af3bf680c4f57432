"""Every read that more than one door needs."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from . import protocol
from .models import Membership, Room, RoomEvent
from .services import EVENTS_KEPT


def rooms_visible_to(*, user) -> QuerySet[Room]:
    """Public rooms and the private rooms ``user`` is a member of."""
    member_of = Membership.objects.filter(user=user).values("room_id")
    return Room.objects.filter(private=False) | Room.objects.filter(pk__in=member_of)


def room_seq(*, room_id: int) -> int:
    return Room.objects.values_list("seq", flat=True).get(pk=room_id)


def room_seqs(*, room_ids: list[int]) -> dict[int, int]:
    """Current seq of each room, in one query."""
    return dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "seq"))


def event_frames(*, room_id: int, after: int, upto: int) -> list[protocol.RoomEventFrame]:
    """The room's events with after < seq <= upto, encoded with each message's current state."""
    events = (
        RoomEvent.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto)
        .select_related("message__room", "message__author")
        .order_by("seq")
    )
    return [protocol.event_frame(kind=e.kind, seq=e.seq, message=e.message, by=e.by) for e in events]


@dataclass(frozen=True)
class Resume:
    """What `joined` says and replays: the room's seq, the events to replay, resync."""

    seq: int
    frames: list[protocol.RoomEventFrame]
    resync: bool


def room_resume(*, room_id: int, since: int | None) -> Resume:
    """The room's current seq and the events after ``since`` (PROTOCOL.md 3.3, item 4).

    The seq is read first: seqs commit in order, so every event up to it is committed.
    """
    seq = room_seq(room_id=room_id)
    if since is None or since == seq:
        return Resume(seq=seq, frames=[], resync=False)
    if since > seq or since < 0 or seq - since > EVENTS_KEPT:
        return Resume(seq=seq, frames=[], resync=True)
    return Resume(seq=seq, frames=event_frames(room_id=room_id, after=since, upto=seq), resync=False)
