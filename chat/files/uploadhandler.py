"""The upload handler that enforces CHAT_MAX_UPLOAD while a multipart body is parsed (PROTOCOL.md 8).

Install it as the only handler, ``FILE_UPLOAD_HANDLERS =
["chat.files.uploadhandler.CappedUploadHandler"]``: Django's CSRF check reads ``request.POST``
before any view runs, so a handler a view sets on its request comes too late. Every file
goes to a temporary file on disk (never memory), and the request's files together may hold
at most CHAT_MAX_UPLOAD bytes. Past that the handler deletes what it wrote and raises
FileTooLarge out of the parser: Django reads no further part, DRF hands the error to
chat/api/errors.py (413 `too_large`).

Under ASGI, Django has already read the whole body before parsing (ASGIHandler.read_body);
chat/limits.py (the ASGI body cap) is what stops that read early. This handler is the exact per-file cap
behind it, and the whole cap under WSGI.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from .storage import FileTooLarge

DEFAULT_MAX_UPLOAD = 25 * 1024 * 1024


def max_upload() -> int:
    """CHAT_MAX_UPLOAD in bytes (25 MiB when the setting is absent)."""
    return getattr(settings, "CHAT_MAX_UPLOAD", DEFAULT_MAX_UPLOAD)


class CappedUploadHandler(TemporaryFileUploadHandler):
    """TemporaryFileUploadHandler that refuses a request's files past ``limit`` bytes together."""

    def __init__(self, request=None, limit: int | None = None):
        super().__init__(request)
        self.limit = max_upload() if limit is None else limit
        self.received = 0

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        """Start a file; one whose part declares more than is left of the cap is refused at once."""
        if content_length is not None and self.received + content_length > self.limit:
            raise FileTooLarge(self.limit)
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        """Write the chunk, or delete the file and raise FileTooLarge if it passes the cap."""
        self.received += len(raw_data)
        if self.received > self.limit:
            self.upload_interrupted()
            raise FileTooLarge(self.limit)
        self.file.write(raw_data)
