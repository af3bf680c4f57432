"""The response that serves a stored file (PROTOCOL.md 8), once the caller may see it.

The /files/ view checks the room's visibility for every request (404 otherwise) and then
returns file_response(). Every answer, 304 included, carries the headers that keep a file
inert in the browser: ``nosniff``, a sandboxing Content-Security-Policy, ``attachment`` for
everything but raster images (content.content_disposition()), and ``private`` caching with
revalidation, so each view of a file passes the visibility check again.

Behind nginx (``accel_prefix`` set) Django answers with ``X-Accel-Redirect`` and no body;
nginx sends the bytes, ranges included, from an ``internal`` location. nginx keeps only
Content-Type, Content-Disposition, Cache-Control, Expires, Accept-Ranges and Set-Cookie of
this response and sets its own ETag, so that location repeats SECURITY_HEADERS with
``add_header … always`` (deploy/nginx/chat-files.conf).

Without nginx the body is an async iterator of CHUNK-sized reads: Django 5.2 serves a sync
iterator (FileResponse included) under ASGI by reading it whole into a list first, which
for a 25 MiB file is 25 MiB per request. One ``Range: bytes=…`` range is honoured (206);
several are answered with the whole file, as RFC 9110 allows.
"""

from __future__ import annotations

import re
from typing import IO, AsyncIterator, Callable
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.cache import get_conditional_response

from .content import content_disposition

CHUNK = 256 * 1024
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # GitHub's raw files: no script, no loads, a unique origin; inline styles only so a
    # browser's own image viewer still draws.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CACHE_CONTROL = "private, no-cache"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """A Range that selects no byte of the file (416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte, inclusive, that ``header`` selects of a file of ``size`` bytes.

    None means the whole file: no header, a unit other than bytes, several ranges, or a
    malformed one. Raises RangeNotSatisfiable for a range starting past the end.
    """
    if not header or size == 0:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, size - 1 if not last else min(int(last), size - 1)


def _headers(response: HttpResponseBase, *, name: str, content_type: str, etag: str) -> HttpResponseBase:
    for header, value in SECURITY_HEADERS.items():
        response.headers[header] = value
    response.headers["Content-Disposition"] = content_disposition(name, content_type)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["ETag"] = etag
    response.headers["Accept-Ranges"] = "bytes"
    return response


async def _read(file: IO[bytes], start: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes of ``file`` from ``start``, CHUNK at a time, each read in a thread."""
    try:
        await sync_to_async(file.seek, thread_sensitive=False)(start)
        while length > 0:
            data = await sync_to_async(file.read, thread_sensitive=False)(min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data
    finally:
        await sync_to_async(file.close, thread_sensitive=False)()


def file_response(
    request: HttpRequest,
    *,
    open_file: Callable[[], IO[bytes]],
    storage_path: str,
    size: int,
    name: str,
    content_type: str,
    etag: str,
    accel_prefix: str | None = None,
) -> HttpResponseBase:
    """Return the response serving a stored file to ``request`` (GET or HEAD), which may see it.

    ``etag`` is a strong ETag, quoted (``'"<attachment id>"'``: a stored file never changes).
    ``open_file`` (``lambda: storage.open(path, "rb")``) is called only when Django sends
    the bytes itself. ``accel_prefix`` (``"/_files/"``) is nginx's internal location, to
    which ``storage_path`` is appended.
    """
    probe = _headers(HttpResponse(content_type=content_type), name=name, content_type=content_type, etag=etag)
    conditional = get_conditional_response(request, etag=etag, response=probe)
    if conditional is not probe:
        return _headers(conditional, name=name, content_type=content_type, etag=etag)  # 304 or 412
    if accel_prefix is not None:
        probe.headers["X-Accel-Redirect"] = accel_prefix + quote(storage_path)
        return probe
    if_range = request.headers.get("If-Range")
    try:
        selected = byte_range(request.headers.get("Range"), size) if if_range in (None, etag) else None
    except RangeNotSatisfiable:
        refused = _headers(HttpResponse(status=416), name=name, content_type=content_type, etag=etag)
        refused.headers["Content-Range"] = f"bytes */{size}"
        return refused
    start, end = selected if selected is not None else (0, size - 1)
    file = open_file()
    response = StreamingHttpResponse(_read(file, start, end - start + 1), content_type=content_type)
    # Django closes these once the response is sent or abandoned (as FileResponse does), so
    # a client that goes away mid-file does not leave it open until garbage collection.
    response._resource_closers.append(file.close)
    _headers(response, name=name, content_type=content_type, etag=etag)
    response.headers["Content-Length"] = str(end - start + 1)
    if selected is not None:
        response.status_code = 206
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response
