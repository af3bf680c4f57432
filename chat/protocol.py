"""The WebSocket envelope of PROTOCOL.md 3: frame types, error codes, parsing and the one
JSON shape of a message.

Nothing here touches the database or the channel layer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from typing import Any, NotRequired, TypedDict

from django.core.exceptions import ObjectDoesNotExist

SUBPROTOCOL = "chat.v1"
MAX_FRAME_BYTES = 64 * 1024
MAX_REF = 64
# JSON nested deeper than this is refused as bad_json at every door (PROTOCOL.md 3.4).
MAX_JSON_DEPTH = 32
# Integers in client frames (ids, seqs, since) fit a signed 64-bit column.
MAX_INT = 2**63 - 1
# Events kept per room for resuming: PROTOCOL.md promises replay of the last 500.
EVENTS_KEPT = 500

# Client → server frame types.
JOIN = "join"
LEAVE = "leave"
SEND = "send"
EDIT = "edit"
DELETE = "delete"
TYPING = "typing"
READ = "read"
REACT = "react"
UNREACT = "unreact"
PING = "ping"

# Server → client frame types.
MESSAGE = "message"
MESSAGE_EDITED = "message.edited"
MESSAGE_DELETED = "message.deleted"
MESSAGE_REACTED = "message.reacted"
JOINED = "joined"
LEFT = "left"
ACK = "ack"
PRESENCE = "presence"
KICKED = "kicked"
ERROR = "error"
PONG = "pong"
NOTIFICATION = "notification"
COMMAND = "command"  # the answer to a slash command that stores nothing (PROTOCOL.md 9)
ROOM_UPDATED = "room.updated"  # a room's name, topic or lock changed (docs/protocol.md)
NOTICE = "notice"

# Error codes (PROTOCOL.md 3.4).
BAD_JSON = "bad_json"
BAD_FRAME = "bad_frame"
TOO_LARGE = "too_large"
INVALID = "invalid"
NOT_FOUND = "not_found"
NOT_JOINED = "not_joined"
FORBIDDEN = "forbidden"
MUTED = "muted"
ROOM_LOCKED = "room_locked"
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"
SERVER_ERROR = "server_error"
UNAUTHENTICATED = "unauthenticated"

# Close codes.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_BANNED = 4403
CLOSE_FLOODING = 4429
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013  # the process is at CHAT_MAX_CONNECTIONS (load shedding)

# The fields each client frame requires (name → type); `since` is optional on join.
_FIELDS: dict[str, dict[str, type]] = {
    JOIN: {"room": str},
    LEAVE: {"room": str},
    SEND: {"room": str, "body": str, "client_id": str},
    EDIT: {"id": int, "body": str},
    DELETE: {"id": int},
    TYPING: {"room": str},
    READ: {"room": str, "seq": int},
    REACT: {"id": int, "emoji": str},
    UNREACT: {"id": int, "emoji": str},
    PING: {},
}
# The characters of the root's body a reply's MESSAGE.reply_to quotes (PROTOCOL.md 6).
EXCERPT_CHARS = 120
# Names listed per emoji in REACTIONS; the count is exact.
REACTION_USERS_SHOWN = 20


class ChatError(Exception):
    """A refusal with a PROTOCOL.md 3.4 code: an `error` frame on the socket, an error body over REST."""

    def __init__(self, code: str, detail: str, *, ref: str | None = None, retry_after: float | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref
        self.retry_after = retry_after


def _is_int(value: Any) -> bool:
    """True for a JSON integer in 0..MAX_INT (not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT


# --- text and JSON that can be stored faithfully (PROTOCOL.md 3.4) ---------------------

# NUL (PostgreSQL refuses it in text; SQLite stores it) and lone surrogates (not encodable
# as UTF-8: json.loads turns a valid "\ud83d\ude00" pair into one code point, so any
# surrogate left in a str is a lone one).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# A JSON string, or an unterminated one up to the end of the text; possessive, and consumed
# left to right by one scan, so no input makes it backtrack or rescan.
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+"?')
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_INNERMOST = re.compile(r"\[\]|\{\}")


def text_storable(value: str) -> bool:
    """Return True if ``value`` has no NUL and no lone surrogate."""
    return _UNSTORABLE.search(value) is None


def validate_text(value: str, *, field: str = "text") -> str:
    """Return ``value``, or raise invalid if it holds a NUL or a lone surrogate."""
    if _UNSTORABLE.search(value) is not None:
        raise ChatError(INVALID, f"`{field}` must not contain NUL characters or lone surrogates.")
    return value


def json_depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Return False if the JSON ``text`` nests arrays and objects deeper than ``limit``.

    Cheap and bounded whatever the input (no recursion, C-speed passes), so it runs before
    the decoder, which would otherwise meet a 100,000-deep body with RecursionError.
    Malformed brackets may also answer False; such text is not valid JSON anyway.
    """
    if text.count("[") + text.count("{") <= limit:
        return True
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    # Each pass removes the innermost pairs (one scan, so "{[]}" loses one level, not two):
    # a depth of d needs exactly d passes.
    for _ in range(limit):
        shorter = _INNERMOST.sub("", brackets)
        if not shorter:
            return True
        if len(shorter) == len(brackets):
            return False
        brackets = shorter
    return False


def loads(text: str) -> Any:
    """Decode JSON ``text``; raise ValueError if it is malformed or nested too deep."""
    if not json_depth_ok(text):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep.") from None


def valid_ref(ref: Any) -> bool:
    """True if ``ref`` can be echoed: a string of at most MAX_REF storable characters."""
    return isinstance(ref, str) and len(ref) <= MAX_REF and text_storable(ref)


def parse_frame(text: str | None) -> dict[str, Any]:
    """Return the client frame in ``text`` as a dict, or raise ChatError.

    Checks run in PROTOCOL.md's order: size, JSON, frame shape. ``None`` stands for a
    binary frame.
    """
    if text is None:
        raise ChatError(BAD_JSON, "Frames must be UTF-8 JSON in text frames.")
    # surrogatepass: sizing must not raise on a str no real server would hand over.
    size = len(text) if len(text) * 4 <= MAX_FRAME_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FRAME_BYTES:
        raise ChatError(TOO_LARGE, f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
    try:
        frame = loads(text)
    except ValueError:
        raise ChatError(BAD_JSON, f"The frame is not valid JSON nested at most {MAX_JSON_DEPTH} levels.") from None
    if not isinstance(frame, dict):
        raise ChatError(BAD_JSON, "The frame must be a JSON object.")

    ref = frame.get("ref")
    if ref is not None and not valid_ref(ref):
        # Not echoed: a ref that cannot be encoded would break the reply itself.
        raise ChatError(
            BAD_FRAME, f"`ref` must be a string of at most {MAX_REF} characters, without NUL or lone surrogates."
        )
    kind = frame.get("type")
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise ChatError(BAD_FRAME, "Unknown or missing `type`.", ref=ref)
    for name, expected in fields.items():
        value = frame.get(name)
        if not (_is_int(value) if expected is int else isinstance(value, expected)):
            kind_name = f"an integer in 0..{MAX_INT}" if expected is int else f"a {expected.__name__}"
            raise ChatError(BAD_FRAME, f"`{name}` is missing or not {kind_name}.", ref=ref)
    if kind == JOIN and frame.get("since") is not None and not _is_int(frame["since"]):
        raise ChatError(BAD_FRAME, f"`since` must be an integer in 0..{MAX_INT}.", ref=ref)
    if kind == SEND and frame.get("reply_to") is not None and not _is_int(frame["reply_to"]):
        raise ChatError(BAD_FRAME, f"`reply_to` must be null or a message id in 0..{MAX_INT}.", ref=ref)
    if kind == SEND and not isinstance(frame.get("attachments", []), list):
        raise ChatError(BAD_FRAME, "`attachments` must be a list of upload ids.", ref=ref)
    if kind == LEAVE and not text_storable(frame["room"]):
        # `left` echoes the room: refuse what the reply could not carry.
        raise ChatError(BAD_FRAME, "`room` must not contain NUL characters or lone surrogates.", ref=ref)
    return frame


# json.dumps() with options builds a JSONEncoder on every call; one made once encodes the same.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def encode(frame: dict[str, Any]) -> str:
    """Serialize a server frame as text that always encodes to UTF-8.

    Input is validated before it reaches a reply; should a lone surrogate slip through
    anyway, it goes out escaped (``\\udc00``) rather than break the server's encoder.
    """
    text = _ENCODER.encode(frame)
    if _SURROGATE.search(text) is not None:
        return _ASCII_ENCODER.encode(frame)
    return text


def timestamp(value: datetime | None) -> str | None:
    """Format a time as PROTOCOL.md does: UTC, microseconds, a trailing Z."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_bot(user) -> bool:
    """True if ``user`` is a bot (PROTOCOL.md 9): it has a ``chat_bot`` row (chat.models.Bot).

    Free when the row came with the user (select_related("chat_bot"), as the loaders of
    messages and the authentication backends do); otherwise one query.
    """
    if not getattr(user, "is_authenticated", False):
        return False
    try:
        return user.chat_bot is not None
    except ObjectDoesNotExist:
        return False


def author_payload(user) -> Author:
    """``author`` of MESSAGE."""
    return {"id": user.pk, "username": user.username, "bot": is_bot(user)}


def message_reactions(message) -> list[ReactionShape]:
    """REACTIONS of ``message`` as its loader attached them (selectors.reactions_attach); none
    for a deleted message (a deletion hides them) or one that was never given any."""
    if message.deleted:
        return []
    return getattr(message, "reaction_list", None) or []


def message_payload(message) -> MessageShape:
    """Return MESSAGE, the one JSON shape of a message (socket and REST).

    ``message`` needs ``room``, ``author`` and, for a reply, ``reply_to`` with its author loaded
    (select_related), and its reactions attached (selectors.reactions_attach), to avoid queries.
    A deleted message shows no body, html, reactions or mentions; a reply to a deleted root
    quotes nothing of it.
    """
    deleted = message.deleted
    root = message.reply_to if message.reply_to_id is not None else None
    return {
        "id": message.pk,
        "room": message.room.slug,
        "seq": message.seq,
        "author": author_payload(message.author),
        "body": "" if deleted else message.body,
        "html": "" if deleted else message.html,
        "client_id": message.client_id,
        "created_at": timestamp(message.created_at),
        "edited_at": timestamp(message.edited_at),
        "deleted": deleted,
        "reply_to": None if root is None else {
            "id": root.pk,
            "author": author_payload(root.author),
            "excerpt": "" if root.deleted else root.body[:EXCERPT_CHARS],
        },
        "reply_count": message.reply_count,
        "last_reply_at": timestamp(message.last_reply_at),
        "reactions": message_reactions(message),
        "mentions": [] if deleted else list(message.mentions),
        "attachments": message_attachments(message),
    }


# Where files are served (chat/api/uploads.py file_view; chatproject/urls.py).
FILES_URL = "/files/"


def attachment_payload(attachment) -> AttachmentShape:
    """Return ATTACHMENT (PROTOCOL.md 8): an upload as the upload answer and MESSAGE carry it."""
    url = f"{FILES_URL}{attachment.pk}/"
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "url": url,
        "thumbnail_url": f"{url}thumbnail/" if attachment.thumbnail else None,
        "width": attachment.width,
        "height": attachment.height,
    }


