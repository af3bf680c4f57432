"""Mentions and notifications (PROTOCOL.md 7): who a message notifies, stored in the
message's own transaction and delivered to every socket of each notified user after commit;
read state; the inbox's writes.

The post and edit paths make one call, notify_for_posted(), inside their transaction and
under the rooms' locks. Whom a message notifies:

- ``@name`` outside code (chat.formatting), naming an active user who can see the room
  (a public room: anyone not banned from it; a private room: its members);
- in a direct-message room, the other person (every message);
- a reply: the root message's author (``reply_roots``, see notify_for_posted());
- ``@room`` from the room's owner, a moderator or staff: every member of the room (in a
  public room that is everyone who has ever joined it, by any door); from anyone else it is
  an ordinary name.

Never the author. One notification per (user, message), kept by a unique constraint: an
edit notifies only those not notified before, and retracts nothing. When one user is
concerned several ways, the kind is the first of dm, mention, reply, room.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .. import protocol, realtime, rules
from ..formatting import mentioned_usernames
from ..models import Membership, Message, Notification, Room, RoomBan, UserPreferences, active_until_q
from .digests import digests_schedule

Kind = Notification.Kind
ROOM_MENTION = "room"
_PRECEDENCE = {Kind.DM: 0, Kind.MENTION: 1, Kind.REPLY: 2, Kind.ROOM: 3}


def _dm_other(room: Room, author_id: int) -> int | None:
    """The other person of a direct-message room (its dm_key is "<low id>:<high id>")."""
    if not room.dm_key:
        return None
    ids = [int(part) for part in room.dm_key.split(":")]
    others = [i for i in ids if i != author_id]
    return others[0] if others else None


def notify_for_posted(
    *, messages: Sequence[Message], reply_roots: dict[int, int] | None = None
) -> list[Notification]:
    """Store the notifications ``messages`` (just posted, or just edited) make; deliver them,
    and schedule the email digests of the users who are away, once the transaction commits.

    Should be called inside the transaction that stores the messages, holding their rooms'
    locks (message_post_many, message_edit): a notification exists exactly when its message
    does. Each message needs ``room`` and ``author`` loaded. ``reply_roots`` maps a message's
    id to the author id of the message it replies to (the replies' path passes it; the author
    of the root is notified with kind ``reply``). A batch without ``@``, DM rooms or replies
    costs no query.
    """
    reply_roots = reply_roots or {}
    wanted: dict[int, dict[int, str]] = {}  # message id -> {user id: kind}
    names: dict[int, list[str]] = {}
    for message in messages:
        if message.deleted:
            continue
        found = mentioned_usernames(message.body)
        if found:
            names[message.pk] = found
        targets: dict[int, str] = {}
        other = _dm_other(message.room, message.author_id)
        if other is not None:
            targets[other] = Kind.DM
        if reply_roots.get(message.pk) is not None:
            targets.setdefault(reply_roots[message.pk], Kind.REPLY)
        if targets or found:
            wanted[message.pk] = targets
    if not wanted:
        return []
    by_id = {m.pk: m for m in messages}
    _add_mentions(by_id, names, wanted)
    candidates = {(by_id[mid].room_id, uid) for mid, targets in wanted.items() for uid in targets}
    visible = _who_can_see(candidates, rooms={by_id[mid].room for mid in wanted})
    existing = set(
        Notification.objects.filter(message_id__in=list(wanted)).values_list("message_id", "user_id")
    ) if any(by_id[mid].edited_at is not None for mid in wanted) else set()
    rows = []
    for message_id, targets in wanted.items():
        message = by_id[message_id]
        for user_id, kind in targets.items():
            if user_id == message.author_id or (message.room_id, user_id) not in visible:
                continue
            if (message_id, user_id) in existing:
                continue
            rows.append(Notification(user_id=user_id, message=message, room_id=message.room_id, seq=message.seq, kind=kind))
    if not rows:
        return []
    created = Notification.objects.bulk_create(rows)
    # robust: the messages are stored whatever happens to their delivery (logged, not raised).
    transaction.on_commit(lambda: notifications_deliver(created), robust=True)
    return created


def _add_mentions(by_id: dict[int, Message], names: dict[int, list[str]], wanted: dict[int, dict[int, str]]) -> None:
    """Add the users the ``@names`` of each message name (``@room`` when the author may)."""
    if not names:
        return
    all_names = {name for found in names.values() for name in found}
    users = dict(get_user_model().objects.filter(username__in=all_names, is_active=True).values_list("username", "pk"))
    room_callers = [by_id[mid] for mid, found in names.items() if ROOM_MENTION in found]
    may_mention_room = _may_mention_room(room_callers) if room_callers else set()
    room_members: dict[int, list[int]] = {}
    if may_mention_room:
        rooms = {by_id[mid].room_id for mid in may_mention_room}
        for room_id, user_id in Membership.objects.filter(room_id__in=rooms).values_list("room_id", "user_id"):
            room_members.setdefault(room_id, []).append(user_id)
    for message_id, found in names.items():
        targets = wanted.setdefault(message_id, {})
        for name in found:
            if name == ROOM_MENTION and message_id in may_mention_room:
                for user_id in room_members.get(by_id[message_id].room_id, ()):
                    _better(targets, user_id, Kind.ROOM)
            elif name in users:
                _better(targets, users[name], Kind.MENTION)


def _better(targets: dict[int, str], user_id: int, kind: str) -> None:
    current = targets.get(user_id)
    if current is None or _PRECEDENCE[kind] < _PRECEDENCE[current]:
        targets[user_id] = kind


def _may_mention_room(messages: list[Message]) -> set[int]:
    """The ids of ``messages`` whose author is the room's owner, a moderator of it, or staff."""
    pairs = {(m.room_id, m.author_id) for m in messages}
    roles = set(
        Membership.objects.filter(
            room_id__in={r for r, _ in pairs}, user_id__in={a for _, a in pairs},
            role__in=[Membership.Role.OWNER, Membership.Role.MODERATOR],
        ).values_list("room_id", "user_id")
    )
    return {m.pk for m in messages if (m.room_id, m.author_id) in roles or rules.is_site_moderator(m.author)}


