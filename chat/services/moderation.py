"""Moderation writes (PROTOCOL.md 5): mutes, room bans, site bans, restoring messages and
reports, each appending to the moderation log (services.log).

Each function checks its rule in ``chat.rules``, stores in one transaction, logs in that
same transaction, and announces on commit. Every door (REST, socket, admin) calls these,
so every door logs the same way.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .. import protocol, realtime, rules, selectors
from ..models import Membership, Message, Mute, Report, Room, RoomBan, SiteBan, SiteBanKey
from ..protocol import ChatError
from .log import REASON_MAX, Action, moderation_log_write, name_of as _name
from .messages import _message_locked, _next_seq, _record_event, message_delete, thread_recount


# --- validation -------------------------------------------------------------------------


def validate_until(until: datetime | None) -> datetime | None:
    """Return ``until`` (aware), or None for "until lifted"; raise invalid for a past time."""
    if until is None:
        return None
    if timezone.is_naive(until):
        until = timezone.make_aware(until)
    if until <= timezone.now():
        raise ChatError(protocol.INVALID, "`until` must be in the future.")
    return until


def validate_reason(reason: str | None) -> str:
    reason = protocol.validate_text(reason or "", field="reason").strip()
    if len(reason) > REASON_MAX:
        raise ChatError(protocol.INVALID, f"Reasons are limited to {REASON_MAX} characters.")
    return reason


def _until_text(until: datetime | None) -> str:
    return f" until {until:%Y-%m-%d %H:%M} UTC" if until else ""


# --- mutes and room bans ----------------------------------------------------------------


def _role(room: Room, user) -> str | None:
    return Membership.objects.filter(room=room, user=user).values_list("role", flat=True).first()


def _restrict(model, *, access, actor, user, until, reason, action: str, verb: str):
    """Mute or ban, decided under the room's lock on ``actor``'s access read there."""
    until = validate_until(until)
    reason = validate_reason(reason)
    with transaction.atomic():
        access = rules.room_access_locked(access, actor)
        access = rules.check_restrict(access, actor=actor, target=user, target_role=_role(access.room, user))
        room = access.room
        restriction, created = model.objects.update_or_create(
            room=room, user=user, defaults={"until": until, "reason": reason, "created_by": actor}
        )
        moderation_log_write(
            actor=actor, action=action, target_user=user, room=room, reason=reason,
            summary=f"{_name(actor)} {verb} {_name(user)} in {room.slug}{_until_text(until)}",
        )
    return restriction, created


def _lift(model, *, access, actor, user, action: str, verb: str, missing: str) -> None:
    """Unmute or unban, decided under the room's lock on ``actor``'s access read there."""
    with transaction.atomic():
        access = rules.room_access_locked(access, actor)
        access = rules.check_restrict(access, actor=actor, target=user, target_role=_role(access.room, user))
        room = access.room
        deleted, _ = model.objects.filter(room=room, user=user).delete()
        if not deleted:
            raise ChatError(protocol.NOT_FOUND, missing)
        moderation_log_write(
            actor=actor, action=action, target_user=user, room=room,
            summary=f"{_name(actor)} {verb} {_name(user)} in {room.slug}",
        )


def mute_set(*, access: rules.RoomAccess, actor, user, until: datetime | None = None, reason: str = "") -> tuple[Mute, bool]:
    """Mute ``user`` in the room (until ``until``, or until lifted); return (mute, created).

    Muting again replaces the time and reason. The user's `send` and `edit` then answer `muted`.
    """
    return _restrict(Mute, access=access, actor=actor, user=user, until=until, reason=reason,
                     action=Action.MUTE, verb="muted")


def mute_lift(*, access: rules.RoomAccess, actor, user) -> None:
    """Unmute ``user``; not_found if they are not muted."""
    _lift(Mute, access=access, actor=actor, user=user, action=Action.UNMUTE, verb="unmuted",
          missing="That user is not muted here.")


def room_ban_set(*, access: rules.RoomAccess, actor, user, until: datetime | None = None, reason: str = "") -> tuple[RoomBan, bool]:
    """Ban ``user`` from the room; return (ban, created).

    Every socket of theirs that joined the room gets `kicked` and leaves it at once; `join`,
    history and members then answer `forbidden`.
    """
    ban, created = _restrict(RoomBan, access=access, actor=actor, user=user, until=until, reason=reason,
                             action=Action.BAN, verb="banned")
    event = protocol.kick_event(room_id=ban.room_id, reason=f"Banned from this room{': ' + ban.reason if ban.reason else '.'}")
    user_id = user.pk
    transaction.on_commit(lambda: realtime.user_event_publish(user_id=user_id, event=event))
    return ban, created


def room_ban_lift(*, access: rules.RoomAccess, actor, user) -> None:
    """Unban ``user`` from the room; not_found if they are not banned."""
    _lift(RoomBan, access=access, actor=actor, user=user, action=Action.UNBAN, verb="unbanned",
          missing="That user is not banned here.")


# --- site bans --------------------------------------------------------------------------


def _session_keys(user) -> list[str]:
    """Keys of the user's unexpired sessions, for session engines that keep them in the
    database (the default). Django stores no user column, so each session is decoded."""
    store_class = import_string(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store_class, "get_model_class"):
        return []  # cache or signed-cookie sessions: ChatModelBackend refuses them instead
    store = store_class()
    rows = store_class.get_model_class().objects.filter(expire_date__gt=timezone.now())
    wanted = str(user.pk)
    return [
        key
        for key, data in rows.values_list("session_key", "session_data").iterator(chunk_size=2000)
        if str(store.decode(data).get(SESSION_KEY)) == wanted
    ]


def site_ban_set(*, actor, user, until: datetime | None = None, reason: str = "") -> tuple[SiteBan, bool]:
    """Ban ``user`` from the site; return (ban, created).

    Ends their sessions and API token, closes every socket of theirs with 4403 at once, and
    remembers digests of the ended keys so a client that comes back with one gets 4403.
    While the ban is in force they cannot log in or obtain a token (chat.backends).
    """
    from rest_framework.authtoken.models import Token

    rules.check_site_ban(actor=actor, target=user)
    until = validate_until(until)
    reason = validate_reason(reason)
    store_class = import_string(settings.SESSION_ENGINE).SessionStore
    with transaction.atomic():
        ban, created = SiteBan.objects.update_or_create(
            user=user, defaults={"until": until, "reason": reason, "created_by": actor}
        )
        sessions = _session_keys(user)
        tokens = list(Token.objects.filter(user=user).values_list("key", flat=True))
        SiteBanKey.objects.bulk_create(SiteBanKey(ban=ban, digest=rules.credential_digest(k)) for k in sessions + tokens)
        Token.objects.filter(user=user).delete()
        for key in sessions:
            store_class(key).delete()
        moderation_log_write(
            actor=actor, action=Action.SITE_BAN, target_user=user, reason=reason,
            summary=f"{_name(actor)} banned {_name(user)} from the site{_until_text(until)}",
        )
    user_id = user.pk
    event = protocol.close_event(code=protocol.CLOSE_BANNED)
    transaction.on_commit(lambda: realtime.user_event_publish(user_id=user_id, event=event))
    return ban, created


def site_ban_lift(*, actor, user) -> None:
    """Lift ``user``'s site ban; not_found if there is none. They log in again as usual."""
    rules.check_site_ban(actor=actor, target=user)
    with transaction.atomic():
        deleted, _ = SiteBan.objects.filter(user=user).delete()
        if not deleted:
            raise ChatError(protocol.NOT_FOUND, "That user is not banned from the site.")
        moderation_log_write(
            actor=actor, action=Action.SITE_UNBAN, target_user=user,
            summary=f"{_name(actor)} lifted the site ban of {_name(user)}",
        )


