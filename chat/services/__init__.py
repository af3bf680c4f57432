"""Every write. Each function validates, stores in one transaction, and announces the change
on commit (never before: PROTOCOL.md 3.3, persist then announce).

Functions raise ChatError with a PROTOCOL.md code for refusals; database outages surface as
django.db.OperationalError / InterfaceError, which the doors turn into `unavailable`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .. import protocol, realtime, rules
from ..models import Membership, Message, Room, RoomEvent
from ..protocol import ChatError

# Events kept per room for resuming; PROTOCOL.md promises replay of the last 500.
EVENTS_KEPT = 500
_PRUNE_EVERY = 100

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


# --- validation -----------------------------------------------------------------------


def validate_body(body: str) -> str:
    """Return ``body`` trimmed, or raise invalid."""
    body = body.strip()
    if not body:
        raise ChatError(protocol.INVALID, "The message is empty.")
    if len(body) > Message.MAX_BODY:
        raise ChatError(protocol.INVALID, f"Messages are limited to {Message.MAX_BODY} characters.")
    return body


def validate_client_id(client_id: str) -> str:
    if not 1 <= len(client_id) <= 64 or not client_id.isprintable():
        raise ChatError(protocol.INVALID, "`client_id` must be 1-64 printable characters.")
    return client_id


def validate_slug(slug: str) -> str:
    if not SLUG_RE.fullmatch(slug):  # fullmatch: `$` alone lets a trailing newline through
        raise ChatError(protocol.INVALID, "Room names are 1-64 lowercase letters, digits, '-' or '_'.")
    return slug


# --- posting rate ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float


def post_rate() -> Rate | None:
    """Parse CHAT_POST_RATE ("10/10s", "0" for none)."""
    value = str(settings.CHAT_POST_RATE).strip()
    if value in ("", "0"):
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?", value)
    if not match:
        raise ValueError(f"CHAT_POST_RATE must look like '10/10s' or '0', not {value!r}")
    return Rate(int(match[1]), float(match[2]))


def check_post_rate(*, user) -> None:
    """Raise rate_limited if ``user`` stored CHAT_POST_RATE messages within the sliding window.

    The messages themselves are the log, so every door and every process share one budget.
    """
    rate = post_rate()
    if rate is None:
        return
    now = timezone.now()
    recent = list(
        Message.objects.filter(author=user, created_at__gt=now - timedelta(seconds=rate.seconds))
        .order_by("-created_at")
        .values_list("created_at", flat=True)[: rate.count]
    )
    if len(recent) >= rate.count:
        retry_after = (recent[-1] + timedelta(seconds=rate.seconds) - now).total_seconds()
        raise ChatError(protocol.RATE_LIMITED, "You are posting too fast.", retry_after=max(retry_after, 0.01))


# --- room events ----------------------------------------------------------------------


def _next_seq(room_id: int) -> int:
    """Take the room's next seq. Must run inside the transaction that stores the change.

    The UPDATE locks the room row until commit, so seqs commit in order and without gaps
    (a database sequence could commit out of order).
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET seq = seq + 1 WHERE id = %s RETURNING seq", [room_id])
        return cursor.fetchone()[0]


def _record_event(*, message: Message, kind: str, seq: int, by: str = "") -> None:
    """Store the event and announce it once the transaction commits."""
    RoomEvent.objects.create(room_id=message.room_id, seq=seq, kind=kind, message=message, by=by)
    if seq % _PRUNE_EVERY == 0:
        RoomEvent.objects.filter(room_id=message.room_id, seq__lte=seq - EVENTS_KEPT - _PRUNE_EVERY).delete()
    frame = protocol.event_frame(kind=kind, seq=seq, message=message, by=by)
    room_id = message.room_id
    transaction.on_commit(lambda: realtime.room_event_publish(room_id=room_id, frame=frame))


# --- messages -------------------------------------------------------------------------


