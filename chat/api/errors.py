"""The one translation of refusals into REST responses (REST_FRAMEWORK["EXCEPTION_HANDLER"]).

Every error body is ``{"detail": "…", "code": "…"}``; ``code`` is the WebSocket error code
where one applies (PROTOCOL.md 4), so a client handles both doors alike.
"""

from __future__ import annotations

import logging
import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from .. import protocol
from ..protocol import ChatError

log = logging.getLogger(__name__)

STATUS_OF_CODE = {
    protocol.INVALID: status.HTTP_400_BAD_REQUEST,
    protocol.BAD_JSON: status.HTTP_400_BAD_REQUEST,
    protocol.BAD_FRAME: status.HTTP_400_BAD_REQUEST,
    protocol.TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    protocol.NOT_JOINED: status.HTTP_400_BAD_REQUEST,
    protocol.UNAUTHENTICATED: status.HTTP_401_UNAUTHORIZED,
    protocol.FORBIDDEN: status.HTTP_403_FORBIDDEN,
    protocol.MUTED: status.HTTP_403_FORBIDDEN,
    protocol.ROOM_LOCKED: status.HTTP_403_FORBIDDEN,
    protocol.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    protocol.RATE_LIMITED: status.HTTP_429_TOO_MANY_REQUESTS,
    protocol.UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
    protocol.SERVER_ERROR: status.HTTP_500_INTERNAL_SERVER_ERROR,
}

# DRF's exceptions that have a WebSocket twin; others keep DRF's own code.
CODE_OF_EXCEPTION = [
    (exceptions.ValidationError, protocol.INVALID),
    (exceptions.ParseError, protocol.BAD_JSON),
    (exceptions.NotAuthenticated, protocol.UNAUTHENTICATED),
    (exceptions.AuthenticationFailed, protocol.UNAUTHENTICATED),
    (exceptions.PermissionDenied, protocol.FORBIDDEN),
    (exceptions.NotFound, protocol.NOT_FOUND),
    (exceptions.Throttled, protocol.RATE_LIMITED),
]


def _first_message(detail) -> str:
    """The first message of a DRF error detail (string, list or field dict), as 'field: text'."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            text = _first_message(value)
            return text if field == "non_field_errors" else f"{field}: {text}"
        return "Invalid input."
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


def _error(status_code: int, code: str, detail: str, *, retry_after: float | None = None, **extra) -> Response:
    body = {"detail": detail, "code": code, **extra}
    headers = {}
    if retry_after is not None:
        body["retry_after"] = round(retry_after, 2)
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return Response(body, status=status_code, headers=headers)


def exception_handler(exc, context) -> Response:
    """Return the error response for ``exc``: ChatError, an oversized body (413 too_large),
    database outage, DRF or Django error."""
    if isinstance(exc, ChatError):
        return _error(STATUS_OF_CODE.get(exc.code, 500), exc.code, exc.detail, retry_after=exc.retry_after)
    if isinstance(exc, RequestDataTooBig):
        # Past the ASGI cap (chat/limits.py) only under a test client or another entry point.
        return _error(413, protocol.TOO_LARGE, "The request body is too large.")
    if isinstance(exc, (OperationalError, InterfaceError)):
        log.warning("database unavailable: %r", exc)
        return _error(503, protocol.UNAVAILABLE, "The database is unavailable; retry later.")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        log.error("API request failed", exc_info=exc)
        return _error(500, protocol.SERVER_ERROR, "Something went wrong; retry.")

    set_rollback()
    code = next((code for kind, code in CODE_OF_EXCEPTION if isinstance(exc, kind)), None)
    code = code or exc.default_code
    extra = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["errors"] = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    response = _error(exc.status_code, code, _first_message(exc.detail), retry_after=getattr(exc, "wait", None), **extra)
    if getattr(exc, "auth_header", None):
        response["WWW-Authenticate"] = exc.auth_header
    return response
