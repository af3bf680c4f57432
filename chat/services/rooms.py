"""Room settings (PROTOCOL.md 4, 9): the name, the topic and the lock, changed by the room's
owner or a moderator through the REST API or /topic (chat.commands), and announced to the
room's sockets on commit.
"""

from __future__ import annotations

from django.db import transaction

from .. import protocol, realtime, rules
from ..models import Room
from ..protocol import ChatError
from .log import log_room_lock


ROOM_NAME_MAX = 100


def validate_room_name(name: str) -> str:
    """Return ``name`` trimmed, or raise invalid (empty, over ROOM_NAME_MAX, NUL or lone surrogates)."""
    name = protocol.validate_text(name, field="name").strip()
    if not 1 <= len(name) <= ROOM_NAME_MAX:
        raise ChatError(protocol.INVALID, f"Room names are 1-{ROOM_NAME_MAX} characters.")
    return name


ROOM_TOPIC_MAX = 250  # Room.topic's max_length


def validate_room_topic(topic: str) -> str:
    """Return ``topic`` trimmed (empty clears it), or raise invalid (over ROOM_TOPIC_MAX, NUL, lone surrogates)."""
    topic = protocol.validate_text(topic, field="topic").strip()
    if len(topic) > ROOM_TOPIC_MAX:
        raise ChatError(protocol.INVALID, f"A topic is at most {ROOM_TOPIC_MAX} characters.")
    return topic


def room_update(
    *,
    access: rules.RoomAccess,
    actor,
    name: str | None = None,
    locked: bool | None = None,
    topic: str | None = None,
) -> Room:
    """The owner or a moderator renames, (un)locks the room or sets its topic; None leaves a field as it is.

    Decided under the room's lock on ``actor``'s access read there. Locking and unlocking
    are moderation actions: logged with ``actor``. A name or topic that really changed is
    announced on commit to the room's sockets as `room.updated` (unnumbered); a lock is not
    announced: `send` and `edit` answer `room_locked` from the next frame on.
    """
    name = validate_room_name(name) if name is not None else None
    topic = validate_room_topic(topic) if topic is not None else None
    with transaction.atomic():
        room = rules.check_moderate(rules.room_access_locked(access, actor)).room
        lock_changed = locked is not None and locked != room.locked
        texts_changed = (name is not None and name != room.name) or (topic is not None and topic != room.topic)
        fields = []
        if name is not None:
            room.name = name
            fields.append("name")
        if locked is not None:
            room.locked = locked
            fields.append("locked")
        if topic is not None:
            room.topic = topic
            fields.append("topic")
        if fields:
            room.save(update_fields=fields)
            if lock_changed:
                log_room_lock(actor=actor, room=room)
            if texts_changed:  # what the page shows; a lock answers the next send
                text = protocol.encode(protocol.room_updated_frame(room=room))
                room_id = room.pk
                transaction.on_commit(lambda: realtime.room_ephemeral_publish(room_id=room_id, text=text))
    return room
