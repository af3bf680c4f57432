"""Connect tokens (PROTOCOL.md 9) stay out of the access logs.

A connect token travels in the WebSocket URL (``/ws/chat/?token=…``). Daphne's access log
writes WebSocket paths without their query string but HTTP requests with it, and uvicorn's
(off in ./run, deploy/worker and the harness, but a flag away) writes every query string; a
token sent to a plain HTTP URL by mistake would be logged. install() makes both write
``token=[redacted]`` instead (nginx: deploy/nginx/chat-proxy.conf logs /ws/ without queries).
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"([?&;]token=)[^&;\s\"]*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced."""
    return _TOKEN.sub(rf"\g<1>{REDACTED}", text) if "token=" in text.lower() else text


class RedactFilter(logging.Filter):
    """Redact tokens from a record's arguments (uvicorn's access log passes the path as one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install() -> None:
    """Redact Daphne's and uvicorn's access logs in this process (idempotent)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactFilter) for f in access.filters):
        access.addFilter(RedactFilter())
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # pragma: no cover - Daphne is a requirement
        return
    if getattr(AccessLogGenerator.write_entry, "redacts", False):
        return
    write_entry = AccessLogGenerator.write_entry

    def write_redacted(self, host, date, request, *args, **kwargs):
        return write_entry(self, host, date, redact(request), *args, **kwargs)

    write_redacted.redacts = True
    AccessLogGenerator.write_entry = write_redacted