def message_post(*, room: Room, author, body: str, client_id: str) -> tuple[Message, bool]:
    """Store a message and broadcast it; return (message, created).

    A repeated ``client_id`` of the same author returns the original (in whatever room it
    was posted) with created False: nothing stored, broadcast or counted against the rate.
    """
    client_id = validate_client_id(client_id)
    existing = Message.objects.select_related("room", "author").filter(author=author, client_id=client_id).first()
    if existing is not None:
        return existing, False
    # PROTOCOL.md 3.4's order: permissions, then the body.
    room = rules.check_post(rules.room_access(user=author, room=room)).room
    body = validate_body(body)
    check_post_rate(user=author)
    try:
        with transaction.atomic():
            seq = _next_seq(room.pk)
            message = Message.objects.create(room=room, author=author, seq=seq, body=body, client_id=client_id)
            _record_event(message=message, kind=protocol.MESSAGE, seq=seq)
    except IntegrityError:
        # Another door stored the same client_id in between.
        existing = Message.objects.select_related("room", "author").filter(author=author, client_id=client_id).first()
        if existing is None:
            raise
        return existing, False
    return message, True


def _message_for_update(message_id: int, user, *, admin: bool = False) -> tuple[Message, rules.RoomAccess]:
    message = Message.objects.select_related("room", "author").filter(pk=message_id).first()
    room_access = rules.admin_room_access if admin else rules.room_access
    access = room_access(user=user, room=message.room) if message is not None else None
    if message is None or access is None or not access.visible:
        raise ChatError(protocol.NOT_FOUND, "No such message.")
    return message, access


def message_edit(*, message_id: int, user, body: str) -> Message:
    """The author replaces the body; broadcasts `message.edited`."""
    message, access = _message_for_update(message_id, user)
    rules.check_edit(access, message, user)
    body = validate_body(body)
    with transaction.atomic():
        seq = _next_seq(message.room_id)
        message.body = body
        message.edited_at = timezone.now()
        message.save(update_fields=["body", "edited_at"])
        _record_event(message=message, kind=protocol.MESSAGE_EDITED, seq=seq)
    return message


def message_delete(*, message_id: int, user, admin: bool = False, reason: str = "") -> Message:
    """Soft-delete (author, room moderator or staff); broadcasts `message.deleted`.

    Deleting a deleted message changes nothing and announces nothing. A moderator's
    deletion is written to the moderation log with ``reason``; ``admin`` is the Django
    admin's door, where staff act in private rooms too.
    """
    message, access = _message_for_update(message_id, user, admin=admin)
    by = rules.check_delete(access, message, user)
    if message.deleted:
        return message
    with transaction.atomic():
        seq = _next_seq(message.room_id)
        message.deleted = True
        message.save(update_fields=["deleted"])
        _record_event(message=message, kind=protocol.MESSAGE_DELETED, seq=seq, by=by)
        if by == RoomEvent.By.MODERATOR:
            from .moderation import log_message_delete

            log_message_delete(actor=user, message=message, reason=reason)
    return message


# --- rooms ----------------------------------------------------------------------------


def room_join(*, access: rules.RoomAccess, user) -> Membership | None:
    """Check the user may join; in a public room make them a member on first join."""
    rules.check_join(access)
    if access.role is not None:
        return None
    # A newcomer starts with nothing unread, as in Slack: the backlog is history, not news.
    membership, _ = Membership.objects.get_or_create(
        room=access.room, user=user, defaults={"read_seq": access.room.seq}
    )
    return membership


def room_create(*, owner, slug: str, name: str = "", private: bool = False) -> Room:
    """Create a room owned by ``owner``; raise invalid for a bad or taken slug."""
    slug = validate_slug(slug)
    if slug.startswith("dm-"):
        raise ChatError(protocol.INVALID, "Room names starting with 'dm-' are kept for direct messages.")
    name = (name or slug).strip()[:100]
    try:
        with transaction.atomic():
            room = Room.objects.create(slug=slug, name=name, private=private, owner=owner)
            Membership.objects.create(room=room, user=owner, role=Membership.Role.OWNER)
    except IntegrityError:
        raise ChatError(protocol.INVALID, "That room name is taken.") from None
    return room


# --- room settings and members (REST API) ---------------------------------------------

ROOM_NAME_MAX = 100


