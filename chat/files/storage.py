"""Where an upload is stored, and the copy that refuses it once it passes the cap (PROTOCOL.md 8).

Storage names are random and say nothing of the upload: the name a user gave is data
(content.clean_name()), never a path, so it cannot climb out of the storage root, collide
with another file, or tell a proxy what type to serve.
"""

from __future__ import annotations

import logging
import secrets
from typing import IO, Iterable, NamedTuple

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from ..protocol import TOO_LARGE, ChatError
from .inspection import Inspection

log = logging.getLogger(__name__)

ORIGINALS = "attachments"
THUMBNAILS = "thumbnails"


def storage_name(kind: str = ORIGINALS) -> str:
    """Return a new storage name under ``kind`` (ORIGINALS or THUMBNAILS), e.g. ``attachments/3f/3f9c…``.

    128 random bits as hex, no extension, spread over 256 directories by their first two
    digits. Pass it to ``storage.save()`` and keep the name that returns.
    """
    if kind not in (ORIGINALS, THUMBNAILS):
        raise ValueError(f"unknown storage kind {kind!r}")
    token = secrets.token_hex(16)
    return f"{kind}/{token[:2]}/{token}"


class FileTooLarge(ChatError):
    """An upload over its cap (`too_large`; REST answers 413)."""

    def __init__(self, limit: int):
        super().__init__(TOO_LARGE, f"Files are limited to {limit} bytes.")
        self.limit = limit


def copy_capped(src_chunks: Iterable[bytes], dst: IO[bytes], limit: int) -> int:
    """Write every chunk of ``src_chunks`` to ``dst`` and return the number of bytes written.

    Raises FileTooLarge as soon as the total passes ``limit``, before writing the chunk that
    passes it and without asking ``src_chunks`` for another: ``dst`` then holds at most
    ``limit`` bytes, and the caller deletes it.
    """
    size = 0
    for chunk in src_chunks:
        size += len(chunk)
        if size > limit:
            raise FileTooLarge(limit)
        dst.write(chunk)
    return size


class Stored(NamedTuple):
    """The storage names of an upload's original and thumbnail ("" for none)."""

    file: str
    thumbnail: str


def store_upload(file: IO[bytes], inspection: Inspection) -> Stored:
    """Save the upload ``file`` (its bytes as uploaded) and its thumbnail, if it has one, to
    STORAGES["default"] under new random names. Blocking I/O: run it off the event loop.

    A temporary upload on the same file system is moved, not copied (FileSystemStorage).
    """
    file.seek(0)
    name = default_storage.save(storage_name(ORIGINALS), file)
    thumbnail = ""
    if inspection.thumbnail is not None:
        try:
            thumbnail = default_storage.save(storage_name(THUMBNAILS), ContentFile(inspection.thumbnail))
        except BaseException:
            delete_stored(Stored(name, ""))
            raise
    return Stored(name, thumbnail)


def delete_stored(stored: Stored) -> None:
    """Remove both files of ``stored`` from the storage; a missing one is not an error."""
    for name in stored:
        if name:
            try:
                default_storage.delete(name)
            except OSError:
                log.warning("could not delete stored file %s", name, exc_info=True)
