"""Who may do what: the one place every door (socket, REST, admin, page) asks.

Each ``check_*`` returns nothing or raises ChatError with the PROTOCOL.md code.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from collections.abc import Collection
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from . import protocol
from .models import Attachment, Membership, Message, Mute, Room, RoomBan, RoomEvent, SiteBan, SiteBanKey, active_until_q
from .protocol import ChatError

Role = Membership.Role
By = RoomEvent.By


class Door(enum.Enum):
    """How the caller came in. Every door asks the same rules; only the admin widens one:
    staff moderators see private rooms there (docs/decisions.md)."""

    SOCKET = "socket"
    API = "api"
    ADMIN = "admin"


def is_site_moderator(user) -> bool:
    """Staff with `chat.moderate` (superusers have it) moderate every room."""
    return user.is_active and user.is_staff and user.has_perm("chat.moderate")


@dataclass(frozen=True)
class RoomAccess:
    """What the caller is in ``room`` right now, and through which ``door``: the one answer
    to "may this caller do this" for the socket, REST, the admin and the page."""

    room: Room
    door: Door
    role: Role | None
    banned: bool
    muted: bool
    site_moderator: bool
    bot: bool = False  # the caller is a bot (PROTOCOL.md 9): it acts only where it is a member

    @property
    def visible(self) -> bool:
        """Private rooms exist only for their members (and for staff moderators in the admin)."""
        if self.door is Door.ADMIN and self.site_moderator:
            return True
        return not self.room.private or self.role is not None

    @property
    def can_join(self) -> bool:
        """Read, join and report: visible and not banned from the room."""
        return self.visible and not self.banned

    @property
    def can_moderate(self) -> bool:
        """Owner, room moderator or staff, and not banned from the room."""
        return self.visible and not self.banned and (self.role in (Role.OWNER, Role.MODERATOR) or self.site_moderator)

    @property
    def can_post(self) -> bool:
        """Post and edit: may join, not muted, and the room not locked (moderators excepted);
        a bot only as a member (public rooms too, once joined)."""
        return (
            self.can_join and not self.muted and (not self.room.locked or self.can_moderate)
            and (not self.bot or self.role is not None)
        )

    @property
    def can_grant_moderator(self) -> bool:
        """Only the owner makes or unmakes moderators (staff too, for rooms without an owner)."""
        return self.can_moderate and (self.role == Role.OWNER or self.site_moderator)


def _access(room: Room, *, door: Door, role: str | None, banned, muted, site_moderator: bool, bot: bool) -> RoomAccess:
    return RoomAccess(
        room=room,
        door=door,
        role=Role(role) if role is not None else None,
        banned=bool(banned),
        muted=bool(muted),
        site_moderator=site_moderator,
        bot=bot,
    )


def room_access(
    *,
    user,
    door: Door,
    room: Room | None = None,
    slug: str | None = None,
    room_id: int | None = None,
    lock: bool = False,
) -> RoomAccess | None:
    """Load the room (by object, slug or id) with the user's standing in one query; None if no room.

    ``lock`` first takes the room's lock, the row lock the room's seq UPDATE takes, until the
    transaction ends: call it so inside transaction.atomic(), before reading what the change
    depends on. The lock is its own statement: under PostgreSQL's READ COMMITTED a statement
    that waited for a lock still reads the other tables as they were when it began, so the
    standing read in the locking statement itself could predate the change it waited for.
    """
    now = timezone.now()
    lookup = {"pk": room.pk} if room is not None else {"slug": slug} if slug is not None else {"pk": room_id}
    if lock:
        locked = Room.objects.select_for_update(no_key=True).filter(**lookup).values_list("pk", flat=True).first()
        if locked is None:
            return None
        lookup = {"pk": locked}
    found = Room.objects.filter(**lookup).annotate(
        _role=Subquery(Membership.objects.filter(room=OuterRef("pk"), user=user).values("role")[:1]),
        _banned=Exists(RoomBan.objects.filter(active_until_q(now), room=OuterRef("pk"), user=user)),
        _muted=Exists(Mute.objects.filter(active_until_q(now), room=OuterRef("pk"), user=user)),
    ).first()
    if found is None:
        return None
    return _access(found, door=door, role=found._role, banned=found._banned, muted=found._muted,
                   site_moderator=is_site_moderator(user), bot=protocol.is_bot(user))


def room_access_locked(access: RoomAccess, user) -> RoomAccess:
    """``user``'s access to ``access.room`` read again under the room's lock, through the same door.

    For a change decided from an access loaded earlier (a view's 404 check): call it inside
    transaction.atomic(), then decide on what it returns. Raise not_found if the room is gone.
    """
    fresh = room_access(user=user, room_id=access.room.pk, door=access.door, lock=True)
    if fresh is None:
        raise ChatError(protocol.NOT_FOUND, "No such room.")
    return fresh


def rooms_lock(room_ids: Collection[int], *, skip_locked: bool = False) -> set[int]:
    """Take the rooms' locks (the row locks their seq UPDATEs take) in id order, the one order
    every writer takes them in, until the transaction ends; return the ids of the rooms locked.

    Call it inside transaction.atomic(), in a statement before the reads the change depends on
    (see room_access). A room that does not exist is not locked. With ``skip_locked`` a room
    whose lock another transaction holds is skipped instead of waited for (SKIP LOCKED: the
    group commit defers that room's posts, chat/batching.py); without, the wait lasts until
    the lock is free or lock_timeout (chat/pgdeadline.py) fails the transaction.

    SQLite has no row locks: its IMMEDIATE transactions hold the database's write lock from
    BEGIN, so every room is "locked" already and nothing is skipped (every id is returned).
    """
    if not connection.features.has_select_for_update:
        return set(room_ids)
    ids = sorted(room_ids)
    if not ids:
        return set()
    table = connection.ops.quote_name(Room._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    # Rows are locked as they leave the sort: in id order.
    skip = " SKIP LOCKED" if skip_locked else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE id IN ({marks}) ORDER BY id FOR NO KEY UPDATE{skip}", ids)
        return {row[0] for row in cursor.fetchall()}


def room_access_many(keys: set[tuple[int, Any, Door]], *, lock: bool = False) -> dict[tuple[int, int, Door], RoomAccess]:
    """room_access for many (room id, user, door) at once: {(room id, user id, door): access}.

    One query whatever the number of pairs, in SQL written out (the group commit asks for
    every batch, and building the equivalent ORM query costs more than running it); a
    missing room has no entry. ``lock`` first takes the rooms' locks with rooms_lock(), in
    a statement of its own (see room_access): call it so inside transaction.atomic(). (The
    group commit calls rooms_lock itself, to skip the rooms it cannot lock at once.)
    """
    if not keys:
        return {}
    pairs = {(room_id, user.pk): user for room_id, user, _door in keys}
    users = {user.pk: user for _, user, _door in keys}
    table = {model: connection.ops.quote_name(model._meta.db_table) for model in (Room, Membership, RoomBan, Mute)}
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    in_force = "x.room_id = r.id AND x.user_id = p.column2 AND (x.until IS NULL OR x.until > %s)"
    values = ", ".join(["(%s, %s)"] * len(pairs))
    sql = (
        f"SELECT r.*, p.column2 AS pair_user,"
        f" (SELECT m.role FROM {table[Membership]} m WHERE m.room_id = r.id AND m.user_id = p.column2) AS pair_role,"
        f" EXISTS (SELECT 1 FROM {table[RoomBan]} x WHERE {in_force}) AS pair_banned,"
        f" EXISTS (SELECT 1 FROM {table[Mute]} x WHERE {in_force}) AS pair_muted"
        f" FROM (VALUES {values}) AS p JOIN {table[Room]} r ON r.id = p.column1"
    )
    if lock:
        rooms_lock({room_id for room_id, _user in pairs})
    params = [now, now] + [value for pair in pairs for value in pair]
    moderators = {user_id: is_site_moderator(user) for user_id, user in users.items()}
    bots = {user_id: protocol.is_bot(user) for user_id, user in users.items()}
    rooms = {(room.pk, room.pair_user): room for room in Room.objects.raw(sql, params)}
    accesses = {}
    for room_id, user, door in keys:
        room = rooms.get((room_id, user.pk))
        if room is not None:
            accesses[room_id, user.pk, door] = _access(
                room, door=door, role=room.pair_role, banned=room.pair_banned, muted=room.pair_muted,
                site_moderator=moderators[user.pk], bot=bots[user.pk],
            )
    return accesses


def check_visible(access: RoomAccess | None) -> RoomAccess:
    """Return ``access`` if the room exists for the user, else raise not_found."""
    if access is None or not access.visible:
        raise ChatError(protocol.NOT_FOUND, "No such room.")
    return access


def check_join(access: RoomAccess | None) -> RoomAccess:
    access = check_visible(access)
    if access.banned:
        raise ChatError(protocol.FORBIDDEN, "You are banned from this room.")
    return access


def check_post(access: RoomAccess | None) -> RoomAccess:
    """Posting and editing: visible, not banned, not muted, room not locked (moderators excepted)."""
    access = check_join(access)
    if access.bot and access.role is None:
        raise ChatError(protocol.FORBIDDEN, "A bot acts only in rooms it is a member of: join the room first.")
    if access.muted:
        raise ChatError(protocol.MUTED, "You are muted in this room.")
    if not access.can_post:  # what is left: the room is locked
        raise ChatError(protocol.ROOM_LOCKED, "This room is locked.")
    return access


def check_edit(access: RoomAccess, message: Message, user) -> None:
    if message.author_id != user.pk:
        raise ChatError(protocol.FORBIDDEN, "Only the author can edit a message.")
    if message.deleted:
        raise ChatError(protocol.NOT_FOUND, "No such message.")
    check_post(access)


def check_react(access: RoomAccess, message: Message) -> None:
    """Reacting: as posting (muted, room_locked), on a message that still stands."""
    check_post(access)
    if message.deleted:
        raise ChatError(protocol.NOT_FOUND, "No such message.")


def check_reply(root: Message | None, *, room_id: int) -> Message:
    """The root a reply to ``root`` attaches to (a reply to a reply goes to that reply's root).

    ``root`` should have its own ``reply_to`` loaded. Raise not_found unless it is a message
    of the room ``room_id`` that is not deleted, in a thread whose root is not deleted.
    """
    if root is None or root.room_id != room_id or root.deleted:
        raise ChatError(protocol.NOT_FOUND, "No such message to reply to.")
    if root.reply_to_id is not None:
        root = root.reply_to
        if root.deleted:
            raise ChatError(protocol.NOT_FOUND, "No such message to reply to.")
    return root


def readers_sql(*, user: str, room: str, private: str) -> tuple[str, list]:
    """The SQL condition "the user may read the room" and its parameters: ``user`` is the
    alias of a row of the user table, ``room`` and ``private`` expressions for the room's id
    and whether it is private (0 or 1).

    PROTOCOL.md 7's "a user who can see the room", the one rule of who a mention or a
    notification may reach: an active user, not banned from the room, and in a private room
    a member. users_who_see() asks it before a transaction; the notifications' INSERT asks it
    in the statement that stores them, under the rooms' locks (so a ban or removal that
    committed first is seen).
    """
    tables = {model: connection.ops.quote_name(model._meta.db_table) for model in (Membership, RoomBan)}
    sql = (
        f"{user}.is_active"
        f" AND NOT EXISTS (SELECT 1 FROM {tables[RoomBan]} x WHERE x.room_id = {room}"
        f" AND x.user_id = {user}.id AND (x.until IS NULL OR x.until > %s))"
        f" AND ({private} = 0 OR EXISTS (SELECT 1 FROM {tables[Membership]} m"
        f" WHERE m.room_id = {room} AND m.user_id = {user}.id))"
    )
    return sql, [connection.ops.adapt_datetimefield_value(timezone.now())]


def users_who_see(pairs: Collection[tuple[Room, int | str]]) -> dict[tuple[int, int | str], int]:
    """Of the (room, user) pairs, the user given by id or by username, those where the user
    may read the room (readers_sql()). {(room id, the id or name given): user id}.

    One query per kind of key (per 2,000 pairs), in SQL written out as room_access_many's
    (the rendering of every batch that names someone asks it).
    """
    seen: dict[tuple[int, int | str], int] = {}
    if not pairs:
        return seen
    by_kind: dict[str, list[tuple[Room, int | str]]] = {}
    for room, key in pairs:
        by_kind.setdefault("username" if isinstance(key, str) else "id", []).append((room, key))
    users = connection.ops.quote_name(get_user_model()._meta.db_table)
    readable, readable_params = readers_sql(user="u", room="p.column1", private="p.column3")
    for column, wanted in by_kind.items():
        for start in range(0, len(wanted), 2000):
            chunk = wanted[start : start + 2000]
            values = ", ".join(["(%s, %s, %s)"] * len(chunk))
            sql = (
                f"SELECT p.column1, p.column2, u.id FROM (VALUES {values}) AS p"
                f" JOIN {users} u ON u.{connection.ops.quote_name(column)} = p.column2 WHERE {readable}"
            )
            params = [value for room, key in chunk for value in (room.pk, key, int(room.private))] + readable_params
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                for room_id, key, user_id in cursor.fetchall():
                    seen[room_id, key] = user_id
    return seen


def check_delete(access: RoomAccess, message: Message, user) -> str:
    """Return who deletes (`author` or `moderator`), or raise forbidden."""
    check_join(access)
    if message.author_id == user.pk:
        return By.AUTHOR
    if access.can_moderate:
        return By.MODERATOR
    raise ChatError(protocol.FORBIDDEN, "You may not delete this message.")


# --- room settings and members (REST API) ---------------------------------------------


def check_moderate(access: RoomAccess | None) -> RoomAccess:
    """Room settings: visible, and the user is its owner or moderator, or staff."""
    access = check_visible(access)
    if not access.can_moderate:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner and moderators can do that.")
    return access


def check_notice_publish(access: RoomAccess | None, user) -> RoomAccess:
    """Publishing notices (PROTOCOL.md 9): the room's owner and moderators, staff, and the
    room's bots (a bot that is a member of the room; banned or muted ones not)."""
    access = check_join(access)
    allowed = access.can_moderate or (access.bot and access.role is not None and not access.muted)
    if not allowed:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner, moderators and bots can publish notices.")
    return access


def check_member_set(access: RoomAccess | None, *, role: str, current_role: str | None) -> RoomAccess:
    """Adding a member or changing a member's role to ``role`` (`member` or `moderator`)."""
    access = check_moderate(access)
    if role not in (Role.MEMBER, Role.MODERATOR):
        raise ChatError(protocol.INVALID, "The role must be `member` or `moderator`.")
    if current_role == Role.OWNER:
        raise ChatError(protocol.FORBIDDEN, "The owner's role cannot change.")
    if Role.MODERATOR in (role, current_role) and role != current_role and not access.can_grant_moderator:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner grants or removes `moderator`.")
    return access


def check_member_remove(access: RoomAccess | None, *, is_self: bool, member_role: str) -> RoomAccess:
    """Removing a member (owner, moderator) or leaving (oneself); the owner stays."""
    access = check_visible(access)
    if member_role == Role.OWNER:
        raise ChatError(protocol.FORBIDDEN, "The owner cannot leave or be removed.")
    if is_self:
        return access
    if not access.can_moderate:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner and moderators remove members.")
    if member_role == Role.MODERATOR and not access.can_grant_moderator:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner removes a moderator.")
    return access


# --- moderation (PROTOCOL.md 5) -----------------------------------------------------------


def check_site_moderator(user, detail: str = "Only staff moderators can do that.") -> None:
    """Staff-only actions: restoring messages, resolving reports, site bans."""
    if not is_site_moderator(user):
        raise ChatError(protocol.FORBIDDEN, detail)


def check_restrict(access: RoomAccess | None, *, actor, target, target_role: str | None) -> RoomAccess:
    """Muting, banning from a room, and lifting either: the room's owner and moderators, or staff.

    Nobody restricts the owner, staff moderators or themselves; only the owner (or staff)
    restricts a room moderator.
    """
    access = check_moderate(access)
    if target.pk == actor.pk:
        raise ChatError(protocol.FORBIDDEN, "You cannot mute or ban yourself.")
    if target_role == Role.OWNER:
        raise ChatError(protocol.FORBIDDEN, "The room's owner cannot be muted or banned.")
    if is_site_moderator(target):
        raise ChatError(protocol.FORBIDDEN, "Staff moderators cannot be muted or banned.")
    if target_role == Role.MODERATOR and not access.can_grant_moderator:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner mutes or bans a moderator.")
    return access


def check_site_ban(*, actor, target) -> None:
    """Banning from the site, or lifting it: staff moderators; a staff moderator only by a superuser."""
    check_site_moderator(actor, "Only staff moderators ban users from the site.")
    if target.pk == actor.pk:
        raise ChatError(protocol.FORBIDDEN, "You cannot ban yourself.")
    if target.is_superuser:
        raise ChatError(protocol.FORBIDDEN, "Superusers cannot be banned.")
    if is_site_moderator(target) and not actor.is_superuser:
        raise ChatError(protocol.FORBIDDEN, "Only a superuser bans a staff moderator.")


def check_file(access: RoomAccess | None, attachment: Attachment, user) -> None:
    """Fetching an attachment's file (PROTOCOL.md 8), asked on every request; raise not_found.

    An upload not posted yet: its uploader, while they may read the room. A posted one:
    whoever may read its message's room (visible, not banned). Once the message is deleted:
    staff moderators only (they may restore it).
    """
    if attachment.message_id is not None and attachment.message.deleted:
        if is_site_moderator(user):
            return
        raise ChatError(protocol.NOT_FOUND, "No such file.")
    if attachment.message_id is None and attachment.uploader_id != user.pk:
        raise ChatError(protocol.NOT_FOUND, "No such file.")
    if access is None or not access.can_join:
        raise ChatError(protocol.NOT_FOUND, "No such file.")


def check_report(access: RoomAccess | None, message: Message, user) -> RoomAccess:
    """Reporting a message: anyone who may read the room, about a message by someone else."""
    access = check_join(access)
    if message.deleted:
        raise ChatError(protocol.NOT_FOUND, "No such message.")
    if message.author_id == user.pk:
        raise ChatError(protocol.INVALID, "You cannot report your own message.")
    return access


def site_ban_of(user) -> SiteBan | None:
    """The user's site ban if it is in force, else None."""
    if not getattr(user, "pk", None):
        return None
    return SiteBan.objects.filter(active_until_q(timezone.now()), user_id=user.pk).first()


def is_site_banned(user) -> bool:
    return site_ban_of(user) is not None


def credential_digest(key: str) -> str:
    """How SiteBanKey stores a session key or token (both are long random strings)."""
    return hashlib.sha256(key.encode()).hexdigest()


def handshake_banned(*, user, session_key: str | None = None, token: str | None = None) -> bool:
    """True if a WebSocket handshake comes from a site-banned user: an authenticated one, or a
    session key or token that a site ban still in force has ended."""
    if user.is_authenticated:
        return is_site_banned(user)
    digests = [credential_digest(key) for key in (session_key, token) if key]
    if not digests:
        return False
    bans = SiteBan.objects.filter(active_until_q(timezone.now()))
    return SiteBanKey.objects.filter(digest__in=digests, ban__in=bans).exists()


def handshake_banned_many(handshakes: Collection[tuple[Any, str | None, str | None]]) -> list[bool]:
    """handshake_banned() for many (user, session key, token) at once, in order: one query
    for all the authenticated users (the reconnect storm's handshakes, chat/coalesce.py)."""
    user_ids = {user.pk for user, _key, _token in handshakes if user.is_authenticated}
    banned = set()
    if user_ids:
        bans = SiteBan.objects.filter(active_until_q(timezone.now()), user_id__in=user_ids)
        banned = set(bans.values_list("user_id", flat=True))
    return [
        user.pk in banned if user.is_authenticated else handshake_banned(user=user, session_key=key, token=token)
        for user, key, token in handshakes
    ]