# The attribute holding a message's attachments where they were loaded with it: selectors
# prefetch them to it (Prefetch(to_attr=…)), services.attachments.attach() sets it on new posts.
LOADED_ATTACHMENTS = "loaded_attachments"


def message_attachments(message) -> list[AttachmentShape]:
    """MESSAGE.attachments: none for a deleted message, else ``message.loaded_attachments``
    where they were loaded with the message (no query), else ``message.attachments.all()``
    (one query: a single message, after an edit or a restore)."""
    if message.deleted:
        return []
    rows = getattr(message, LOADED_ATTACHMENTS, None)
    if rows is None:
        rows = message.attachments.all()
    return [attachment_payload(a) for a in rows]


@dataclass(frozen=True)
class RoomEventFrame:
    """A room event ready to send: its seq and its encoded frame; ``at``, the time.time() of
    its commit where known (a live broadcast, not a read from the database), for the
    delivery-latency histogram (chat.metrics.DELIVERY_SECONDS)."""

    seq: int
    text: str
    at: float | None = field(default=None, compare=False)

    @cached_property
    def wire(self) -> bytes:
        """The whole WebSocket frame, built once for every socket it goes to."""
        return websocket_text_frame(self.text.encode())


def websocket_text_frame(payload: bytes) -> bytes:
    """A server's unfragmented, unmasked, uncompressed text frame (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 1 << 16:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


@dataclass(frozen=True)
class Notice:
    """A room's latest value of one notice key, ready to send (PROTOCOL.md 9, Notices):
    ``text`` is the encoded ``notice`` frame, ``at`` its time.time() (newer wins)."""

    key: str
    at: float
    text: str

    @cached_property
    def wire(self) -> bytes:
        """The whole WebSocket frame, built once for every socket it goes to."""
        return websocket_text_frame(self.text.encode())


NOTICE_KEY_MAX = 64  # characters
NOTICE_DATA_MAX = 4096  # bytes of the data's JSON (UTF-8, compact separators)
# Printable text: no C0/C1 control characters, no NUL, no lone surrogates (the key is a
# Redis hash field and a table cell on the page; a newline or an escape there helps no one).
_NOTICE_KEY_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def validate_notice_key(key: Any) -> str:
    """Return ``key`` (1–NOTICE_KEY_MAX printable characters), or raise invalid."""
    if not isinstance(key, str) or not 1 <= len(key) <= NOTICE_KEY_MAX or _NOTICE_KEY_BAD.search(key):
        raise ChatError(INVALID, f"A notice key is 1-{NOTICE_KEY_MAX} printable characters.")
    return key


def _json_storable(value: Any) -> bool:
    """True if no string in the JSON value ``value`` (keys included) holds NUL or a lone surrogate."""
    if isinstance(value, str):
        return text_storable(value)
    if isinstance(value, dict):
        return all(text_storable(k) and _json_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_storable(v) for v in value)
    return True


def notice_encode(*, room: str, key: str, data: Any, at: float) -> Notice:
    """The encoded ``notice`` frame of ``data`` (any JSON value) for ``key`` at ``at``.

    Raise too_large when the data's JSON is over NOTICE_DATA_MAX bytes, invalid when it holds
    text that cannot be sent faithfully (NUL, lone surrogates).
    """
    validate_notice_key(key)
    data_text = _ENCODER.encode(data)
    if len(data_text.encode("utf-8", "surrogatepass")) > NOTICE_DATA_MAX:
        raise ChatError(TOO_LARGE, f"Notice data is at most {NOTICE_DATA_MAX} bytes of JSON.")
    if not _json_storable(data):
        raise ChatError(INVALID, "Notice data must not contain NUL characters or lone surrogates.")
    moment = datetime.fromtimestamp(at, timezone.utc)
    return Notice(key=key, at=at, text=encode(notice_frame(room=room, key=key, data=data, at=timestamp(moment))))


# --- server → client frames (PROTOCOL.md 3.2) ------------------------------------------
#
# Every frame the server sends is built by one of the builders below, each returning the
# TypedDict of its frame type; FRAME_BUILDERS maps every frame type to its builder
# (tests/test_protocol.py holds them against PROTOCOL.md 3.2). TypedDicts are plain dicts at
# run time, so a builder costs one call over the literal it replaces and encode() is unchanged.
# The frames of section 9 (notice) are not built yet.


class Author(TypedDict):
    id: int
    username: str
    bot: bool


class ReplyTo(TypedDict):
    """MESSAGE.reply_to of a reply: its root's id, author and first EXCERPT_CHARS characters."""

    id: int
    author: Author
    excerpt: str


