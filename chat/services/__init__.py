"""Every write. Each function validates, stores in one transaction, and announces the change
on commit (never before: PROTOCOL.md 3.3, persist then announce).

Functions raise ChatError with a PROTOCOL.md code for refusals; database outages surface as
django.db.OperationalError / InterfaceError, which the doors turn into `unavailable`.
"""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction

from .. import protocol, realtime, rules
from ..models import Membership, Room
from ..protocol import ChatError
from .log import log_member_remove, log_room_lock, moderation_log_write  # noqa: F401
# Mentions and notifications (PROTOCOL.md 7) and their email digests.
from .digests import digest_run, digest_send, digests_recover, digests_schedule, unsubscribe_token, unsubscribe_user_id  # noqa: F401
from .notifications import (  # noqa: F401
    notifications_deliver,
    notifications_mark_read,
    notifications_read_upto,
    notify_for_posted,
    preferences_update,
    validate_timezone,
)

# Outgoing webhooks (PROTOCOL.md 9): subscriptions and their delivery by the tasks worker.
from .deliveries import deliveries_recover, deliveries_run, subscription_deliver, subscription_pause  # noqa: F401
from .subscriptions import (  # noqa: F401
    subscription_create,
    subscription_delete,
    subscription_of,
    subscriptions_of,
    subscriptions_wake,
)

# Messages and their room events (posting, group commit, edits, deletions, the rate).
from .messages import (  # noqa: F401
    DEFERRED,
    EVENTS_KEPT,
    Holds,
    Post,
    PostResult,
    check_post_rate,
    message_delete,
    message_edit,
    message_post,
    message_post_many,
    post_rate,
    recent_posts,
    render_bodies,
    validate_body,
    validate_client_id,
)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def validate_slug(slug: str) -> str:
    protocol.validate_text(slug, field="slug")
    if not SLUG_RE.fullmatch(slug):  # fullmatch: `$` alone lets a trailing newline through
        raise ChatError(protocol.INVALID, "Room names are 1-64 lowercase letters, digits, '-' or '_'.")
    return slug


# --- rooms ----------------------------------------------------------------------------


def room_join(*, access: rules.RoomAccess, user, implicit: bool = False) -> Membership | None:
    """Check the user may join; in a public room make them a member on first join.

    ``implicit``: the join a REST post makes on the way; a bot is not made a member so
    (PROTOCOL.md 9: it joins explicitly, and its post is then refused as `forbidden`).
    """
    rules.check_join(access)
    if access.role is not None or (implicit and access.bot):
        return None
    # A newcomer starts with nothing unread, as in Slack: the backlog is history, not news.
    membership, created = Membership.objects.get_or_create(
        room=access.room, user=user, defaults={"read_seq": access.room.seq}
    )
    if created:
        # The new read position is the room's seq: what notified them here is read.
        notifications_read_upto(user_id=user.pk, room_id=access.room.pk, seq=access.room.seq)
    return membership


def room_create(*, owner, slug: str, name: str = "", private: bool = False) -> Room:
    """Create a room owned by ``owner``; raise invalid for a bad or taken slug."""
    slug = validate_slug(slug)
    if slug.startswith("dm-"):
        raise ChatError(protocol.INVALID, "Room names starting with 'dm-' are kept for direct messages.")
    name = validate_room_name(name or slug)
    try:
        with transaction.atomic():
            room = Room.objects.create(slug=slug, name=name, private=private, owner=owner)
            Membership.objects.create(room=room, user=owner, role=Membership.Role.OWNER)
    except IntegrityError:
        raise ChatError(protocol.INVALID, "That room name is taken.") from None
    return room


# --- room settings and members (REST API) ---------------------------------------------

# Room settings: its name, topic and lock (rooms.py; /topic runs room_update too).
from .rooms import ROOM_NAME_MAX, ROOM_TOPIC_MAX, room_update, validate_room_name, validate_room_topic  # noqa: E402,F401


