"""Delivery of room events to outgoing webhooks (PROTOCOL.md 9), in the tasks worker.

Each room event of a room with active subscriptions leaves an OutboxEvent row (the socket
frame's JSON), written in the event's own transaction (subscriptions.outbox_write); after
commit each subscription with no delivery coming gets ``pending`` set and a
subscription_deliver task, in one transaction (subscriptions_wake). The task:

1. claims the subscription: SELECT … FOR UPDATE SKIP LOCKED, then a lease (``lease_until``,
   ``lease_token``) committed at once, so no transaction (and on SQLite no write lock) is
   held across HTTP; a task that finds another worker's lease exits (and looks again when
   that lease ends), one that finds a retry scheduled exits (the retry's own task comes);
2. POSTs the outbox rows after ``delivered_seq`` one by one in seq order, records each
   attempt (DeliveryAttempt), and moves ``delivered_seq`` (renewing the lease) after each
   2xx answer, with an UPDATE that only the lease holder's token matches;
3. on a failure (not 2xx, timeout, refused by the guard) schedules a retry of the same event
   (later events wait): CHAT_WEBHOOK_BACKOFF_START seconds, doubling, at most
   CHAT_WEBHOOK_BACKOFF_MAX, the retry task enqueued in the transaction that records it;
   after CHAT_WEBHOOK_GIVE_UP seconds of failures the subscription is paused and its creator
   emailed;
4. when nothing is left, lets go of the lease unless ``pending`` was set meanwhile (then it
   reads the outbox again), and removes the outbox rows every active subscription has.

At least once: a worker killed between a receiver's 2xx and the cursor's UPDATE delivers
that event again (same X-Chat-Delivery). A dead worker's lease expires and the next task of
any subscription (deliveries_recover) enqueues its subscription again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Min, Q
from django.utils import timezone
from django_tasks import task

from ..models import DeliveryAttempt, OutboxEvent, Room, Subscription
from ..outgoing import client

log = logging.getLogger(__name__)

BATCH = 100  # outbox rows read at once
RECOVER_BATCH = 100
ATTEMPTS_KEPT_DAYS = 7
_DELIVERY_NS = uuid.UUID("5b0f3f5e-2d55-4f8e-9a55-6a9f3b1c0d21")


def _lease() -> timedelta:
    """How long a claim lasts without news: several attempts' worth (renewed after each)."""
    return timedelta(seconds=max(60.0, 6 * settings.CHAT_WEBHOOK_TIMEOUT))


def backoff(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failures in a row (1, 2, …)."""
    start, cap = settings.CHAT_WEBHOOK_BACKOFF_START, settings.CHAT_WEBHOOK_BACKOFF_MAX
    return min(start * 2 ** min(failures - 1, 40), cap)


def delivery_id(subscription: Subscription, seq: int) -> str:
    """The X-Chat-Delivery of an event to a subscription: unique, the same on every retry
    (receivers can drop a repeat)."""
    return str(uuid.uuid5(_DELIVERY_NS, f"{subscription.pk}:{subscription.secret}:{seq}"))


def signature(secret: str, body: bytes) -> str:
    """The X-Chat-Signature of ``body``: ``sha256=`` and the hex HMAC-SHA256 with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- the task (the worker) ---------------------------------------------------------------


@task()
def subscription_deliver(subscription_id: int) -> int:
    """The tasks worker's entry: deliveries_run(), then deliveries_recover(); return how many
    events were delivered."""
    delivered = deliveries_run(subscription_id=subscription_id)
    deliveries_recover()
    return delivered


def deliveries_run(*, subscription_id: int) -> int:
    """Deliver what the subscription is owed, in seq order, until done or an attempt fails;
    return how many events were delivered."""
    token = secrets.token_hex(16)
    subscription = _claim(subscription_id, token)
    if subscription is None:
        return 0
    delivered = 0
    while True:
        events = list(
            OutboxEvent.objects.filter(room_id=subscription.room_id, seq__gt=subscription.delivered_seq).order_by("seq")[:BATCH]
        )
        if not events:
            if _release(subscription, token):
                continue  # an event came meanwhile
            outbox_prune(room_id=subscription.room_id)
            return delivered
        for event in events:
            started = timezone.now()
            ok = _attempt(subscription, event)
            if ok is None:
                return delivered  # deleted meanwhile
            if not ok:
                _failed(subscription, token, started=started)
                return delivered
            moved = Subscription.objects.filter(pk=subscription.pk, lease_token=token).update(
                delivered_seq=event.seq, failures=0, failing_since=None, lease_until=timezone.now() + _lease()
            )
            if not moved:
                return delivered  # deleted, or the lease was lost (the next holder goes on)
            subscription.delivered_seq, subscription.failures, subscription.failing_since = event.seq, 0, None
            delivered += 1


def _claim(subscription_id: int, token: str) -> Subscription | None:
    """Take the lease on the subscription, or return None if it is paused, gone, another
    worker's, or waiting for a retry."""
    now = timezone.now()
    with transaction.atomic():
        # "of" and no ordering: the row alone, never its room's (which every post in it locks).
        subscription = (
            Subscription.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=subscription_id, paused_at__isnull=True).order_by().first()
        )
        if subscription is None:
            return None
        if subscription.lease_until is not None and subscription.lease_until > now:
            # Another worker delivers; it sees `pending` before letting go. Should it die,
            # this look at its lease's end takes over.
            subscription_deliver.using(run_after=subscription.lease_until + timedelta(seconds=1)).enqueue(subscription_id)
            return None
        if subscription.retry_at is not None and subscription.retry_at > now:
            return None  # the retry's task, enqueued with it, delivers then
        subscription.pending = False
        subscription.lease_until, subscription.lease_token, subscription.retry_at = now + _lease(), token, None
        subscription.save(update_fields=["pending", "lease_until", "lease_token", "retry_at"])
    return subscription


