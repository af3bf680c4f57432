"""Who may do what: the one place every door (socket, REST, admin, page) asks.

Each ``check_*`` returns nothing or raises ChatError with the PROTOCOL.md code.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from . import protocol
from .models import Membership, Message, Mute, Room, RoomBan, active_until_q
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
        return self.role in (Role.OWNER, Role.MODERATOR) or self.site_moderator


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
