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
import json
import zoneinfo
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from .. import protocol, realtime, rules
from ..models import Membership, Message, Notification, Room, UserPreferences
from .digests import digests_schedule, emailable_sql

Kind = Notification.Kind


class StoredNotification(NamedTuple):
    """A notification just stored, as notifications_deliver() reads it (as it reads a
    Notification with its ``message`` loaded)."""

    pk: int
    user_id: int
    message_id: int
    message: Message
    kind: str
    created_at: datetime


ROOM_MENTION = "room"
INSERT_CHUNK = 2000  # notification rows per INSERT on SQLite (6 parameters each)
_PRECEDENCE = {Kind.DM: 0, Kind.MENTION: 1, Kind.REPLY: 2, Kind.ROOM: 3}


def _dm_other(room: Room, author_id: int) -> int | None:
    """The other person of a direct-message room (its dm_key is "<low id>:<high id>")."""
    if not room.dm_key:
        return None
    ids = [int(part) for part in room.dm_key.split(":")]
    others = [i for i in ids if i != author_id]
    return others[0] if others else None


def notify_for_posted(
    *,
    messages: Sequence[Message],
    reply_roots: dict[int, int] | None = None,
    mentioned: dict[int, dict[str, int]] | None = None,
    room_mentions: Collection[int] = (),
    payloads: dict[int, protocol.MessageShape] | None = None,
) -> list[StoredNotification]:
    """Store the notifications ``messages`` (just posted, or just edited) make; deliver them,
    and schedule the email digests of the users who are away, once the transaction commits.

    Should be called inside the transaction that stores the messages, holding their rooms'
    locks (message_post_many, message_edit): a notification exists exactly when its message
    does. Each message needs ``room`` and ``author`` loaded. What the bodies say comes from
    their rendering (services.messages.render_bodies, which parsed them once):
    ``mentioned`` maps a message's id to the {username: user id} it renders as mentions,
    ``room_mentions`` holds the ids of the messages whose body writes ``@room``.
    ``reply_roots`` maps a message's id to the author id of the message it replies to (the
    author of the root is notified with kind ``reply``). ``payloads`` maps a message's id to
    its MESSAGE if the caller built it already (for the room's frame): the `notification`
    frames carry the same one.

    Whether each user may still read the room is asked again here, under the locks, in the
    INSERT itself (rules.readers_sql). A batch that notifies nobody costs no query; one that
    does, that one statement, and two more with ``@room`` (the author's role, the members).
    """
    reply_roots = reply_roots or {}
    mentioned = mentioned or {}
    wanted: dict[int, dict[int, str]] = {}  # message id -> {user id: kind}
    by_id: dict[int, Message] = {}
    for message in messages:
        if message.deleted:
            continue
        targets: dict[int, str] = {}
        other = _dm_other(message.room, message.author_id)
        if other is not None:
            targets[other] = Kind.DM
        for user_id in mentioned.get(message.pk, {}).values():
            targets.setdefault(user_id, Kind.MENTION)
        if reply_roots.get(message.pk) is not None:
            targets.setdefault(reply_roots[message.pk], Kind.REPLY)
        targets.pop(message.author_id, None)
        if targets or message.pk in room_mentions:
            wanted[message.pk] = targets
            by_id[message.pk] = message
    if not wanted:
        return []
    _add_room_mentions(by_id, [mid for mid in wanted if mid in room_mentions], mentioned, wanted)
    rows = [
        (message_id, user_id, kind)
        for message_id, targets in wanted.items()
        for user_id, kind in targets.items()
        if user_id != by_id[message_id].author_id
    ]
    created, emailable = _insert(rows, by_id) if rows else ([], [])
    if created:
        # robust: the messages are stored whatever happens to their delivery (logged, not raised).
        transaction.on_commit(lambda: notifications_deliver(created, emailable=emailable, payloads=payloads), robust=True)
    return created


