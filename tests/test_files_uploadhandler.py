"""chat/files/uploadhandler.py: the request's files are refused past the cap while Django parses them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.http.multipartparser import MultiPartParser

from chat import protocol
from chat.files.inspection import inspect_upload
from chat.files.storage import FileTooLarge
from chat.files.uploadhandler import CappedUploadHandler


BOUNDARY = "----chatboundary"


class EndlessUpload(io.RawIOBase):
    """A multipart body whose one file part never ends; counts the bytes the parser reads."""

    def __init__(self, part_headers: str = ""):
        self.head = (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n{part_headers}\r\n"
        ).encode()
        self.read_bytes = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = len(buffer)
        data = (self.head + b"x" * n)[:n]
        self.head = self.head[len(data):]
        buffer[:n] = data
        self.read_bytes += n
        return n


def parse(stream, limit: int, content_length: int = 2 * 1024**3):
    handler = CappedUploadHandler(limit=limit)
    meta = {"CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}", "CONTENT_LENGTH": str(content_length)}
    return handler, MultiPartParser(meta, stream, [handler]).parse


def test_the_upload_handler_stops_a_2_gb_upload_soon_after_the_cap_and_deletes_its_file():
    stream = EndlessUpload()
    handler, run = parse(stream, limit=1024 * 1024)
    with pytest.raises(FileTooLarge) as refused:
        run()
    assert refused.value.code == protocol.TOO_LARGE
    assert stream.read_bytes < 2 * 1024 * 1024  # the cap and a few 64 KiB chunks, not 2 GB
    assert not Path(handler.file.temporary_file_path()).exists()


def test_a_part_declaring_more_than_the_cap_is_refused_before_its_data():
    stream = EndlessUpload(part_headers="Content-Length: 3000000000\r\n")
    handler, run = parse(stream, limit=1024 * 1024)
    with pytest.raises(FileTooLarge):
        run()
    assert stream.read_bytes <= 128 * 1024
    assert not hasattr(handler, "file")


def test_the_upload_handler_keeps_a_file_within_the_cap(tmp_path):
    payload = b"%PDF-1.7\n" + b"y" * 5000
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../plan.pdf\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + payload + f"\r\n--{BOUNDARY}--\r\n".encode()
    handler, run = parse(io.BytesIO(body), limit=len(payload), content_length=len(body))
    _, files = run()
    uploaded = files["file"]
    assert uploaded.size == len(payload)
    assert Path(uploaded.temporary_file_path()).read_bytes() == payload  # on disk, not in memory
    assert inspect_upload(uploaded).content_type == "application/pdf"  # not the client's image/png
