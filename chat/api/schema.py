"""OpenAPI pieces that serializers do not describe: MESSAGE and the error body.

MESSAGE is built by protocol.message_payload() (one shape for socket and REST), not by a
serializer, so its schema is written here once, as JSON Schema, and added to the document's
components by add_components() (a drf-spectacular postprocessing hook).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from .. import protocol

MAX_ID = 2**63 - 1  # ids and seqs are 64-bit

MESSAGE_SCHEMA = {
    "type": "object",
    "description": "MESSAGE, the one JSON shape of a message (docs/protocol.md, MESSAGE). "
    "A deleted message keeps its id and seq, has `deleted: true` and an empty body.",
    "properties": {
        "id": {"type": "integer", "format": "int64"},
        "room": {"type": "string", "description": "The room's slug."},
        "seq": {"type": "integer", "format": "int64", "description": "Seq of the event that created it."},
        "author": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "username": {"type": "string"}},
            "required": ["id", "username"],
            "additionalProperties": False,
        },
        "body": {"type": "string"},
        "client_id": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "edited_at": {"type": "string", "format": "date-time", "nullable": True},
        "deleted": {"type": "boolean"},
    },
    "required": ["id", "room", "seq", "author", "body", "client_id", "created_at", "edited_at", "deleted"],
    "additionalProperties": False,
}

ERROR_SCHEMA = {
    "type": "object",
    "description": "An error. `code` is the WebSocket error code where one applies (docs/protocol.md, Errors).",
    "properties": {
        "detail": {"type": "string"},
        "code": {
            "type": "string",
            "example": protocol.INVALID,
            "description": "`invalid`, `not_found`, `forbidden`, `muted`, `room_locked`, `rate_limited`, "
            "`unavailable`, `unauthenticated`, `bad_json`, `server_error`, or DRF's own code "
            "(`method_not_allowed`, `unsupported_media_type`, `not_acceptable`).",
        },
        "retry_after": {"type": "number", "description": "Seconds to wait (with `rate_limited`)."},
        "errors": {
            "type": "object",
            "additionalProperties": True,
            "description": "Field errors of a 400 `invalid`: field name → list of messages.",
        },
    },
    "required": ["detail", "code"],
}

MESSAGE = {"$ref": "#/components/schemas/Message"}
ERROR = {"$ref": "#/components/schemas/Error"}

HISTORY_PAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "results": {"type": "array", "items": MESSAGE, "description": "Messages in ascending seq."},
        "has_more_before": {"type": "boolean", "description": "More matches with a lower seq exist."},
        "has_more_after": {"type": "boolean", "description": "More matches with a higher seq exist."},
    },
    "required": ["results", "has_more_before", "has_more_after"],
    "additionalProperties": False,
}
HISTORY_PAGE = {"$ref": "#/components/schemas/HistoryPage"}

NOTIFICATION_SCHEMA = {
    "type": "object",
    "description": "NOTIFICATION (docs/protocol.md, Notifications): a message that concerns the caller, and why.",
    "properties": {
        "id": {"type": "integer", "format": "int64"},
        "kind": {"type": "string", "enum": ["mention", "dm", "reply", "room"]},
        "room": {"type": "string", "description": "The room's slug."},
        "message": MESSAGE,
        "created_at": {"type": "string", "format": "date-time"},
        "read": {"type": "boolean"},
    },
    "required": ["id", "kind", "room", "message", "created_at", "read"],
    "additionalProperties": False,
}
NOTIFICATION = {"$ref": "#/components/schemas/Notification"}

NOTIFICATIONS_PAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "results": {"type": "array", "items": NOTIFICATION, "description": "Newest first."},
        "has_more": {"type": "boolean", "description": "Older ones exist (ask with `before` = the last id)."},
    },
    "required": ["results", "has_more"],
    "additionalProperties": False,
}
NOTIFICATIONS_PAGE = {"$ref": "#/components/schemas/NotificationsPage"}

_ERROR_TEXT = {
    400: "Invalid input (`invalid`).",
    401: "Not authenticated (`unauthenticated`).",
    403: "Not allowed (`forbidden`, `muted`, `room_locked`), or a session request without a CSRF token.",
    404: "No such room, message or user, or one the caller may not see (`not_found`).",
    429: "Too many requests (`rate_limited`); `Retry-After` says how many seconds to wait.",
    503: "The database is unavailable (`unavailable`); nothing was stored, retry later.",
}
# Statuses every authenticated operation may answer besides its own.
COMMON = (400, 401, 403, 404, 429, 503)

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    type=int,
    location=OpenApiParameter.HEADER,
    response=[429],
    required=True,
    description="Whole seconds to wait before retrying.",
)


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for ``statuses``, for extend_schema(responses=...)."""
    return {status: OpenApiResponse(ERROR, description=_ERROR_TEXT[status]) for status in statuses}


def add_components(result, generator, request, public):
    """Postprocessing hook: add Message and Error to the document's components."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Message"] = MESSAGE_SCHEMA
    schemas["Error"] = ERROR_SCHEMA
    schemas["HistoryPage"] = HISTORY_PAGE_SCHEMA
    schemas["Notification"] = NOTIFICATION_SCHEMA
    schemas["NotificationsPage"] = NOTIFICATIONS_PAGE_SCHEMA
    # Every operation that takes a body answers a body it cannot parse with 415.
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault(
                    "415", {"description": "Unsupported media type.", "content": {"application/json": {"schema": ERROR}}}
                )
    return result