def _who_can_see(pairs: set[tuple[int, int]], *, rooms: set[Room]) -> set[tuple[int, int]]:
    """The (room id, user id) of ``pairs`` where the user may read the room: a member of a
    private room, anyone in a public one; an active user, not banned from it."""
    if not pairs:
        return set()
    room_ids = {r for r, _ in pairs}
    user_ids = {u for _, u in pairs}
    private = {room.pk for room in rooms if room.private}
    members = set(
        Membership.objects.filter(room_id__in=private, user_id__in=user_ids).values_list("room_id", "user_id")
    ) if private else set()
    banned = set(
        RoomBan.objects.filter(active_until_q(timezone.now()), room_id__in=room_ids, user_id__in=user_ids)
        .values_list("room_id", "user_id")
    )
    active = set(get_user_model().objects.filter(pk__in=user_ids, is_active=True).values_list("pk", flat=True))
    return {
        (room_id, user_id) for room_id, user_id in pairs
        if user_id in active and (room_id, user_id) not in banned and (room_id not in private or (room_id, user_id) in members)
    }


def notifications_deliver(notifications: Sequence[Notification]) -> None:
    """Send each committed notification to every open socket of its user, then schedule
    the email digests of those who have none (chat.services.digests).

    One layer message for them all, whatever the number of users and messages.
    """
    by_message: dict[int, list[Notification]] = {}
    for notification in notifications:
        by_message.setdefault(notification.message_id, []).append(notification)
    notes = []
    for group in by_message.values():
        message = group[0].message
        items = [[n.user_id, n.pk, n.kind, protocol.timestamp(n.created_at)] for n in group]
        notes.append({"room": message.room.slug, "message": protocol.message_payload(message), "items": items})
    realtime.user_notifications_publish(notes=notes)
    digests_schedule(user_ids={n.user_id for n in notifications})


# --- read state ------------------------------------------------------------------------


def notifications_read_upto(*, user_id: int, room_id: int, seq: int) -> int:
    """Mark read the user's notifications in the room up to ``seq`` (the read position
    reached it, by any door); return how many turned read."""
    return Notification.objects.filter(user_id=user_id, room_id=room_id, seq__lte=seq, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def notifications_mark_read(*, user, ids: Sequence[int] | None = None, all: bool = False) -> int:
    """Mark the user's notifications ``ids`` (or ``all`` of them) read; return how many
    turned read. Ids of other users' notifications are ignored."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if not all:
        unread = unread.filter(pk__in=list(ids or ()))
    return unread.update(read_at=timezone.now())


TIMEZONE_MAX = 64  # UserPreferences.timezone's length


@functools.cache
def _timezone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone this server knows ("" clears it); else ChatError invalid.

    Only the names zoneinfo lists, never a path: ZoneInfo() itself would read any file a key
    names under the zoneinfo directories.
    """
    if not isinstance(name, str) or len(name) > TIMEZONE_MAX or (name and name not in _timezone_names()):
        raise protocol.ChatError(protocol.INVALID, "Unknown time zone: use an IANA name such as Europe/Paris.")
    return name


def preferences_update(
    *, user_id: int, email_notifications: bool | None = None, timezone: str | None = None
) -> UserPreferences:
    """Set the user's preferences (None leaves one as it is); return them.

    ``timezone``: an IANA name (validate_timezone()), or "" for unknown.
    """
    if timezone is not None:
        timezone = validate_timezone(timezone)
    preferences, _ = UserPreferences.objects.get_or_create(user_id=user_id)
    fields = []
    if email_notifications is not None and preferences.email_notifications != email_notifications:
        preferences.email_notifications = email_notifications
        fields.append("email_notifications")
    if timezone is not None and preferences.timezone != timezone:
        preferences.timezone = timezone
        fields.append("timezone")
    if fields:
        preferences.save(update_fields=fields)
    return preferences
