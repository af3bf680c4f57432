"""Notices (PROTOCOL.md 9): a room's latest value per key, pushed to every socket that
joined the room. Not messages: no seq, no history, nothing in the database."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from .. import protocol, realtime, rules
from ..protocol import ChatError


def notice_publish(*, access: rules.RoomAccess, user, key: str, data: Any) -> protocol.Notice:
    """Store ``data`` as the latest value of ``key`` in the room and push it to its sockets.

    ``access`` is the caller's, loaded by the door; the rule is checked here. Raise invalid
    for a bad key or a new key beyond CHAT_NOTICE_MAX_KEYS, too_large for data over
    protocol.NOTICE_DATA_MAX bytes of JSON, forbidden unless the caller may publish.

    No transaction: nothing is written to the database, so the store's write is the commit
    (announced right after it). Two publishers of one key at once: the later ``at`` wins, in
    the store and in every hub.
    """
    access = rules.check_notice_publish(access, user)
    room = access.room
    notice = protocol.notice_encode(room=room.slug, key=key, data=data, at=time.time())
    stored = realtime.notice_store().put(
        room.pk, notice, max_keys=settings.CHAT_NOTICE_MAX_KEYS, ttl=settings.CHAT_NOTICE_TTL
    )
    if stored == 0:
        raise ChatError(protocol.INVALID, f"A room holds at most {settings.CHAT_NOTICE_MAX_KEYS} notice keys.")
    if stored > 0:
        realtime.room_notice_publish(room_id=room.pk, notice=notice)
    return notice


def notices_current(*, access: rules.RoomAccess) -> list[protocol.Notice]:
    """The room's latest value of every key, oldest update first (the caller may see the room)."""
    rules.check_join(access)
    return sorted(realtime.notice_store().all(access.room.pk), key=lambda n: n.at)