class ReactionShape(TypedDict):
    """One entry of REACTIONS: the emoji, how many reacted, the first REACTION_USERS_SHOWN names."""

    emoji: str
    count: int
    users: list[str]


class AttachmentShape(TypedDict):
    """ATTACHMENT of PROTOCOL.md 8 (see attachment_payload())."""

    id: str
    name: str
    size: int
    content_type: str
    url: str
    thumbnail_url: str | None
    width: int | None
    height: int | None


class MessageShape(TypedDict):
    """MESSAGE of PROTOCOL.md 3.2 (see message_payload())."""

    id: int
    room: str
    seq: int
    author: Author
    body: str
    html: str
    client_id: str
    created_at: str | None
    edited_at: str | None
    deleted: bool
    reply_to: ReplyTo | None
    reply_count: int
    last_reply_at: str | None
    reactions: list[ReactionShape]
    mentions: list[str]
    attachments: list[AttachmentShape]


class MessageFrame(TypedDict):
    """``message`` and ``message.edited``: a room event carrying the message's state."""

    type: str
    room: str
    seq: int
    message: MessageShape


class MessageDeletedFrame(TypedDict):
    type: str
    room: str
    seq: int
    id: int
    by: str
    reply_to: int | None


class MessageReactedFrame(TypedDict):
    """``message.reacted``: the message's full current REACTIONS after one change."""

    type: str
    room: str
    seq: int
    id: int
    reactions: list[ReactionShape]