def room_update(
    *, access: rules.RoomAccess, name: str | None = None, locked: bool | None = None, actor=None
) -> Room:
    """The owner or a moderator renames or (un)locks the room; None leaves a field as it is.

    Locking and unlocking are moderation actions: logged with ``actor``. Nothing is broadcast;
    `send` and `edit` answer `room_locked` from the next frame on.
    """
    room = rules.check_moderate(access).room
    lock_changed = locked is not None and locked != room.locked
    fields = []
    if name is not None:
        name = name.strip()
        if not 1 <= len(name) <= ROOM_NAME_MAX:
            raise ChatError(protocol.INVALID, f"Room names are 1-{ROOM_NAME_MAX} characters.")
        room.name = name
        fields.append("name")
    if locked is not None:
        room.locked = locked
        fields.append("locked")
    if fields:
        with transaction.atomic():
            room.save(update_fields=fields)
            if lock_changed:
                from .moderation import log_room_lock

                log_room_lock(actor=actor, room=room)
    return room


def member_set(*, access: rules.RoomAccess, user, role: str = Membership.Role.MEMBER) -> tuple[Membership, bool]:
    """Add ``user`` to the room with ``role``, or change their role; return (membership, created)."""
    access = rules.check_visible(access)
    current = Membership.objects.filter(room=access.room, user=user).first()
    rules.check_member_set(access, role=role, current_role=current.role if current else None)
    if current is not None:
        if current.role != role:
            current.role = role
            current.save(update_fields=["role"])
        return current, False
    try:
        with transaction.atomic():
            return Membership.objects.create(room=access.room, user=user, role=role), True
    except IntegrityError:
        # Joined in between (a socket `join`): set the role on that membership.
        return member_set(access=access, user=user, role=role)


def member_remove(*, access: rules.RoomAccess, actor, user) -> None:
    """Remove ``user`` from the room (owner, moderator) or leave it (``actor`` is ``user``).

    Sockets of a removed member leave a private room at once (`kicked`); a public room they
    may read and join again, so their sockets stay.
    """
    access = rules.check_visible(access)
    membership = Membership.objects.filter(room=access.room, user=user).first()
    if membership is None:
        raise ChatError(protocol.NOT_FOUND, "No such member.")
    rules.check_member_remove(access, is_self=actor.pk == user.pk, member_role=membership.role)
    with transaction.atomic():
        membership.delete()
        if actor.pk != user.pk:
            from .moderation import log_member_remove

            log_member_remove(actor=actor, user=user, room=access.room)
    if access.room.private:
        event = {"kick": access.room.pk, "reason": "You left the room." if actor.pk == user.pk else "You were removed."}
        user_id = user.pk
        transaction.on_commit(lambda: realtime.user_event_publish(user_id=user_id, event=event))


# --- API tokens -----------------------------------------------------------------------


def token_obtain(*, user) -> str:
    """Return the user's API token key, creating it on first use (one token per user)."""
    from rest_framework.authtoken.models import Token

    try:
        with transaction.atomic():
            return Token.objects.get_or_create(user=user)[0].key
    except IntegrityError:  # a concurrent request created it
        return Token.objects.get(user=user).key


def token_revoke(*, user) -> bool:
    """Delete the user's API token and close the sockets opened with it (4401).

    Return False if the user had none.
    """
    from rest_framework.authtoken.models import Token

    keys = list(Token.objects.filter(user=user).values_list("key", flat=True))
    if not keys:
        return False
    Token.objects.filter(user=user).delete()
    user_id = user.pk
    for key in keys:
        event = {"close": protocol.CLOSE_UNAUTHENTICATED, "token": key}
        transaction.on_commit(lambda event=event: realtime.user_event_publish(user_id=user_id, event=event))
    return True


# Writes of the live state live in their own module (read positions, direct messages).
from .live import dm_open, read_mark  # noqa: E402,F401

# Moderation (PROTOCOL.md 5): mutes, bans, site bans, restoring, reports, the moderation log.
from .moderation import (  # noqa: E402,F401
    message_report,
    message_restore,
    moderation_log_write,
    mute_lift,
    mute_set,
    report_resolve,
    room_ban_lift,
    room_ban_set,
    site_ban_lift,
    site_ban_set,
)
