"""Dimensions and a metadata-free thumbnail of an uploaded image (PROTOCOL.md 8), with Pillow.

Only the four raster formats served inline are decoded, each by its own plugin, so a file
never reaches one of Pillow's rarer decoders. An image with more than MAX_IMAGE_PIXELS
pixels, or one that does not decode, yields nothing: it is stored as a plain file. The size
check runs on the header, before a pixel is decoded, so a small file that claims a huge
canvas costs no memory. The thumbnail is re-encoded from pixels alone: EXIF (GPS included),
ICC profiles, XMP and comments of the upload do not reach it.

Decoding is CPU-bound and can take a large part of a second for a big photo: call this from
a worker thread or a task, never on the event loop.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import IO, NamedTuple

from PIL import Image, features

from .content import GIF, JPEG, PNG, WEBP

log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 50_000_000
THUMBNAIL_SIZE = (400, 400)
# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; here the warning is an
# error too. _pixels_allowed() enforces the same limit on its own, so the filter is a second
# guard (pytest, for one, resets warning filters around each test).
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

# Pillow's format names for the raster types; Image.open() tries no other plugin.
_FORMATS = {PNG: "PNG", JPEG: "JPEG", GIF: "GIF", WEBP: "WEBP"}
_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the turn that shows the picture upright (ImageOps.exif_transpose's table).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations 5-8 turn the picture a quarter: its shown width is the stored height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


class ImageInfo(NamedTuple):
    """An image's shown size and its thumbnail; all None for a file that is not a usable image."""

    width: int | None
    height: int | None
    thumbnail: bytes | None
    thumbnail_type: str | None


NOT_AN_IMAGE = ImageInfo(None, None, None, None)


def image_info_and_thumbnail(source: str | IO[bytes], content_type: str | None = None) -> ImageInfo:
    """Return the width, height and thumbnail of the image at ``source`` (a path or a binary file).

    ``content_type``, when given, is the sniffed type and the only format tried; otherwise
    any of PNG, JPEG, GIF and WebP. Width and height are as shown, after the EXIF
    orientation. The thumbnail fits THUMBNAIL_SIZE, is never larger than the image, shows an
    animation's first frame upright, and is WebP (JPEG if this Pillow has no WebP) with no
    metadata. Never raises for the file's content: a file that is too large, truncated, or
    not an image returns NOT_AN_IMAGE.
    """
    if content_type is not None and content_type not in _FORMATS:
        return NOT_AN_IMAGE
    formats = [_FORMATS[content_type]] if content_type else list(_FORMATS.values())
    try:
        with Image.open(source, formats=formats) as im:
            if not _pixels_allowed(im.width, im.height):
                return NOT_AN_IMAGE
            orientation = _orientation(im)
            width, height = im.size
            if orientation in _QUARTER_TURNS:
                width, height = height, width
            data, mime = _thumbnail(im, orientation)
            return ImageInfo(width, height, data, mime)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image"
        # Decoders raise OSError, SyntaxError, ValueError, EOFError, struct.error, the bomb
        # warning and error, and more for a hostile file; none of them is the server's fault.
        log.info("upload is not a usable image: %s: %s", type(exc).__name__, exc)
        return NOT_AN_IMAGE


def _pixels_allowed(width: int, height: int) -> bool:
    """True for a canvas with at least one pixel and at most MAX_IMAGE_PIXELS."""
    return width > 0 and height > 0 and width * height <= MAX_IMAGE_PIXELS


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation of ``im`` (1, upright, when absent or unreadable)."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: the stored orientation is shown
        return 1
    return value if value in _TRANSPOSE else 1


def _thumbnail(im: Image.Image, orientation: int) -> tuple[bytes, str]:
    """Encode the first frame of ``im``, upright and within THUMBNAIL_SIZE, without metadata.

    Peak memory is about the decoded frame once (twice for a palette image, which is
    converted first): the frame is shrunk in place and turned upright once small, the same
    turn as ImageOps.exif_transpose().
    """
    im.seek(0)
    # A JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers twice the box (the box
    # is square, so the later quarter turn changes nothing): less memory, same thumbnail.
    im.draft(None, (THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2))
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info
    )
    webp = features.check("webp")
    mode = "RGBA" if has_alpha else "RGB"
    frame = im
    if frame.mode in ("P", "PA", "1"):
        # Resizing a palette or bilevel image picks nearest pixels; converted first, the
        # thumbnail is smooth. Other modes shrink as they are and convert once small.
        frame = frame.convert(mode)
    frame.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    if frame.mode != mode:
        frame = frame.convert(mode)
    if orientation != 1:
        frame = frame.transpose(_TRANSPOSE[orientation])
    if has_alpha and not webp:
        frame = _on_white(frame).convert("RGB")
    # A new image from the pixels alone: nothing of the upload's info dict (EXIF, ICC, XMP,
    # comments) can reach the encoder, whatever a plugin's save() picks up by default.
    clean = Image.frombytes(frame.mode, frame.size, frame.tobytes())
    out = io.BytesIO()
    if webp:
        clean.save(out, "WEBP", quality=80, method=4)
        return out.getvalue(), WEBP
    clean.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), JPEG


def _on_white(im: Image.Image) -> Image.Image:
    """``im`` (RGBA) flattened onto white, for a format without transparency."""
    background = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, im)
