"""Removing files nobody may fetch any more (PROTOCOL.md 8): ``manage.py cleanup_files``.

- Uploads never posted, older than UNPOSTED_HOURS (24 h): record and files.
- Attachments of a message deleted more than CHAT_DELETED_FILE_DAYS ago (default 30; staff
  may restore it until then) and still deleted: record and files.

Each record is deleted by a statement that repeats its condition (still unposted, message
still deleted), so an upload being posted at that moment (the post holds its row lock,
chat/services/attachments.py uploads_locked) or a message restored meanwhile keeps its
files; files go only after their record is gone. Run it periodically: deploy/systemd/
chat-cleanup.timer, or cron (docs/deployment.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import Attachment
from .storage import Stored, delete_stored

log = logging.getLogger(__name__)

UNPOSTED_HOURS = 24
BATCH = 500


@dataclass(frozen=True)
class Removed:
    unposted: int
    deleted_messages: int


def _remove(condition: Q) -> int:
    """Delete the attachments matching ``condition``, BATCH at a time, then their files."""
    removed = 0
    while True:
        rows = list(Attachment.objects.filter(condition).values_list("pk", "file", "thumbnail")[:BATCH])
        if not rows:
            return removed
        for pk, file, thumbnail in rows:
            count, _ = Attachment.objects.filter(condition, pk=pk).delete()
            if count:
                delete_stored(Stored(file, thumbnail))
                removed += 1
        if len(rows) < BATCH:
            return removed


def files_cleanup(*, now: datetime | None = None) -> Removed:
    """Remove unposted uploads older than UNPOSTED_HOURS and the attachments of messages
    deleted more than CHAT_DELETED_FILE_DAYS ago, records and files; return how many."""
    now = now or timezone.now()
    unposted = _remove(Q(message__isnull=True, created_at__lt=now - timedelta(hours=UNPOSTED_HOURS)))
    deleted = _remove(
        Q(message__deleted=True, hidden_at__lt=now - timedelta(days=settings.CHAT_DELETED_FILE_DAYS))
    )
    if unposted or deleted:
        log.info("cleanup_files: removed %d unposted uploads and %d files of deleted messages", unposted, deleted)
    return Removed(unposted=unposted, deleted_messages=deleted)