class JoinedFrame(TypedDict):
    type: str
    room: str
    seq: int
    online: list[str]
    resync: bool
    ref: NotRequired[str]


class LeftFrame(TypedDict):
    type: str
    room: str
    ref: NotRequired[str]


class AckFrame(TypedDict):
    type: str
    room: str
    client_id: str
    id: int
    seq: int
    ref: NotRequired[str]


class TypingFrame(TypedDict):
    type: str
    room: str
    user: str


class PresenceFrame(TypedDict):
    type: str
    room: str
    user: str
    online: bool


class ReadFrame(TypedDict):
    type: str
    room: str
    seq: int


class KickedFrame(TypedDict):
    type: str
    room: str
    reason: str


class ErrorFrame(TypedDict):
    type: str
    code: str
    detail: str
    retry_after: NotRequired[float]
    ref: NotRequired[str]


class PongFrame(TypedDict):
    type: str
    ref: NotRequired[str]


class NotificationShape(TypedDict):
    """NOTIFICATION of PROTOCOL.md 7: a message that concerns the user, and why."""

    id: int
    kind: str  # "mention" | "dm" | "reply" | "room"
    room: str
    message: MessageShape
    created_at: str | None
    read: bool


class NotificationFrame(TypedDict):
    """``notification``: to every open socket of the user, whatever rooms it joined."""

    type: str
    notification: NotificationShape


