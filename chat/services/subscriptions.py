"""Outgoing-webhook subscriptions (PROTOCOL.md 9): create, list, delete, and the outbox rows
a room event leaves for them.

A room's ``subscriptions_active`` counts its subscriptions that are not paused; it changes
only here and in chat.services.deliveries, under the room's lock, so a post (which reads
the room under that lock) knows without a query of its own whether to write outbox rows.
Delivery itself is chat.services.deliveries, in the tasks worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import F

from .. import protocol, rules
from ..models import OutboxEvent, Room, Subscription
from ..outgoing import guard
from ..protocol import ChatError
from .deliveries import outbox_prune, subscription_deliver


def subscription_create(*, access: rules.RoomAccess, actor, url: str) -> Subscription:
    """Subscribe ``url`` to the room's events from the next one on (owner, moderators, staff);
    return it, its ``secret`` included. Raise invalid for a URL the guard refuses (checked
    and resolved before the transaction) or past Subscription.MAX_PER_ROOM."""
    rules.check_moderate(access)  # a forbidden caller learns nothing about the URL
    try:
        guard.url_checked(url)
    except guard.Refused as exc:
        raise ChatError(protocol.INVALID, str(exc)) from None
    with transaction.atomic():
        access = rules.check_moderate(rules.room_access_locked(access, actor))
        room = access.room
        if Subscription.objects.filter(room=room).count() >= Subscription.MAX_PER_ROOM:
            raise ChatError(protocol.INVALID, f"A room has at most {Subscription.MAX_PER_ROOM} subscriptions.")
        subscription = Subscription.objects.create(room=room, url=url, created_by=actor, delivered_seq=room.seq)
        Room.objects.filter(pk=room.pk).update(subscriptions_active=F("subscriptions_active") + 1)
    return subscription


def subscriptions_of(*, access: rules.RoomAccess) -> list[Subscription]:
    """The room's subscriptions, oldest first (owner, moderators, staff)."""
    rules.check_moderate(access)
    return list(Subscription.objects.filter(room=access.room).select_related("created_by").order_by("pk"))


def subscription_of(*, access: rules.RoomAccess, subscription_id: int) -> Subscription:
    """One subscription of the room (owner, moderators, staff); not_found otherwise."""
    rules.check_moderate(access)
    found = Subscription.objects.filter(room=access.room, pk=subscription_id).first()
    if found is None:
        raise ChatError(protocol.NOT_FOUND, "No such subscription.")
    return found


def subscription_delete(*, access: rules.RoomAccess, actor, subscription_id: int) -> None:
    """Remove the subscription (owner, moderators, staff); not_found if the room has no such one.
    A delivery under way finds it gone and stops after its current attempt."""
    with transaction.atomic():
        access = rules.check_moderate(rules.room_access_locked(access, actor))
        subscription = Subscription.objects.filter(room=access.room, pk=subscription_id).first()
        if subscription is None:
            raise ChatError(protocol.NOT_FOUND, "No such subscription.")
        subscription.delete()
        if subscription.paused_at is None:
            Room.objects.filter(pk=access.room.pk).update(subscriptions_active=F("subscriptions_active") - 1)
    outbox_prune(room_id=access.room.pk)


# --- the outbox (in the transaction of every room event) -----------------------------------


def outbox_write(*, room: Room, kind: str, frames: Sequence[protocol.RoomEventFrame]) -> None:
    """Keep ``frames`` (room events of type ``kind``) for the room's subscriptions, and wake
    their deliveries once the transaction commits. Nothing, and no query, for a room without
    active subscriptions.

    Should be called in the transaction that records the events, with ``room`` read under
    the room's lock (rules.room_access(lock=True), or room_access_many after rules.rooms_lock).
    """
    if not room.subscriptions_active:
        return
    OutboxEvent.objects.bulk_create(
        [OutboxEvent(room_id=room.pk, seq=frame.seq, type=kind, frame=frame.text) for frame in frames]
    )
    room_id = room.pk
    transaction.on_commit(lambda: subscriptions_wake(room_id=room_id))


def subscriptions_wake(*, room_id: int) -> int:
    """Enqueue a delivery for each active subscription of the room that has none coming
    (``pending`` false); return how many were enqueued. Runs after the events committed."""
    enqueued = 0
    ids = list(
        Subscription.objects.filter(room_id=room_id, paused_at__isnull=True, pending=False).values_list("pk", flat=True)
    )
    for subscription_id in ids:
        with transaction.atomic():
            # Of two wakes at once, one enqueues; the flag and the task commit together.
            if Subscription.objects.filter(pk=subscription_id, pending=False).update(pending=True):
                subscription_deliver.enqueue(subscription_id)
                enqueued += 1
    return enqueued
