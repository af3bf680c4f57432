"""Attachments (PROTOCOL.md 8): storing an upload's record, the upload rate, and attaching
uploads to a message inside the post's transaction.

The upload door (chat/api/uploads.py) stores the bytes (chat.files.storage.store_upload) and
then calls upload_create(); the post path (services/messages.py) calls uploads_locked(),
claim() and attach(), and message_delete() calls hide().
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from .. import protocol, rules
from ..files.inspection import Inspection
from ..models import Attachment, Message
from ..protocol import ChatError

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
_RATE = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]*)")


# --- the upload rate --------------------------------------------------------------------


@dataclass(frozen=True)
class UploadRate:
    count: int
    seconds: float


def upload_rate() -> UploadRate | None:
    """Parse CHAT_UPLOAD_RATE: "20/min", "100/h", "5/30s"; "0" or empty for none."""
    value = str(settings.CHAT_UPLOAD_RATE).strip().lower()
    if value in ("", "0"):
        return None
    match = _RATE.fullmatch(value)
    unit = match[3] if match else ""
    if not match or (unit not in _PERIODS and not (unit == "" and match[2])):
        raise ValueError(f"CHAT_UPLOAD_RATE must look like '20/min', '5/30s' or '0', not {value!r}")
    seconds = float(match[2] or 1) * _PERIODS.get(unit or "s", 1)
    return UploadRate(int(match[1]), seconds)


def check_upload_rate(*, user, now: datetime | None = None) -> None:
    """Raise rate_limited if ``user`` has stored CHAT_UPLOAD_RATE uploads within its window.

    The stored uploads are the log (one query on (uploader, created_at)), so every process
    and every room share one budget.
    """
    rate = upload_rate()
    if rate is None:
        return
    now = now or timezone.now()
    times = list(
        Attachment.objects.filter(uploader=user, created_at__gt=now - timedelta(seconds=rate.seconds))
        .order_by("-created_at")
        .values_list("created_at", flat=True)[: rate.count]
    )
    if len(times) >= rate.count:
        retry_after = (times[-1] + timedelta(seconds=rate.seconds) - now).total_seconds()
        raise ChatError(protocol.RATE_LIMITED, "You are uploading too fast.", retry_after=max(retry_after, 0.01))


# --- uploads ----------------------------------------------------------------------------


def upload_check(*, user, slug: str) -> rules.RoomAccess:
    """The caller's access to the room ``slug`` if they may upload there now (may post, and
    within CHAT_UPLOAD_RATE); raise the refusal otherwise. Asked before the body is parsed."""
    access = rules.check_post(rules.room_access(user=user, slug=slug, door=rules.Door.API))
    check_upload_rate(user=user)
    return access


def upload_create(
    *, user, room_id: int, name: str, size: int, file: str, inspection: Inspection, thumbnail: str = ""
) -> Attachment:
    """Record an upload whose bytes are stored already (``file``, ``thumbnail``: storage names).

    The permission and the rate are asked again, as the upload may have taken a while; a
    refusal raises, and the caller deletes the stored files.
    """
    rules.check_post(rules.room_access(user=user, room_id=room_id, door=rules.Door.API))
    check_upload_rate(user=user)
    return Attachment.objects.create(
        uploader=user,
        room_id=room_id,
        name=name,
        size=size,
        file=file,
        content_type=inspection.content_type,
        width=inspection.width,
        height=inspection.height,
        thumbnail=thumbnail,
        thumbnail_type=(inspection.thumbnail_type or "") if thumbnail else "",
    )


# --- attaching (the post path) ----------------------------------------------------------


def uploads_locked(posts: Sequence[Any]) -> dict[str, Attachment]:
    """The uploads the batch's posts name, by id, locked until the transaction ends (no query
    when none names one).

    Should be called inside the post's transaction, under the rooms' locks: an upload is
    attached only by a post in its room, so of two posts naming it, the second reads it
    attached. The row lock also holds off the cleanup of unposted uploads meanwhile.
    """
    ids = {i for post in posts for i in post.attachments if isinstance(i, str) and _ID.fullmatch(i)}
    if not ids:
        return {}
    return {a.pk: a for a in Attachment.objects.select_for_update(of=("self",)).filter(pk__in=ids)}


def claim(post, uploads: dict[str, Attachment], claimed: set[str]) -> None:
    """Check the post's ``attachments`` and mark them taken in ``claimed``, or raise invalid.

    At most Attachment.MAX_PER_MESSAGE distinct ids, each the author's own upload in the
    post's room, not posted yet (by another message, or by an earlier post of the batch).
    """
    ids = post.attachments
    if not ids:
        return
    if len(ids) > Attachment.MAX_PER_MESSAGE:
        raise ChatError(protocol.INVALID, f"A message has at most {Attachment.MAX_PER_MESSAGE} attachments.")
    if len(set(ids)) != len(ids):
        raise ChatError(protocol.INVALID, "An attachment is named twice.")
    for upload_id in ids:
        upload = uploads.get(upload_id) if isinstance(upload_id, str) else None
        if (
            upload is None
            or upload.uploader_id != post.author.pk
            or upload.room_id != post.room.pk
            or upload.message_id is not None
            or upload_id in claimed
        ):
            raise ChatError(protocol.INVALID, "Attachments must be your own uploads in this room, not posted yet.")
    claimed.update(ids)


def attach(posts: Sequence[Any], stored: dict[int, Message]) -> None:
    """Attach each stored post's uploads (claimed) to its message, in the post's order, and
    give every message of ``stored`` its attachments (``loaded_attachments``), so MESSAGE is
    built without a query.

    Should be called in the transaction that stores the messages. One UPDATE per message
    with attachments and one SELECT for them all; none for a batch without any.
    """
    with_uploads = {i: m for i, m in stored.items() if posts[i].attachments}
    for i, message in with_uploads.items():
        ids = list(posts[i].attachments)
        position = Case(*[When(pk=pk, then=Value(n)) for n, pk in enumerate(ids)], output_field=IntegerField())
        changed = Attachment.objects.filter(pk__in=ids, message__isnull=True).update(message=message, position=position)
        if changed != len(ids):
            raise IntegrityError("an attachment was taken or removed in between")
    rows: dict[int, list[Attachment]] = {}
    if with_uploads:
        for upload in Attachment.objects.filter(message__in=list(with_uploads.values())):
            rows.setdefault(upload.message_id, []).append(upload)
    for message in stored.values():
        # Read by protocol.message_attachments(); a plain attribute, as the group commit sets
        # it on every message (a prefetch cache costs ~125 us a message to build).
        message.loaded_attachments = rows.get(message.pk, [])


def hide(message: Message) -> None:
    """The message is deleted now: its files stay for CHAT_DELETED_FILE_DAYS from now
    (chat/files/cleanup.py), served to staff only."""
    Attachment.objects.filter(message=message).update(hidden_at=timezone.now())