def message_frame(*, seq: int, message, payload: MessageShape | None = None) -> MessageFrame:
    """The ``message`` event of ``message`` at ``seq`` (needs room and author loaded);
    ``payload``: its MESSAGE, if the caller built it already."""
    payload = message_payload(message) if payload is None else payload
    return {"type": MESSAGE, "room": message.room.slug, "seq": seq, "message": payload}


def message_edited_frame(*, seq: int, message, payload: MessageShape | None = None) -> MessageFrame:
    """The ``message.edited`` event of ``message`` at ``seq``, with its current state."""
    payload = message_payload(message) if payload is None else payload
    return {"type": MESSAGE_EDITED, "room": message.room.slug, "seq": seq, "message": payload}


def message_deleted_frame(*, seq: int, message, by: str) -> MessageDeletedFrame:
    """The ``message.deleted`` event; ``by`` is "author" or "moderator"; ``reply_to`` the
    root's id when the message is a reply (clients lower its reply count)."""
    return {
        "type": MESSAGE_DELETED, "room": message.room.slug, "seq": seq, "id": message.pk, "by": by,
        "reply_to": message.reply_to_id,
    }


def message_reacted_frame(*, seq: int, message) -> MessageReactedFrame:
    """The ``message.reacted`` event with the message's current REACTIONS (message_reactions())."""
    return {
        "type": MESSAGE_REACTED, "room": message.room.slug, "seq": seq, "id": message.pk,
        "reactions": message_reactions(message),
    }