# --- messages ---------------------------------------------------------------------------


def message_restore(*, message_id: int, actor, reason: str = "") -> Message:
    """Staff undo a deletion (in the admin): the message shows again, announced as
    `message.edited` with the room's next seq. Restoring a message that is not deleted
    changes nothing and takes no seq (of two restores at once, one makes the change)."""
    rules.check_site_moderator(actor, "Only staff moderators restore messages.")
    reason = validate_reason(reason)
    with transaction.atomic():
        message, _access = _message_locked(message_id=message_id, user=actor, door=rules.Door.ADMIN)
        if not message.deleted:
            return message
        seq = _next_seq(message.room_id)
        message.deleted = False
        message.save(update_fields=["deleted"])
        if message.reply_to_id is not None:
            thread_recount(message.reply_to_id)
        selectors.reactions_attach([message])  # a deletion hid them; the restored message shows them again
        _record_event(message=message, kind=protocol.MESSAGE_EDITED, seq=seq)
        moderation_log_write(
            actor=actor, action=Action.MESSAGE_RESTORE, target_user=message.author, message=message, reason=reason,
            summary=f"{_name(actor)} restored message #{message.pk} by {_name(message.author)} in {message.room.slug}",
        )
    return message


# --- reports ----------------------------------------------------------------------------


