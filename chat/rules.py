"""Who may do what: the one place every door (socket, REST, admin, page) asks.

Each ``check_*`` returns nothing or raises ChatError with the PROTOCOL.md code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from . import protocol
from .models import Membership, Message, Mute, Room, RoomBan, SiteBan, SiteBanKey, active_until_q
from .protocol import ChatError

Role = Membership.Role


def is_site_moderator(user) -> bool:
    """Staff with `chat.moderate` (superusers have it) moderate every room."""
    return user.is_active and user.is_staff and user.has_perm("chat.moderate")


@dataclass(frozen=True)
class RoomAccess:
    """What ``user`` is in ``room`` right now."""

    room: Room
    role: str | None
    banned: bool
    muted: bool
    site_moderator: bool

    @property
    def visible(self) -> bool:
        """Private rooms exist only for their members."""
        return not self.room.private or self.role is not None

    @property
    def moderates(self) -> bool:
        """Owner, room moderator or staff, and not banned from the room."""
        return not self.banned and (self.role in (Role.OWNER, Role.MODERATOR) or self.site_moderator)


def room_access(*, user, room: Room | None = None, slug: str | None = None, room_id: int | None = None) -> RoomAccess | None:
    """Load the room (by object, slug or id) with the user's standing in one query; None if no room."""
    now = timezone.now()
    lookup = {"pk": room.pk} if room is not None else {"slug": slug} if slug is not None else {"pk": room_id}
    found = (
        Room.objects.filter(**lookup)
        .annotate(
            _role=Subquery(Membership.objects.filter(room=OuterRef("pk"), user=user).values("role")[:1]),
            _banned=Exists(RoomBan.objects.filter(active_until_q(now), room=OuterRef("pk"), user=user)),
            _muted=Exists(Mute.objects.filter(active_until_q(now), room=OuterRef("pk"), user=user)),
        )
        .first()
    )
    if found is None:
        return None
    return RoomAccess(
        room=found,
        role=found._role,
        banned=found._banned,
        muted=found._muted,
        site_moderator=is_site_moderator(user),
    )


def room_access_many(pairs: set[tuple[int, Any]]) -> dict[tuple[int, int], RoomAccess]:
    """room_access for many (room id, user) pairs at once: {(room id, user id): access}.

    One query whatever the number of pairs, in SQL written out (the group commit asks for
    every batch, and building the equivalent ORM query costs more than running it); a
    missing room has no entry.
    """
    if not pairs:
        return {}
    users = {user.pk: user for _, user in pairs}
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
    params = [now, now] + [value for room_id, user in pairs for value in (room_id, user.pk)]
    moderators = {user_id: is_site_moderator(user) for user_id, user in users.items()}
    return {
        (room.pk, room.pair_user): RoomAccess(
            room=room,
            role=room.pair_role,
            banned=bool(room.pair_banned),
            muted=bool(room.pair_muted),
            site_moderator=moderators[room.pair_user],
        )
        for room in Room.objects.raw(sql, params)
    }


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
    if access.muted:
        raise ChatError(protocol.MUTED, "You are muted in this room.")
    if access.room.locked and not access.moderates:
        raise ChatError(protocol.ROOM_LOCKED, "This room is locked.")
    return access


def check_edit(access: RoomAccess, message: Message, user) -> None:
    if message.author_id != user.pk:
        raise ChatError(protocol.FORBIDDEN, "Only the author can edit a message.")
    if message.deleted:
        raise ChatError(protocol.NOT_FOUND, "No such message.")
    check_post(access)


def check_delete(access: RoomAccess, message: Message, user) -> str:
    """Return who deletes (`author` or `moderator`), or raise forbidden."""
    check_join(access)
    if message.author_id == user.pk:
        return "author"
    if access.moderates:
        return "moderator"
    raise ChatError(protocol.FORBIDDEN, "You may not delete this message.")


# --- room settings and members (REST API) ---------------------------------------------


def check_moderate(access: RoomAccess | None) -> RoomAccess:
    """Room settings: visible, and the user is its owner or moderator, or staff."""
    access = check_visible(access)
    if not access.moderates:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner and moderators can do that.")
    return access


def _grants_moderator(access: RoomAccess) -> bool:
    """Only the owner makes or unmakes moderators (staff too, for rooms without an owner)."""
    return access.role == Role.OWNER or access.site_moderator


def check_member_set(access: RoomAccess | None, *, role: str, current_role: str | None) -> RoomAccess:
    """Adding a member or changing a member's role to ``role`` (`member` or `moderator`)."""
    access = check_moderate(access)
    if role not in (Role.MEMBER, Role.MODERATOR):
        raise ChatError(protocol.INVALID, "The role must be `member` or `moderator`.")
    if current_role == Role.OWNER:
        raise ChatError(protocol.FORBIDDEN, "The owner's role cannot change.")
    if Role.MODERATOR in (role, current_role) and role != current_role and not _grants_moderator(access):
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner grants or removes `moderator`.")
    return access


def check_member_remove(access: RoomAccess | None, *, is_self: bool, member_role: str) -> RoomAccess:
    """Removing a member (owner, moderator) or leaving (oneself); the owner stays."""
    access = check_visible(access)
    if member_role == Role.OWNER:
        raise ChatError(protocol.FORBIDDEN, "The owner cannot leave or be removed.")
    if is_self:
        return access
    if not access.moderates:
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner and moderators remove members.")
    if member_role == Role.MODERATOR and not _grants_moderator(access):
        raise ChatError(protocol.FORBIDDEN, "Only the room's owner removes a moderator.")
    return access


# --- moderation (PROTOCOL.md 5) -----------------------------------------------------------


class AdminRoomAccess(RoomAccess):
    """Access through the Django admin: staff moderate private rooms there too (docs/decisions.md)."""

    @property
    def visible(self) -> bool:
        return self.site_moderator or super().visible


def admin_room_access(*, user, room: Room | None = None, room_id: int | None = None) -> AdminRoomAccess | None:
    """room_access() for the admin's door; None if no room."""
    access = room_access(user=user, room=room, room_id=room_id)
    if access is None:
        return None
    return AdminRoomAccess(**{f.name: getattr(access, f.name) for f in fields(access)})


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
    if target_role == Role.MODERATOR and not _grants_moderator(access):
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