def joined_frame(*, room: str, seq: int, online: list[str], resync: bool, ref: str | None = None) -> JoinedFrame:
    frame: JoinedFrame = {"type": JOINED, "room": room, "seq": seq, "online": online, "resync": resync}
    if ref is not None:
        frame["ref"] = ref
    return frame


def left_frame(*, room: str) -> LeftFrame:
    return {"type": LEFT, "room": room}


def ack_frame(*, room: str, client_id: str, id: int, seq: int) -> AckFrame:
    """The reply to a stored (or already stored) ``send``."""
    return {"type": ACK, "room": room, "client_id": client_id, "id": id, "seq": seq}


def typing_frame(*, room: str, user: str) -> TypingFrame:
    return {"type": TYPING, "room": room, "user": user}


def presence_frame(*, room: str, user: str, online: bool) -> PresenceFrame:
    return {"type": PRESENCE, "room": room, "user": user, "online": online}


def read_frame(*, room: str, seq: int) -> ReadFrame:
    """The reader's new read position, for the reader's other sockets."""
    return {"type": READ, "room": room, "seq": seq}


def kicked_frame(*, room: str, reason: str) -> KickedFrame:
    return {"type": KICKED, "room": room, "reason": reason}


def error_frame(code: str, detail: str, *, ref: str | None = None, retry_after: float | None = None) -> ErrorFrame:
    """The ``error`` reply with a PROTOCOL.md 3.4 code; ``retry_after`` in seconds."""
    frame: ErrorFrame = {"type": ERROR, "code": code, "detail": detail}
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 2)
    if ref is not None:
        frame["ref"] = ref
    return frame


def pong_frame() -> PongFrame:
    return {"type": PONG}


def notification_payload(
    *, id: int, kind: str, room: str, message: MessageShape, created_at: datetime | str | None, read: bool
) -> NotificationShape:
    """NOTIFICATION, the one JSON shape of a notification (socket and REST)."""
    when = created_at if isinstance(created_at, str) or created_at is None else timestamp(created_at)
    return {"id": id, "kind": kind, "room": room, "message": message, "created_at": when, "read": read}


def notification_shape(notification) -> NotificationShape:
    """NOTIFICATION of a stored Notification (needs ``message__room`` and ``message__author`` loaded)."""
    return notification_payload(
        id=notification.pk, kind=notification.kind, room=notification.message.room.slug,
        message=message_payload(notification.message), created_at=notification.created_at,
        read=notification.read_at is not None,
    )


def notification_frame(*, notification: NotificationShape) -> NotificationFrame:
    return {"type": NOTIFICATION, "notification": notification}


class CommandFrame(TypedDict):
    """``command``: to the caller's socket alone, for /help and /topic (chat.commands); the
    ``client_id`` of the `send` it answers (nothing was stored under it)."""

    type: str
    room: str
    text: str
    client_id: str
    ref: NotRequired[str]


def command_frame(*, room: str, text: str, client_id: str) -> CommandFrame:
    return {"type": COMMAND, "room": room, "text": text, "client_id": client_id}


class RoomUpdatedFrame(TypedDict):
    """``room.updated``: the room's settings after a change, to every socket that joined it
    (unnumbered, like ``typing``: a missed one is read again with the room over REST)."""

    type: str
    room: str
    name: str
    topic: str
    locked: bool


def room_updated_frame(*, room) -> RoomUpdatedFrame:
    return {"type": ROOM_UPDATED, "room": room.slug, "name": room.name, "topic": room.topic, "locked": room.locked}
class NoticeFrame(TypedDict):
    """``notice``: a key's latest value, to every socket that joined the room (no seq)."""

    type: str
    room: str
    key: str
    data: Any
    at: str


def notice_frame(*, room: str, key: str, data: Any, at: str) -> NoticeFrame:
    return {"type": NOTICE, "room": room, "key": key, "data": data, "at": at}


