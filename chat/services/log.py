"""The moderation log (PROTOCOL.md 5): one append-only entry per moderation action.

Every write that moderates (services.messages, services.moderation, room settings and members)
appends here inside its own transaction, so an action and its entry are stored together or
not at all. This module imports no other service, so any of them can use it.
"""

from __future__ import annotations

from ..models import Message, ModerationLog, Room

Action = ModerationLog.Action
REASON_MAX = 500


def name_of(user) -> str:
    return getattr(user, "username", None) or "someone"


def moderation_log_write(
    *,
    actor,
    action: str,
    summary: str,
    target_user=None,
    message: Message | None = None,
    room: Room | None = None,
    reason: str = "",
) -> ModerationLog:
    """Append one entry to the moderation log. Call it inside the action's transaction,
    so an action and its entry are stored together or not at all."""
    return ModerationLog.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        target_user=target_user,
        message=message,
        room=room if room is not None else (message.room if message is not None else None),
        reason=reason[:REASON_MAX],
        summary=summary[:500],
    )


def log_message_delete(*, actor, message: Message, reason: str = "") -> None:
    """The entry of a moderator's deletion (message_delete writes it in its transaction)."""
    moderation_log_write(
        actor=actor, action=Action.MESSAGE_DELETE, target_user=message.author, message=message, reason=reason,
        summary=f"{name_of(actor)} deleted message #{message.pk} by {name_of(message.author)} in {message.room.slug}",
    )


def log_room_lock(*, actor, room: Room) -> None:
    """The entry of locking or unlocking (room_update writes it in its transaction)."""
    action = Action.ROOM_LOCK if room.locked else Action.ROOM_UNLOCK
    verb = "locked" if room.locked else "unlocked"
    moderation_log_write(actor=actor, action=action, room=room, summary=f"{name_of(actor)} {verb} {room.slug}")


def log_member_remove(*, actor, user, room: Room) -> None:
    """The entry of removing someone else from a room (member_remove writes it)."""
    moderation_log_write(
        actor=actor, action=Action.MEMBER_REMOVE, target_user=user, room=room,
        summary=f"{name_of(actor)} removed {name_of(user)} from {room.slug}",
    )
