"""What an uploaded file is, and how it is named and served (PROTOCOL.md 8).

The type comes from the file's first bytes (``filetype``'s signatures), never from the name or
the ``Content-Type`` the client sent: a page named ``cat.png`` is still a page. Only raster
images (PNG, JPEG, GIF, WebP) are ever served inline; everything else, SVG included (it can
carry script), is a download. The uploaded name is data shown to people and offered as the
download's name; it is never part of a storage path.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import filetype

OCTET_STREAM = "application/octet-stream"
PNG, JPEG, GIF, WEBP = "image/png", "image/jpeg", "image/gif", "image/webp"
# The only types served inline (Content-Disposition: inline); browsers render them as pictures
# and never as a document or a script.
RASTER_TYPES = frozenset({PNG, JPEG, GIF, WEBP})

# filetype reads at most this many bytes of a file; a longer head changes nothing.
SNIFF_BYTES = 8192

# Types a browser or a plugin would run as a document or a program. filetype knows only Flash
# among them today; the list keeps the others out if a later version learns one.
_ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/x-shockwave-flash",
    }
)
# An animated PNG is a PNG: its first frame is a valid PNG image for every decoder.
_SAME_TYPE = {"image/apng": PNG}

MAX_NAME_CHARS = 200
# Most file systems cap a name at 255 bytes; a download saved under a longer name fails.
MAX_NAME_BYTES = 255
DEFAULT_NAME = "file"
# Bidirectional controls reorder what a name shows ("invoice\u202egpj.exe" reads
# "invoiceexe.jpg"); line and paragraph separators break a header or a one-line card.
_INVISIBLE = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029\ufeff")


def sniff_content_type(head: bytes) -> str:
    """Return the MIME type the bytes ``head`` (a file's first SNIFF_BYTES) say the file is.

    Unrecognised content, text of every kind included, is ``application/octet-stream``; the
    result is never a type a browser would run (HTML, SVG, XML, script).
    """
    kind = filetype.guess(bytes(head[:SNIFF_BYTES])) if head else None
    if kind is None:
        return OCTET_STREAM
    mime = _SAME_TYPE.get(kind.mime, kind.mime)
    if mime in _ACTIVE_TYPES:
        return OCTET_STREAM
    return mime


def clean_name(name: object) -> str:
    """Return the uploaded ``name`` as it may be stored, shown and offered as a download's name.

    Only the last path component is kept (``/`` and ``\\`` both separate); NUL, control
    characters, lone surrogates and bidirectional controls are removed; the result is NFC,
    at most MAX_NAME_CHARS characters and MAX_NAME_BYTES bytes of UTF-8, shortened in its stem
    so the extension survives. An empty or dot-only result is DEFAULT_NAME.
    """
    if not isinstance(name, str):
        return DEFAULT_NAME
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        ch
        for ch in name
        if ch not in _INVISIBLE and unicodedata.category(ch) not in ("Cc", "Cs")
    )
    name = unicodedata.normalize("NFC", name).strip()
    if not name.strip("."):
        return DEFAULT_NAME
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, dot, ext = name, "", ""
    suffix = dot + ext
    stem = stem[: MAX_NAME_CHARS - len(suffix)]
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip()
    return (stem if stem.strip(".") else DEFAULT_NAME) + suffix


def _ascii_fallback(name: str) -> str:
    """``name`` in the printable ASCII a quoted-string carries everywhere, for old clients."""
    decomposed = unicodedata.normalize("NFKD", name)
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue  # "é" -> "e"
        if " " <= ch <= "~" and ch not in '"\\%':
            out.append(ch)
        elif not out or out[-1] != "_":
            out.append("_")
    return "".join(out).strip() or DEFAULT_NAME


def content_disposition(name: str, content_type: str) -> str:
    """Return the ``Content-Disposition`` value for serving a file called ``name``.

    ``inline`` for RASTER_TYPES, ``attachment`` for everything else. The name is cleaned
    (clean_name()) and sent twice, per RFC 6266: an ASCII ``filename="…"`` and the exact name
    as ``filename*=UTF-8''…`` (RFC 5987 percent-encoding). The value is printable ASCII, so no
    name can add a header or end this one.
    """
    disposition = "inline" if content_type in RASTER_TYPES else "attachment"
    name = clean_name(name)
    return (
        f'{disposition}; filename="{_ascii_fallback(name)}"; '
        f"filename*=UTF-8''{quote(name, safe='')}"
    )