ServerFrame = (
    MessageFrame | MessageDeletedFrame | MessageReactedFrame | JoinedFrame | LeftFrame | AckFrame | TypingFrame
    | PresenceFrame | ReadFrame | KickedFrame | ErrorFrame | PongFrame | NotificationFrame | CommandFrame
    | RoomUpdatedFrame | NoticeFrame
)

FRAME_BUILDERS = {
    MESSAGE: message_frame,
    MESSAGE_EDITED: message_edited_frame,
    MESSAGE_DELETED: message_deleted_frame,
    MESSAGE_REACTED: message_reacted_frame,
    JOINED: joined_frame,
    LEFT: left_frame,
    ACK: ack_frame,
    TYPING: typing_frame,
    PRESENCE: presence_frame,
    READ: read_frame,
    KICKED: kicked_frame,
    ERROR: error_frame,
    PONG: pong_frame,
    NOTIFICATION: notification_frame,
    COMMAND: command_frame,
    ROOM_UPDATED: room_updated_frame,
    NOTICE: notice_frame,
}

_ROOM_EVENT_BUILDERS = {MESSAGE: message_frame, MESSAGE_EDITED: message_edited_frame, MESSAGE_REACTED: message_reacted_frame}


def event_frame(*, kind: str, seq: int, message, by: str = "", payload: MessageShape | None = None) -> RoomEventFrame:
    """Return the encoded room event of type ``kind`` about ``message`` at ``seq``.

    ``payload``: the message's MESSAGE if the caller built it already (the posting path,
    whose `notification` frames carry the same one), for a ``message`` or ``message.edited``.
    """
    if kind == MESSAGE_DELETED:
        return RoomEventFrame(seq=seq, text=encode(message_deleted_frame(seq=seq, message=message, by=by)))
    if payload is not None and kind in (MESSAGE, MESSAGE_EDITED):
        frame = _ROOM_EVENT_BUILDERS[kind](seq=seq, message=message, payload=payload)
    else:
        frame = _ROOM_EVENT_BUILDERS[kind](seq=seq, message=message)
    return RoomEventFrame(seq=seq, text=encode(frame))


# --- events between processes (channel-layer messages) ---------------------------------
#
# What one server process tells the others through the channel layer (chat.realtime sends
# and receives them; nothing else does). Room messages go to a room's group, user events to
# a user's group. Their keys are kept as they were before this schema existed, so processes
# of two versions can share one Redis during a rolling deploy.

ROOM_EVENT = "room.event"  # committed room events, each with its seq and encoded frame
ROOM_EPHEMERAL = "room.ephemeral"  # an unnumbered frame for the room's sockets: typing
ROOM_PRESENCE = "room.presence"  # a user came online or went offline in a room
USER_EVENT = "user.event"  # something for every socket of one user
# Committed notifications of one message, to every hub (group HUBS_GROUP): each hub sends
# the frames of the users it has sockets of (its per-user index), so a message notifying 50
# users costs one layer message per process, not 50.
USER_NOTIFICATIONS = "user.notifications"
ROOM_NOTICE = "room.notice"  # a notice key's latest value (not a room event: no seq)
HEALTH_CHECK = "healthz"  # sent by /healthz to a channel of its own, to see the layer answer

RoomEphemeralMessage = TypedDict(
    "RoomEphemeralMessage", {"type": str, "room": int, "text": str, "except": "int | None"}
)


class RoomEventsMessage(TypedDict):
    type: str
    room: int
    events: list[list]  # [seq, encoded frame] in seq order
    t: NotRequired[float]  # time.time() at publishing, for the broadcast latency metric


class RoomPresenceMessage(TypedDict):
    type: str
    room: int
    user: str
    online: bool


class CloseEvent(TypedDict):
    """Close the user's sockets with ``close``: all, or those of one session or token."""

    close: int
    session_key: NotRequired[str]
    token: NotRequired[str]


class KickEvent(TypedDict):
    """Take the user's sockets out of the room with id ``kick`` (a ``kicked`` frame)."""

    kick: int
    reason: str