def message_report(
    *, message_id: int, reporter, reason: str = "", door: rules.Door = rules.Door.API
) -> tuple[Report, bool]:
    """Report a message to the moderators; return (report, created).

    Reporting a message again while the first report is open returns that report.
    """
    message = Message.objects.select_related("room", "author__chat_bot").filter(pk=message_id).first()
    access = rules.room_access(user=reporter, room=message.room, door=door) if message is not None else None
    if message is None or access is None or not access.visible:
        raise ChatError(protocol.NOT_FOUND, "No such message.")
    rules.check_report(access, message, reporter)
    reason = validate_reason(reason)
    open_reports = Report.objects.filter(message=message, reporter=reporter, status=Report.Status.OPEN)
    existing = open_reports.first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return Report.objects.create(message=message, reporter=reporter, reason=reason), True
    except IntegrityError:  # the same report, sent twice at once
        return open_reports.get(), False


def report_resolve(*, report_id: int, actor, hide: bool) -> Report:
    """Resolve a report, and every other open report of the same message, by hiding the
    message (a moderator's deletion: `message.deleted` with `"by": "moderator"`) or by
    dismissing it. A resolved report stays as it was (of two resolves at once, one acts).

    Locks in the order every change to a message takes them: the room, the message, then
    the message's reports.
    """
    rules.check_site_moderator(actor, "Only staff moderators resolve reports.")
    message_id = Report.objects.filter(pk=report_id).values_list("message_id", flat=True).first()
    if message_id is None:
        raise ChatError(protocol.NOT_FOUND, "No such report.")
    with transaction.atomic():
        message, _access = _message_locked(message_id=message_id, user=actor, door=rules.Door.ADMIN)
        reports = Report.objects.select_for_update().filter(message_id=message_id).order_by("pk")
        report = next((r for r in reports if r.pk == report_id), None)
        if report is None:
            raise ChatError(protocol.NOT_FOUND, "No such report.")
        if report.status != Report.Status.OPEN:
            return report
        if hide:
            message_delete(message_id=message.pk, user=actor, door=rules.Door.ADMIN,
                           reason=f"report #{report.pk}: {report.reason}")
        status = Report.Status.HIDDEN if hide else Report.Status.DISMISSED
        Report.objects.filter(message=message, status=Report.Status.OPEN).update(
            status=status, resolved_by=actor, resolved_at=timezone.now()
        )
        moderation_log_write(
            actor=actor, action=Action.REPORT_HIDE if hide else Action.REPORT_DISMISS, target_user=message.author,
            message=message, reason=report.reason,
            summary=f"{_name(actor)} {'hid' if hide else 'dismissed a report of'} message #{message.pk} "
            f"by {_name(message.author)} in {message.room.slug}",
        )
    report.refresh_from_db()
    return report
