"""OpenAPI pieces that serializers do not describe: MESSAGE and the error body.

MESSAGE is built by protocol.message_payload() (one shape for socket and REST), not by a
serializer, so its schema is written here once, as JSON Schema, and added to the document's
components by add_components() (a drf-spectacular postprocessing hook).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from .. import protocol

MAX_ID = 2**63 - 1  # ids and seqs are 64-bit

AUTHOR_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "username": {"type": "string"}, "bot": {"type": "boolean"}},
    "required": ["id", "username", "bot"],
    "additionalProperties": False,
}

REACTIONS_SCHEMA = {
    "type": "array",
    "description": "REACTIONS: each emoji in the order it was first used (of the reactions still there).",
    "items": {
        "type": "object",
        "properties": {
            "emoji": {"type": "string"},
            "count": {"type": "integer", "description": "Exact."},
            "users": {"type": "array", "items": {"type": "string"}, "maxItems": protocol.REACTION_USERS_SHOWN,
                      "description": f"The first {protocol.REACTION_USERS_SHOWN} who reacted."},
        },
        "required": ["emoji", "count", "users"],
        "additionalProperties": False,
    },
}

ATTACHMENT_SCHEMA = {
    "type": "object",
    "description": "ATTACHMENT, an uploaded file (docs/protocol.md, Attachments). `content_type` comes from "
    "the bytes; images (PNG, JPEG, GIF, WebP) have `width`, `height` and a thumbnail of at most 400x400.",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string", "description": "The uploaded name, cleaned; never a path."},
        "size": {"type": "integer", "format": "int64", "description": "Bytes."},
        "content_type": {"type": "string"},
        "url": {"type": "string", "description": "`/files/<id>/`: served to those who may see the message's room."},
        "thumbnail_url": {"type": "string", "nullable": True},
        "width": {"type": "integer", "nullable": True},
        "height": {"type": "integer", "nullable": True},
    },
    "required": ["id", "name", "size", "content_type", "url", "thumbnail_url", "width", "height"],
    "additionalProperties": False,
}
ATTACHMENT = {"$ref": "#/components/schemas/Attachment"}

MESSAGE_SCHEMA = {
    "type": "object",
    "description": "MESSAGE, the one JSON shape of a message (docs/protocol.md, MESSAGE). "
    "A deleted message keeps its id and seq, has `deleted: true`, an empty body and html, and no "
    "reactions or mentions.",
    "properties": {
        "id": {"type": "integer", "format": "int64"},
        "room": {"type": "string", "description": "The room's slug."},
        "seq": {"type": "integer", "format": "int64", "description": "Seq of the event that created it."},
        "author": AUTHOR_SCHEMA,
        "body": {"type": "string", "description": "Markdown as typed; show `html` instead where HTML can be shown."},
        "html": {"type": "string", "description": "The body rendered and sanitized (docs/protocol.md, Formatting)."},
        "client_id": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "edited_at": {"type": "string", "format": "date-time", "nullable": True},
        "deleted": {"type": "boolean"},
        "reply_to": {
            "type": "object",
            "nullable": True,
            "description": "For a reply: its thread's root.",
            "properties": {
                "id": {"type": "integer", "format": "int64"},
                "author": AUTHOR_SCHEMA,
                "excerpt": {"type": "string", "description": f"The root body's first {protocol.EXCERPT_CHARS} characters."},
            },
            "required": ["id", "author", "excerpt"],
            "additionalProperties": False,
        },
        "reply_count": {"type": "integer", "description": "Replies not deleted."},
        "last_reply_at": {"type": "string", "format": "date-time", "nullable": True},
        "reactions": REACTIONS_SCHEMA,
        "mentions": {"type": "array", "items": {"type": "string"}, "description": "Usernames mentioned."},
        "attachments": {"type": "array", "items": ATTACHMENT, "description": "Empty for a deleted message."},
    },
    "required": ["id", "room", "seq", "author", "body", "html", "client_id", "created_at", "edited_at", "deleted",
                 "reply_to", "reply_count", "last_reply_at", "reactions", "mentions", "attachments"],
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

COMMAND_REPLY_SCHEMA = {
    "type": "object",
    "description": "The answer to a slash command that stores nothing (`/help`, `/topic`): the "
    "socket's `command` frame.",
    "properties": {
        "type": {"type": "string", "enum": [protocol.COMMAND]},
        "room": {"type": "string", "description": "The room's slug."},
        "text": {"type": "string", "description": "What to show the caller (only them)."},
        "client_id": {"type": "string"},
    },
    "required": ["type", "room", "text", "client_id"],
    "additionalProperties": False,
}
COMMAND_REPLY = {"$ref": "#/components/schemas/CommandReply"}
# A post's 200: the original of a repeated client_id, or a command's answer.
MESSAGE_OR_COMMAND = {"oneOf": [MESSAGE, COMMAND_REPLY]}

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

THREAD_PAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "root": MESSAGE,
        "results": {"type": "array", "items": MESSAGE, "description": "Replies in ascending seq."},
        "has_more_after": {"type": "boolean", "description": "More replies with a higher seq exist."},
    },
    "required": ["root", "results", "has_more_after"],
    "additionalProperties": False,
}
THREAD_PAGE = {"$ref": "#/components/schemas/ThreadPage"}

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
    413: "Too large (`too_large`).",
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


def _error_responses(*statuses: int) -> dict:
    return {str(s): {"description": _ERROR_TEXT[s], "content": {"application/json": {"schema": ERROR}}} for s in statuses}


# The upload view is an async Django view (chat/api/uploads.py), not a DRF view: described here.
UPLOAD_OPERATION = {
    "post": {
        "operationId": "rooms_uploads_create",
        "description": "Store a file for the caller in the room (multipart field `file`); post it with "
        "`attachments` on a message. Over CHAT_MAX_UPLOAD: 413 `too_large`, nothing stored. "
        "Counts against CHAT_UPLOAD_RATE. Never posted, it is removed after 24 hours.",
        "tags": ["rooms"],
        "parameters": [{"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                }
            },
        },
        "responses": {
            "201": {"description": "Stored.", "content": {"application/json": {"schema": ATTACHMENT}}},
            "413": {"description": "Over CHAT_MAX_UPLOAD (`too_large`).", "content": {"application/json": {"schema": ERROR}}},
            **_error_responses(*COMMON),
        },
        "security": [{"tokenAuth": []}, {"cookieAuth": []}],
    }
}


def add_components(result, generator, request, public):
    """Postprocessing hook: add Message and Error to the document's components."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Message"] = MESSAGE_SCHEMA
    schemas["Error"] = ERROR_SCHEMA
    schemas["HistoryPage"] = HISTORY_PAGE_SCHEMA
    schemas["ThreadPage"] = THREAD_PAGE_SCHEMA
    schemas["Attachment"] = ATTACHMENT_SCHEMA
    result.setdefault("paths", {})["/api/v1/rooms/{slug}/uploads/"] = UPLOAD_OPERATION
    schemas["Notification"] = NOTIFICATION_SCHEMA
    schemas["NotificationsPage"] = NOTIFICATIONS_PAGE_SCHEMA
    schemas["CommandReply"] = COMMAND_REPLY_SCHEMA
    # Every operation that takes a body answers a body it cannot parse with 415.
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault(
                    "415", {"description": "Unsupported media type.", "content": {"application/json": {"schema": ERROR}}}
                )
    return result
