"""Email digests of unread notifications (PROTOCOL.md 7, email), sent by the tasks worker.

When notifications are stored for a user with an email address, email notifications on and
no socket open in any process (chat.realtime.presence), digests_schedule() enqueues
digest_send for CHAT_NOTIFY_EMAIL_DELAY seconds later, unless one is due already
(``UserPreferences.digest_due_at``). The task, in the worker (``manage.py db_worker``):

1. gives up if the user has a socket open now, turned email off or has no address;
2. in one transaction, takes the user's preferences row (SELECT … FOR UPDATE SKIP LOCKED:
   a second worker on the same user gives up) and the user's unread, un-emailed
   notifications at least the delay old (FOR UPDATE OF the notifications only, SKIP
   LOCKED); at most one digest per user per delay window (``digested_at``);
3. sends one email (plain text and HTML, a link to each message, an unsubscribe link
   with a signed token), then marks them emailed and commits.

A worker killed before the commit leaves every notification un-emailed and the user's
``digest_due_at`` in the past: the next digest task of any user (digests_recover) or the
user's next notification schedules it again, so nothing is lost. Only a kill between the
SMTP server's acceptance and the commit (one round trip) can email a digest twice. On
SQLite, which has no row locks, the transaction holds the database's write lock from its
start (IMMEDIATE), which serializes two workers the same way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django_tasks import task

from ..models import Notification, UserPreferences
from ..realtime import users_connected

log = logging.getLogger(__name__)

UNSUBSCRIBE_SALT = "chat.notifications.unsubscribe"
DIGEST_MAX = 50  # notifications listed in one email (the rest wait for the next one)
RECOVER_BATCH = 100


def _delay() -> timedelta:
    return timedelta(seconds=settings.CHAT_NOTIFY_EMAIL_DELAY)


def _recover_after() -> timedelta:
    """How late a digest may be before it counts as lost (its worker died): the worker polls
    every second, so a live one is late by seconds, not by this."""
    return timedelta(seconds=min(60.0, max(2 * settings.CHAT_NOTIFY_EMAIL_DELAY, 2.0)))


def unsubscribe_token(user_id: int) -> str:
    """A signed token that turns the user's email notifications off, with no login."""
    return signing.dumps({"u": user_id}, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_user_id(token: str) -> int | None:
    """The user id a token of unsubscribe_token() was made for, or None if it is not one."""
    try:
        value = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return value.get("u") if isinstance(value, dict) and isinstance(value.get("u"), int) else None


# --- scheduling (server processes, after the notifications commit) -----------------------


def emailable_sql(user_id: str) -> str:
    """An SQL scalar subquery: the username of the user whose id is the expression
    ``user_id`` if that user would get a digest (active, an email address, email
    notifications not turned off), else NULL.

    The notifications' INSERT returns it for each row it stores (notifications._insert), so
    scheduling the digests after the commit costs no query of its own.
    """
    quote = connection.ops.quote_name
    return (
        f"(SELECT eu.username FROM {quote(get_user_model()._meta.db_table)} eu"
        f" LEFT JOIN {quote(UserPreferences._meta.db_table)} ep ON ep.user_id = eu.id"
        f" WHERE eu.id = {user_id} AND eu.is_active AND eu.email <> ''"
        f" AND (ep.email_notifications IS NULL OR ep.email_notifications))"
    )


def _away(users: list[tuple[int, str]]) -> list[int]:
    try:
        here = users_connected(users=users)
    except Exception as exc:  # Redis down: better an email too many than a mention missed
        log.warning("presence unavailable, taking users as away: %r", exc)
        here = set()
    return [user_id for user_id, _ in users if user_id not in here]


def digests_schedule(*, users: list[tuple[int, str]]) -> list[int]:
    """Enqueue a digest for each of ``users``, (id, username) of users who would get one
    (emailable_sql), who has no socket open and none due; return their ids. Runs after
    the notifications committed (notifications_deliver)."""
    away = _away(users) if users else []
    if not away:
        return []
    UserPreferences.objects.bulk_create([UserPreferences(user_id=u) for u in away], ignore_conflicts=True)
    now = timezone.now()
    free = Q(digest_due_at__isnull=True) | Q(digest_due_at__lt=now - _recover_after())
    return [u for u in away if _enqueue_if(u, due=now + _delay(), when=free)]


def _enqueue_if(user_id: int, *, due: datetime, when: Q) -> bool:
    """Set the user's digest_due_at to ``due`` and enqueue the task for then, if ``when``
    holds of the preferences row (one conditional UPDATE: of two schedulers, one enqueues)."""
    if not UserPreferences.objects.filter(when, user_id=user_id).update(digest_due_at=due):
        return False
    digest_send.using(run_after=due).enqueue(user_id)
    return True


def digests_recover() -> list[int]:
    """Enqueue again the digests that are overdue by more than _recover_after() (their
    worker died mid-run); return the users'."""
    now = timezone.now()
    lost = Q(digest_due_at__lt=now - _recover_after())
    ids = list(UserPreferences.objects.filter(lost).values_list("user_id", flat=True)[:RECOVER_BATCH])
    return [u for u in ids if _enqueue_if(u, due=now, when=lost)]


# --- the task (the worker) ---------------------------------------------------------------


@task()
def digest_send(user_id: int) -> int:
    """The tasks worker's entry: digest_run(), then digests_recover(); return how many
    notifications were emailed."""
    sent = digest_run(user_id=user_id)
    digests_recover()
    return sent


def digest_run(*, user_id: int) -> int:
    """Email the user one digest of their unread, un-emailed notifications that are at
    least CHAT_NOTIFY_EMAIL_DELAY old, if they are away; return how many it listed."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    preferences = UserPreferences.objects.filter(user_id=user_id).first()
    if user is None or preferences is None:
        return 0
    if not user.email or not preferences.email_notifications or not _away([(user.pk, user.username)]):
        # Present (the page shows the notifications), opted out, or no address: nothing
        # until the next notification schedules a digest again.
        UserPreferences.objects.filter(user_id=user_id).update(digest_due_at=None)
        return 0
    now = timezone.now()
    with transaction.atomic():
        preferences = UserPreferences.objects.select_for_update(skip_locked=True).filter(user_id=user_id).first()
        if preferences is None:
            return 0  # another worker is on this user's digest
        if preferences.digested_at is not None and preferences.digested_at > now - _delay():
            next_due = preferences.digested_at + _delay()
            # Only the task due now moves it (not a duplicate): one future task at a time.
            transaction.on_commit(lambda: _enqueue_if(
                user_id, due=next_due, when=Q(digest_due_at__isnull=True) | Q(digest_due_at__lte=now)
            ))
            return 0
        claimed = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(user_id=user_id, read_at__isnull=True, emailed_at__isnull=True, message__deleted=False,
                    created_at__lte=now - _delay() + timedelta(seconds=1))
            .select_related("message__room", "message__author")
            .order_by("id")[:DIGEST_MAX]
        )
        if claimed:
            _send(user, claimed)
            Notification.objects.filter(pk__in=[n.pk for n in claimed]).update(emailed_at=timezone.now())
            preferences.digested_at = now
        preferences.digest_due_at = None
        preferences.save(update_fields=["digested_at", "digest_due_at"])
    # What arrived since (younger than the delay) gets a digest of its own, in the next window.
    pending = (
        Notification.objects.filter(user_id=user_id, read_at__isnull=True, emailed_at__isnull=True, message__deleted=False)
        .order_by("created_at").values_list("created_at", flat=True).first()
    )
    if pending is not None:
        due = max(pending + _delay(), now + (_delay() if claimed else timedelta(seconds=1)))
        _enqueue_if(user_id, due=due, when=Q(digest_due_at__isnull=True))
    return len(claimed)


def _send(user, notifications: list[Notification]) -> None:
    """Send the digest email of ``notifications`` to ``user`` (raises if the server refuses)."""
    site = settings.CHAT_SITE_URL
    unsubscribe = f"{site}/notifications/unsubscribe/{unsubscribe_token(user.pk)}/"
    items = [
        {
            "kind": n.kind,
            "room": n.message.room.name,
            "author": n.message.author.username,
            "body": n.message.body if len(n.message.body) <= 300 else n.message.body[:300] + "…",
            "url": f"{site}/rooms/{n.message.room.slug}/#message-{n.message_id}",
            "created_at": n.created_at,
        }
        for n in notifications
    ]
    context = {"user": user, "items": items, "count": len(items), "site": site, "unsubscribe": unsubscribe}
    subject = f"{len(items)} new notification{'s' if len(items) != 1 else ''} in the chat"
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("chat/email/digest.txt", context),
        to=[user.email],
        headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    email.attach_alternative(render_to_string("chat/email/digest.html", context), "text/html")
    email.send()