class ReadEvent(TypedDict):
    """Send ``read`` to the user's sockets but the one with socket id ``origin``."""

    read: ReadFrame
    origin: str | None


UserEvent = CloseEvent | KickEvent | ReadEvent


class UserEventMessage(TypedDict):
    type: str
    user: int
    event: UserEvent


class NotificationsOfMessage(TypedDict):
    """The notifications one message made: ``items`` are [user id, notification id, kind, created_at]."""

    room: str
    message: MessageShape
    items: list[list]


class UserNotificationsMessage(TypedDict):
    """The notifications of one commit (one or more messages); ``origin`` is the publishing
    hub's channel (it delivered them itself) or None."""

    type: str
    origin: str | None
    notes: list[NotificationsOfMessage]


def user_notifications_message(*, origin: str | None, notes: list[NotificationsOfMessage]) -> UserNotificationsMessage:
    return {"type": USER_NOTIFICATIONS, "origin": origin, "notes": notes}


def user_notifications_texts(message: UserNotificationsMessage, user_ids) -> list[tuple[int, str]]:
    """(user id, encoded ``notification`` frame) of each item whose user is in ``user_ids``, in order."""
    texts = []
    for note in message["notes"]:
        for user_id, notification_id, kind, created_at in note["items"]:
            if user_id in user_ids:
                payload = notification_payload(
                    id=notification_id, kind=kind, room=note["room"], message=note["message"],
                    created_at=created_at, read=False,
                )
                texts.append((user_id, encode(notification_frame(notification=payload))))
    return texts


def room_events_message(*, room_id: int, frames: list[RoomEventFrame], at: float) -> RoomEventsMessage:
    return {"type": ROOM_EVENT, "room": room_id, "events": [[f.seq, f.text] for f in frames], "t": at}


def room_events_frames(message: RoomEventsMessage) -> list[RoomEventFrame]:
    """The frames a ROOM_EVENT message carries, in its order."""
    at = message.get("t")
    return [RoomEventFrame(seq=seq, text=text, at=at) for seq, text in message["events"]]


class RoomNoticeMessage(TypedDict):
    type: str
    room: int
    key: str
    at: float
    text: str  # the encoded `notice` frame


def room_notice_message(*, room_id: int, notice: Notice) -> RoomNoticeMessage:
    return {"type": ROOM_NOTICE, "room": room_id, "key": notice.key, "at": notice.at, "text": notice.text}


def room_notice(message: RoomNoticeMessage) -> Notice:
    """The notice a ROOM_NOTICE message carries."""
    return Notice(key=message["key"], at=message["at"], text=message["text"])


def room_ephemeral_message(*, room_id: int, text: str, except_user: int | None) -> RoomEphemeralMessage:
    return {"type": ROOM_EPHEMERAL, "room": room_id, "text": text, "except": except_user}


def room_presence_message(*, room_id: int, user: str, online: bool) -> RoomPresenceMessage:
    return {"type": ROOM_PRESENCE, "room": room_id, "user": user, "online": online}


def user_event_message(*, user_id: int, event: UserEvent) -> UserEventMessage:
    return {"type": USER_EVENT, "user": user_id, "event": event}


def close_event(*, code: int, session_key: str | None = None, token: str | None = None) -> CloseEvent:
    """Close every socket of the user, or only those of ``session_key`` or ``token``."""
    event: CloseEvent = {"close": code}
    if session_key is not None:
        event["session_key"] = session_key
    if token is not None:
        event["token"] = token
    return event


def kick_event(*, room_id: int, reason: str) -> KickEvent:
    return {"kick": room_id, "reason": reason}


def read_event(*, room: str, seq: int, origin: str | None) -> ReadEvent:
    return {"read": read_frame(room=room, seq=seq), "origin": origin}


class HealthCheckMessage(TypedDict):
    type: str


def health_check_message() -> HealthCheckMessage:
    return {"type": HEALTH_CHECK}


LayerMessage = (
    RoomEventsMessage | RoomEphemeralMessage | RoomPresenceMessage | UserEventMessage | UserNotificationsMessage
    | HealthCheckMessage
)