def _release(subscription: Subscription, token: str) -> bool:
    """Let go of the lease; return True instead if ``pending`` was set meanwhile (the caller
    reads the outbox again, still holding the lease)."""
    with transaction.atomic():
        fresh = Subscription.objects.select_for_update(of=("self",)).filter(pk=subscription.pk, lease_token=token).order_by().first()
        if fresh is None:
            return False
        if fresh.pending:
            fresh.pending = False
            fresh.lease_until = timezone.now() + _lease()
            fresh.save(update_fields=["pending", "lease_until"])
            return True
        fresh.lease_until, fresh.lease_token = None, ""
        fresh.save(update_fields=["lease_until", "lease_token"])
    return False


def _attempt(subscription: Subscription, event: OutboxEvent) -> bool | None:
    """POST ``event`` to the subscription, record the attempt; return whether it was delivered
    (None: the subscription was deleted meanwhile, so the attempt has nowhere to go)."""
    body = event.frame.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "chat-webhooks/1",
        "X-Chat-Event": event.type,
        "X-Chat-Delivery": delivery_id(subscription, event.seq),
        "X-Chat-Signature": signature(subscription.secret, body),
    }
    started = time.monotonic()
    answer = client.post(subscription.url, body, headers, timeout=settings.CHAT_WEBHOOK_TIMEOUT)
    try:
        with transaction.atomic():
            attempt = DeliveryAttempt.objects.create(
                subscription_id=subscription.pk, seq=event.seq, event_type=event.type,
                delivery_id=headers["X-Chat-Delivery"], status_code=answer.status,
                error=answer.error[:300] if answer.error else ("" if answer.ok else f"HTTP {answer.status}"),
                ok=answer.ok, duration_ms=round((time.monotonic() - started) * 1000),
            )
    except IntegrityError:  # the subscription is gone (its foreign key refuses the row)
        return None
    if attempt.pk % 100 == 0:
        DeliveryAttempt.objects.filter(
            subscription_id=subscription.pk, created_at__lt=timezone.now() - timedelta(days=ATTEMPTS_KEPT_DAYS)
        ).delete()
    return answer.ok


def _failed(subscription: Subscription, token: str, *, started) -> None:
    """Schedule the retry of the subscription's oldest owed event, or pause the subscription
    after CHAT_WEBHOOK_GIVE_UP seconds of failures."""
    now = timezone.now()
    failing_since = subscription.failing_since or started
    failures = subscription.failures + 1
    if (now - failing_since).total_seconds() >= settings.CHAT_WEBHOOK_GIVE_UP:
        subscription_pause(subscription_id=subscription.pk, token=token)
        return
    retry_at = now + timedelta(seconds=backoff(failures))
    with transaction.atomic():
        if Subscription.objects.filter(pk=subscription.pk, lease_token=token).update(
            failures=failures, failing_since=failing_since, retry_at=retry_at, lease_until=None, lease_token=""
        ):
            subscription_deliver.using(run_after=retry_at).enqueue(subscription.pk)