def member_set(*, access: rules.RoomAccess, actor, user, role: str = Membership.Role.MEMBER) -> tuple[Membership, bool]:
    """Add ``user`` to the room with ``role``, or change their role; return (membership, created).

    Decided under the room's lock, on ``actor``'s access and ``user``'s membership read there.
    """
    with transaction.atomic():
        access = rules.check_visible(rules.room_access_locked(access, actor))
        current = Membership.objects.select_for_update().filter(room=access.room, user=user).first()
        rules.check_member_set(access, role=role, current_role=current.role if current else None)
        if current is not None:
            if current.role != role:
                current.role = role
                current.save(update_fields=["role"])
            return current, False
        # A socket `join` of a public room creates memberships without the room's lock: a
        # savepoint, so that losing that race sets the role on the joiner's membership.
        try:
            with transaction.atomic():
                membership = Membership.objects.create(room=access.room, user=user, role=role)
        except IntegrityError:
            current = Membership.objects.select_for_update().get(room=access.room, user=user)
            rules.check_member_set(access, role=role, current_role=current.role)
            if current.role != role:
                current.role = role
                current.save(update_fields=["role"])
            return current, False
        announce_membership(room=access.room, user_ids=[user.pk])
        return membership, True


def member_remove(*, access: rules.RoomAccess, actor, user) -> None:
    """Remove ``user`` from the room (owner, moderator) or leave it (``actor`` is ``user``).

    Decided under the room's lock, on ``actor``'s access read there. Sockets of a removed
    member leave a private room at once (`kicked`); a public room they may read and join
    again, so their sockets stay.
    """
    with transaction.atomic():
        access = rules.check_visible(rules.room_access_locked(access, actor))
        membership = Membership.objects.filter(room=access.room, user=user).first()
        if membership is None:
            raise ChatError(protocol.NOT_FOUND, "No such member.")
        rules.check_member_remove(access, is_self=actor.pk == user.pk, member_role=membership.role)
        membership.delete()
        if actor.pk != user.pk:
            log_member_remove(actor=actor, user=user, room=access.room)
        if access.room.private:
            reason = "You left the room." if actor.pk == user.pk else "You were removed."
            event = protocol.kick_event(room_id=access.room.pk, reason=reason)
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
        event = protocol.close_event(code=protocol.CLOSE_UNAUTHENTICATED, token=key)
        transaction.on_commit(lambda event=event: realtime.user_event_publish(user_id=user_id, event=event))
    return True


# --- profiles ---------------------------------------------------------------------------

DISPLAY_NAME_MAX = 150  # User.first_name's length


def profile_update(*, user, name: str) -> str:
    """Set the user's display name (User.first_name; "" for none) and return it, trimmed.

    The username stays what @mentions and the protocol use; the name is only shown.
    """
    name = " ".join(name.split())
    if len(name) > DISPLAY_NAME_MAX or not protocol.text_storable(name):
        raise ChatError(protocol.INVALID, f"A display name is at most {DISPLAY_NAME_MAX} characters of text.")
    user.first_name = name
    user.save(update_fields=["first_name"])
    return name


# Writes of the live state live in their own module (read positions, direct messages).
from .live import announce_membership, dm_open, read_mark  # noqa: E402,F401

# Reactions (PROTOCOL.md 6).
from .reactions import reaction_add, reaction_remove  # noqa: E402,F401

# Moderation (PROTOCOL.md 5): mutes, bans, site bans, restoring, reports, the moderation log.
from .moderation import (  # noqa: E402,F401
    message_report,
    message_restore,
    mute_lift,
    mute_set,
    report_resolve,
    room_ban_lift,
    room_ban_set,
    site_ban_lift,
    site_ban_set,
)

# Bots and incoming webhooks (PROTOCOL.md 9).
from .bots import bot_create, bot_end, bots_of, webhook_create, webhook_of_secret, webhook_post, webhook_revoke, webhooks_of  # noqa: E402,F401

# Connect tokens (PROTOCOL.md 9): single-use socket credentials for embedding.
from .connect_tokens import connect_token_issue, connect_token_redeem  # noqa: E402,F401
# Notices (PROTOCOL.md 9): latest-value push, not messages.
from .notices import notice_publish, notices_current  # noqa: E402,F401
