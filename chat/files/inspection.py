"""What to record and how to serve an uploaded file, decided from its bytes alone (PROTOCOL.md 8)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import IO, NamedTuple

from django.conf import settings

from .content import OCTET_STREAM, RASTER_TYPES, SNIFF_BYTES, sniff_content_type
from .images import image_info_and_thumbnail


class Inspection(NamedTuple):
    """An upload's ``content_type``, ``width`` and ``height`` (PROTOCOL.md ATTACHMENT) and thumbnail."""

    content_type: str
    width: int | None
    height: int | None
    thumbnail: bytes | None
    thumbnail_type: str | None


def inspect_upload(file: IO[bytes]) -> Inspection:
    """Return what the seekable binary ``file`` is; it is read from the start and left at the start.

    A raster image (RASTER_TYPES) that decodes gets its size and thumbnail. One that does
    not decode, or has more than images.MAX_IMAGE_PIXELS pixels, is recorded as
    ``application/octet-stream``: a plain file, served as a download and never shown inline,
    so a GIF header in front of a script does not make the script a picture. Slow for large
    images (see images.py): run it off the event loop.
    """
    file.seek(0)
    content_type = sniff_content_type(file.read(SNIFF_BYTES))
    file.seek(0)
    if content_type not in RASTER_TYPES:
        return Inspection(content_type, None, None, None, None)
    try:
        info = image_info_and_thumbnail(file, content_type)
    finally:
        file.seek(0)
    if info.width is None:
        return Inspection(OCTET_STREAM, None, None, None, None)
    return Inspection(content_type, info.width, info.height, info.thumbnail, info.thumbnail_type)


_pool: ThreadPoolExecutor | None = None


def _thumbnail_pool() -> ThreadPoolExecutor:
    """The process's CHAT_THUMBNAIL_THREADS threads for inspect_upload(), made on first use."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, settings.CHAT_THUMBNAIL_THREADS), thread_name_prefix="thumbnails")
    return _pool


async def ainspect_upload(file: IO[bytes]) -> Inspection:
    """See inspect_upload(); runs on the thumbnail pool, so neither the event loop nor the
    thread of Django's sync views and database calls waits for Pillow (bench/thumbnails.py:
    0.1-1.6 s per large image). Pillow releases the GIL while it decodes and resizes."""
    return await asyncio.get_running_loop().run_in_executor(_thumbnail_pool(), inspect_upload, file)
