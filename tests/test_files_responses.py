"""chat/files/responses.py: a stored file is served inert, by ranges, revalidated, or by nginx."""

from __future__ import annotations

import os

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.test import RequestFactory

from chat.files.content import PNG
from chat.files.responses import CHUNK, RangeNotSatisfiable, byte_range, file_response
from chat.files.storage import storage_name

DATA = os.urandom(3 * CHUNK + 123)
ETAG = '"3f9c0d2e"'


class CountingFile:
    """A stored file that counts the bytes read from it and whether it was closed."""

    def __init__(self, path):
        self.file = open(path, "rb")
        self.read_bytes = 0
        self.closed = False

    def seek(self, offset):
        return self.file.seek(offset)

    def read(self, n=-1):
        data = self.file.read(n)
        self.read_bytes += len(data)
        return data

    def close(self):
        self.closed = True
        self.file.close()


@pytest.fixture
def stored(tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    path = storage.save(storage_name(), ContentFile(DATA))
    opened = []

    def open_file():
        opened.append(CountingFile(storage.path(path)))
        return opened[-1]

    return path, open_file, opened


def serve(stored, headers=None, **kwargs):
    path, open_file, _ = stored
    request = RequestFactory().get("/files/x", headers=headers or {})
    defaults = dict(
        open_file=open_file, storage_path=path, size=len(DATA), name="plan.pdf",
        content_type="application/pdf", etag=ETAG,
    )
    defaults.update(kwargs)
    return file_response(request, **defaults)


async def body(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def assert_inert(response, disposition="attachment"):
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["Content-Disposition"].startswith(disposition + ";")
    assert response["Cache-Control"] == "private, no-cache"


async def test_the_whole_file_is_streamed_as_an_inert_download(stored):
    response = serve(stored)
    assert response.status_code == 200
    assert_inert(response)
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Length"] == str(len(DATA))
    assert response["ETag"] == ETAG and response["Accept-Ranges"] == "bytes"
    assert await body(response) == DATA
    assert stored[2][0].closed


async def test_the_file_is_read_a_chunk_at_a_time_not_whole(stored):
    response = serve(stored)
    chunks = aiter(response.streaming_content)
    first = await anext(chunks)
    assert len(first) == CHUNK
    assert stored[2][0].read_bytes == CHUNK  # the rest is still on disk
    response.close()  # what Django does when the client goes away mid-file
    assert stored[2][0].closed


async def test_a_raster_image_is_inline_and_still_inert(stored):
    response = serve(stored, content_type=PNG, name="cat.png")
    assert_inert(response, "inline")


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=10-19", 10, 19), ("bytes=-5", len(DATA) - 5, len(DATA) - 1), (f"bytes={CHUNK}-", CHUNK, len(DATA) - 1),
     ("bytes=0-999999999", 0, len(DATA) - 1)],
)
async def test_one_range_is_a_206_with_those_bytes(stored, header, start, end):
    response = serve(stored, headers={"Range": header})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response["Content-Length"] == str(end - start + 1)
    assert_inert(response)
    assert await body(response) == DATA[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "lines=1-2", "bytes=9-3", "bytes=x-"])
async def test_several_or_malformed_ranges_get_the_whole_file(stored, header):
    response = serve(stored, headers={"Range": header})
    assert response.status_code == 200
    assert await body(response) == DATA


async def test_a_range_past_the_end_is_416(stored):
    response = serve(stored, headers={"Range": f"bytes={len(DATA)}-"})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(DATA)}"
    assert_inert(response)
    assert stored[2] == []  # never opened


async def test_a_range_for_another_version_gets_the_whole_file(stored):
    response = serve(stored, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert response.status_code == 200
    assert await body(response) == DATA


def test_a_matching_etag_is_a_304_without_opening_the_file(stored):
    response = serve(stored, headers={"If-None-Match": ETAG})
    assert response.status_code == 304
    assert response["ETag"] == ETAG
    assert_inert(response)
    assert stored[2] == []


def test_behind_nginx_the_answer_is_a_redirect_to_the_internal_location(stored):
    response = serve(stored, accel_prefix="/_files/")
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == "/_files/" + stored[0]
    assert response.content == b""
    assert_inert(response)
    assert stored[2] == []


def test_byte_range_edges():
    assert byte_range(None, 10) is None
    assert byte_range("bytes=0-0", 10) == (0, 0)
    assert byte_range("bytes=-20", 10) == (0, 9)
    assert byte_range("bytes=0-", 0) is None  # an empty file is sent whole (empty)
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=-0", 10)
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=10-", 10)