def subscription_pause(*, subscription_id: int, token: str | None = None) -> bool:
    """Pause the subscription (a dead endpoint) under its room's lock, and email its creator
    (or the room's owner) once that commits; return whether it was paused now. ``token``:
    only if that lease still holds it."""
    room_id = Subscription.objects.filter(pk=subscription_id).values_list("room_id", flat=True).first()
    if room_id is None:
        return False
    with transaction.atomic():
        Room.objects.select_for_update(no_key=True).filter(pk=room_id).values_list("pk", flat=True).first()
        matching = Subscription.objects.filter(pk=subscription_id, paused_at__isnull=True)
        if token is not None:
            matching = matching.filter(lease_token=token)
        if not matching.update(paused_at=timezone.now(), lease_until=None, lease_token="", retry_at=None, pending=False):
            return False
        Room.objects.filter(pk=room_id).update(subscriptions_active=F("subscriptions_active") - 1)
        transaction.on_commit(lambda: _notify_paused(subscription_id))
    outbox_prune(room_id=room_id)
    return True


def _notify_paused(subscription_id: int) -> None:
    subscription = Subscription.objects.select_related("room__owner", "created_by").filter(pk=subscription_id).first()
    if subscription is None:
        return
    person = subscription.created_by if subscription.created_by and subscription.created_by.email else subscription.room.owner
    if person is None or not person.email:
        log.warning("webhook subscription %s paused; nobody to email", subscription_id)
        return
    hours = settings.CHAT_WEBHOOK_GIVE_UP / 3600
    try:
        send_mail(
            subject=f"Webhook paused in {subscription.room.name}",
            message=(
                f"Every delivery to {subscription.url} (room {subscription.room.slug}) has failed for "
                f"{hours:g} hours, so the subscription is paused and receives nothing more.\n\n"
                f"Its attempts: GET /api/v1/rooms/{subscription.room.slug}/subscriptions/{subscription.pk}/deliveries/\n"
                f"Delete it and subscribe again once the endpoint works.\n\n{settings.CHAT_SITE_URL}/rooms/{subscription.room.slug}/\n"
            ),
            from_email=None,
            recipient_list=[person.email],
        )
    except Exception:  # the pause stands; the email is a courtesy
        log.exception("could not email the pause of webhook subscription %s", subscription_id)


def outbox_prune(*, room_id: int) -> int:
    """Remove the room's outbox rows every active subscription has; return how many.

    The room's seq is read first: a subscription created after that starts past it, so the
    rows up to it are nobody's once the active ones have them.
    """
    room_seq = Room.objects.filter(pk=room_id).values_list("seq", flat=True).first()
    if room_seq is None:
        return 0
    lowest = Subscription.objects.filter(room_id=room_id, paused_at__isnull=True).aggregate(m=Min("delivered_seq"))["m"]
    upto = room_seq if lowest is None else min(lowest, room_seq)
    deleted, _ = OutboxEvent.objects.filter(room_id=room_id, seq__lte=upto).delete()
    return deleted


def deliveries_recover() -> list[int]:
    """Enqueue again the subscriptions whose worker died: a lease expired, or a retry overdue
    by a minute; return their ids."""
    now = timezone.now()
    lost = Q(lease_until__lt=now) | Q(lease_until__isnull=True, retry_at__lt=now - timedelta(seconds=60))
    ids = list(Subscription.objects.filter(lost, paused_at__isnull=True).values_list("pk", flat=True)[:RECOVER_BATCH])
    recovered = []
    for subscription_id in ids:
        with transaction.atomic():
            if Subscription.objects.filter(lost, pk=subscription_id, paused_at__isnull=True).update(
                lease_until=None, lease_token="", retry_at=None, pending=True
            ):
                subscription_deliver.enqueue(subscription_id)
                recovered.append(subscription_id)
    return recovered
