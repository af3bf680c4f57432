"""What to record and how to serve an uploaded file, decided from its bytes alone (PROTOCOL.md 8)."""

from __future__ import annotations

from typing import IO, NamedTuple

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