def _insert(
    rows: list[tuple[int, int, str]], by_id: dict[int, Message]
) -> tuple[list[StoredNotification], list[tuple[int, str]]]:
    """Store the (message id, user id, kind) rows whose user may read the message's room
    (rules.readers_sql) and has no notification of that message yet (an edit's); return
    those stored, and the (id, username) of their users who would get an email digest
    (digests.emailable_sql).

    One statement, INSERT … SELECT … ON CONFLICT DO NOTHING … RETURNING, written out: the
    rule is asked, the rows stored, their ids and the digests' question read in one round
    trip, under the rooms' locks; Django's bulk_create would cost more Python than the
    INSERT costs the database (it prepares every field of every row, and makes a model
    instance of each). The rows (_rows_sql) go to PostgreSQL as one JSON array, to SQLite
    as a VALUES list, INSERT_CHUNK rows a statement.
    """
    now = timezone.now()
    quote = connection.ops.quote_name
    table = quote(Notification._meta.db_table)
    shared = {}  # message id -> (room id, seq, private): what a message's rows have in common
    for message_id, message in by_id.items():
        shared[message_id] = (message.room_id, message.seq, int(message.room.private))
    values = []  # (user, message, room, seq, kind, private): p.column1 … p.column6 below
    for message_id, user_id, kind in rows:
        room_id, seq, private = shared[message_id]
        values.append((user_id, message_id, room_id, seq, kind, private))
    readable, readable_params = rules.readers_sql(user="u", room="p.column3", private="p.column6")
    stored: list[tuple[int, int, int, str | None]] = []
    for rows_sql, rows_params in _rows_sql(values):
        sql = (
            f"INSERT INTO {table} (user_id, message_id, room_id, seq, kind, created_at)"
            f" SELECT p.column1, p.column2, p.column3, p.column4, p.column5, %s"
            f" FROM {rows_sql} JOIN {quote(get_user_model()._meta.db_table)} u ON u.id = p.column1"
            f" WHERE {readable}"
            # (user, message) is unique: an edit skips those notified before; the ids are
            # matched by it below, whatever order RETURNING keeps (SQLite 3.35+ has RETURNING).
            f" ON CONFLICT DO NOTHING RETURNING id, message_id, user_id, {emailable_sql(f'{table}.user_id')}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [connection.ops.adapt_datetimefield_value(now), *rows_params, *readable_params])
            stored += cursor.fetchall()
    kinds = {(message_id, user_id): kind for message_id, user_id, kind in rows}
    created = [StoredNotification(pk, user_id, message_id, by_id[message_id], kinds[message_id, user_id], now)
               for pk, message_id, user_id, _username in sorted(stored)]
    emailable = {user_id: username for _pk, _message_id, user_id, username in stored if username is not None}
    return created, list(emailable.items())


def _rows_sql(values: list[tuple]) -> list[tuple[str, list]]:
    """The notification rows ``values`` (user, message, room, seq, kind, private) as
    relations ``p`` of columns column1 … column6, with their parameters: one per statement.

    PostgreSQL: one JSON array, whatever the number of rows (json.dumps is one C call).
    psycopg binds parameters on the client: it parses the placeholders of every statement
    too long for its cache (a VALUES list of six per row is), and dumps arrays (unnest)
    element by element in Python; either costs more (docs/performance.md, issue 15).
    SQLite: a VALUES list (its json_each and json_extract cost it more), INSERT_CHUNK rows a
    statement (an ``@room`` of a large room stays under its 32,766 parameters).
    """
    if connection.vendor == "postgresql":
        types = ["bigint", "bigint", "bigint", "bigint", "text", "integer"]
        columns = ", ".join(f"(r.value ->> {i})::{kind} AS column{i + 1}" for i, kind in enumerate(types))
        return [(f"(SELECT {columns} FROM jsonb_array_elements(%s::jsonb) AS r) AS p", [json.dumps(values)])]
    statements = []
    for start in range(0, len(values), INSERT_CHUNK):
        chunk = values[start : start + INSERT_CHUNK]
        marks = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
        statements.append((f"(VALUES {marks}) AS p", [value for row in chunk for value in row]))
    return statements


def _add_room_mentions(
    by_id: dict[int, Message], ids: list[int], mentioned: dict[int, dict[str, int]], wanted: dict[int, dict[int, str]]
) -> None:
    """Add every member of the room to the targets of the messages ``ids`` (whose body
    writes ``@room``) whose author may mention the room; from anyone else ``@room`` names
    the user called "room", if the rendering found one."""
    if not ids:
        return
    may_mention_room = _may_mention_room([by_id[mid] for mid in ids])
    room_members: dict[int, list[int]] = {}
    if may_mention_room:
        rooms = {by_id[mid].room_id for mid in may_mention_room}
        for room_id, user_id in Membership.objects.filter(room_id__in=rooms).values_list("room_id", "user_id"):
            room_members.setdefault(room_id, []).append(user_id)
    for message_id in may_mention_room:
        message, targets = by_id[message_id], wanted[message_id]
        named_room = mentioned.get(message_id, {}).get(ROOM_MENTION)
        if named_room is not None and targets.get(named_room) == Kind.MENTION:
            del targets[named_room]  # honoured as @room, not as that user's name
        for user_id in room_members.get(message.room_id, ()):
            if user_id != message.author_id:
                _better(targets, user_id, Kind.ROOM)


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


def notifications_deliver(
    notifications: Sequence[Notification | StoredNotification],
    *,
    emailable: list[tuple[int, str]],
    payloads: dict[int, protocol.MessageShape] | None = None,
) -> None:
    """Send each committed notification to every open socket of its user, then schedule
    the email digests of those of ``emailable`` (the (id, username) of the notified users
    who would get one, digests.emailable_sql) who have none open (chat.services.digests).

    One layer message for them all, whatever the number of users and messages; each
    message's MESSAGE is built once (or taken from ``payloads``), however many it notifies.
    """
    by_message: dict[int, list[Notification]] = {}
    for notification in notifications:
        by_message.setdefault(notification.message_id, []).append(notification)
    payloads = payloads or {}
    stamps: dict[datetime, str | None] = {}  # the notifications of one INSERT share their time
    notes = []
    for message_id, group in by_message.items():
        message = group[0].message
        items = []
        for n in group:
            stamp = stamps.get(n.created_at)
            if stamp is None:
                stamp = stamps[n.created_at] = protocol.timestamp(n.created_at)
            items.append([n.user_id, n.pk, n.kind, stamp])
        payload = payloads.get(message_id)
        if payload is None:
            payload = protocol.message_payload(message)
        notes.append({"room": message.room.slug, "message": payload, "items": items})
    realtime.user_notifications_publish(notes=notes)
    if emailable:
        digests_schedule(users=emailable)


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
