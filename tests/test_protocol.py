"""The server frames of chat.protocol against PROTOCOL.md 3.2, and the messages between processes.

The shapes below are PROTOCOL.md 3.2 written out (a clone of the project has no ../shared): for
each frame type, its fields and their JSON types. A field that sections 6-9 define is LATER: not
built yet, allowed once it is (with its type). A frame type that only sections 6-9 define is in
PENDING; once its builder lands, move it from PENDING to FRAMES with its shape.
"""

from __future__ import annotations

import json
import re

import pytest

from chat import protocol, selectors, services
from chat.models import Attachment, Message
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Later:
    """A field defined by sections 6-9: optional until built, then of this shape."""

    def __init__(self, shape):
        self.shape = shape


class Sometimes:
    """A field a frame carries only sometimes (``ref``, ``retry_after``)."""

    def __init__(self, shape):
        self.shape = shape


class OneOf:
    def __init__(self, *values):
        self.values = values


STR, INT, BOOL, NUMBER = str, int, bool, (int, float)
NULLABLE_TIME = ("time", None)
REF = Sometimes(STR)

AUTHOR = {"id": INT, "username": STR, "bot": BOOL}
REACTIONS = [{"emoji": STR, "count": INT, "users": [STR]}]
REPLY_TO = {"id": INT, "author": AUTHOR, "excerpt": STR}
ATTACHMENT = {
    "id": STR, "name": STR, "size": INT, "content_type": STR, "url": STR,
    "thumbnail_url": (STR, None), "width": (INT, None), "height": (INT, None),
}
MESSAGE = {
    "id": INT,
    "room": STR,
    "seq": INT,
    "author": AUTHOR,
    "body": STR,
    "html": STR,
    "client_id": STR,
    "created_at": "time",
    "edited_at": NULLABLE_TIME,
    "deleted": BOOL,
    "reply_to": (REPLY_TO, None),
    "reply_count": INT,
    "last_reply_at": NULLABLE_TIME,
    "reactions": REACTIONS,
    "mentions": [STR],
    "attachments": [ATTACHMENT],
}
ERROR_CODES = OneOf(
    "bad_json", "bad_frame", "too_large", "invalid", "not_found", "not_joined", "forbidden", "muted",
    "room_locked", "rate_limited", "unavailable", "server_error", "unauthenticated",
)

FRAMES = {
    "message": {"room": STR, "seq": INT, "message": MESSAGE},
    "message.edited": {"room": STR, "seq": INT, "message": MESSAGE},
    "message.deleted": {"room": STR, "seq": INT, "id": INT, "by": OneOf("author", "moderator"), "reply_to": (INT, None)},
    "message.reacted": {"room": STR, "seq": INT, "id": INT, "reactions": REACTIONS},
    "joined": {"room": STR, "seq": INT, "online": [STR], "resync": BOOL, "ref": REF},
    "left": {"room": STR, "ref": REF},
    "ack": {"room": STR, "client_id": STR, "id": INT, "seq": INT, "ref": REF},
    "typing": {"room": STR, "user": STR},
    "presence": {"room": STR, "user": STR, "online": BOOL},
    "read": {"room": STR, "seq": INT},
    "kicked": {"room": STR, "reason": STR},
    "error": {"code": ERROR_CODES, "detail": STR, "retry_after": Sometimes(NUMBER), "ref": REF},
    "pong": {"ref": REF},
}
# NOTIFICATION of section 7.
NOTIFICATION = {
    "id": INT, "kind": OneOf("mention", "dm", "reply", "room"), "room": STR, "message": MESSAGE,
    "created_at": "time", "read": BOOL,
}
FRAMES["notification"] = {"notification": NOTIFICATION}
# Section 9's slash commands: the answer to /help and /topic (client_id and ref: docs/protocol.md).
FRAMES["command"] = {"room": STR, "text": STR, "client_id": STR, "ref": REF}
# Not in PROTOCOL.md: the project's announcement of a room's new settings (docs/protocol.md).
FRAMES["room.updated"] = {"room": STR, "name": STR, "topic": STR, "locked": BOOL}
# Section 9: a notice key's latest value (data: any JSON value).
FRAMES["notice"] = {"room": STR, "key": STR, "data": object, "at": "time"}
PENDING = {}


def mismatches(value, shape, path="frame") -> list[str]:
    """Every way ``value`` (decoded JSON) differs from ``shape``; empty if it conforms."""
    if isinstance(shape, (Later, Sometimes)):
        return mismatches(value, shape.shape, path)
    if isinstance(shape, OneOf):
        return [] if value in shape.values else [f"{path}: {value!r} is not one of {shape.values}"]
    if shape == "time":
        return [] if isinstance(value, str) and TIMESTAMP.match(value) else [f"{path}: {value!r} is not a timestamp"]
    if isinstance(shape, tuple) and not all(isinstance(s, type) for s in shape):
        errors = [mismatches(value, s, path) if s is not None else ([] if value is None else ["not null"]) for s in shape]
        return [] if any(not e for e in errors) else [f"{path}: {value!r} matches none of {shape}"]
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        errors = [f"{path}.{k}: not in PROTOCOL.md 3.2" for k in value if k not in shape and k != "type"]
        for key, field in shape.items():
            if key in value:
                errors += mismatches(value[key], field, f"{path}.{key}")
            elif not isinstance(field, (Later, Sometimes)):
                errors.append(f"{path}.{key}: missing")
        return errors
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        return [e for i, item in enumerate(value) for e in mismatches(item, shape[0], f"{path}[{i}]")]
    if isinstance(value, bool) and shape is not BOOL:
        return [f"{path}: {value!r} is a boolean"]
    return [] if isinstance(value, shape) else [f"{path}: {value!r} is not {shape}"]


def check(frame_type: str, frame) -> dict:
    """Decode ``frame`` as a client would and assert it is a ``frame_type`` frame of 3.2."""
    wire = json.loads(frame if isinstance(frame, str) else protocol.encode(frame))
    assert wire["type"] == frame_type
    assert mismatches(wire, FRAMES[frame_type]) == []
    return wire


@pytest.fixture
def message() -> Message:
    """A reply with a reaction, so every field of MESSAGE has a value to check."""
    ann = make_user("ann")
    room = make_room(owner=ann, slug="general2")
    uploads = [
        Attachment.objects.create(uploader=ann, room=room, name="cat.png", size=9, file="attachments/a/a",
                                  content_type="image/png", width=4, height=3, thumbnail="thumbnails/a/a",
                                  thumbnail_type="image/webp"),
        Attachment.objects.create(uploader=ann, room=room, name="plan.pdf", size=9, file="attachments/b/b",
                                  content_type="application/pdf"),
    ]
    root, _ = services.message_post(room=room, author=ann, body="hi **all**", client_id="c-0")
    stored, _ = services.message_post(
        room=room, author=ann, body="hi all", client_id="c-1", reply_to=root.pk, attachments=[u.pk for u in uploads]
    )
    services.reaction_add(message_id=stored.pk, user=ann, emoji="👍")
    message = selectors.message_with_room(message_id=stored.pk)
    selectors.reactions_attach([message])
    return message


def samples(message: Message) -> dict[str, list]:
    """Each builder called as the server calls it, in each of its forms."""
    return {
        "message": [protocol.message_frame(seq=1, message=message)],
        "message.edited": [protocol.message_edited_frame(seq=2, message=message)],
        "message.deleted": [protocol.message_deleted_frame(seq=3, message=message, by=by) for by in ("author", "moderator")],
        "message.reacted": [protocol.message_reacted_frame(seq=5, message=message)],
        "joined": [
            protocol.joined_frame(room="general", seq=60, online=["ann", "bob"], resync=False),
            protocol.joined_frame(room="general", seq=60, online=[], resync=True, ref="r1"),
        ],
        "left": [protocol.left_frame(room="general")],
        "ack": [protocol.ack_frame(room="general", client_id="c-1", id=message.pk, seq=1)],
        "typing": [protocol.typing_frame(room="general", user="ann")],
        "presence": [protocol.presence_frame(room="general", user="ann", online=online) for online in (True, False)],
        "read": [protocol.read_frame(room="general", seq=57)],
        "kicked": [protocol.kicked_frame(room="general", reason="You were removed.")],
        "error": [
            protocol.error_frame(protocol.INVALID, "Empty body."),
            protocol.error_frame(protocol.RATE_LIMITED, "Slow down.", ref="r2", retry_after=2.5),
        ],
        "pong": [protocol.pong_frame()],
        "notification": [
            protocol.notification_frame(notification=protocol.notification_payload(
                id=9, kind=kind, room="general2", message=protocol.message_payload(message),
                created_at=message.created_at, read=False,
            ))
            for kind in ("mention", "dm", "reply", "room")
        ],
        "command": [protocol.command_frame(room="general", text="Commands: …", client_id="c-2")],
        "room.updated": [protocol.room_updated_frame(room=message.room)],
        "notice": [
            json.loads(protocol.notice_encode(room="prices", key="ACME", data=data, at=1764806400.5).text)
            for data in ({"bid": 1.5}, [1, 2], "up", 3, None)
        ],
    }


def test_every_frame_type_of_3_2_has_a_builder_and_every_builder_a_frame_type():
    assert set(protocol.FRAME_BUILDERS) == set(FRAMES)
    assert not set(protocol.FRAME_BUILDERS) & set(PENDING), "built now: move it from PENDING to FRAMES"


def test_each_builder_makes_the_frame_type_it_is_registered_for(message):
    built = samples(message)
    assert set(built) == set(protocol.FRAME_BUILDERS)
    for frame_type, frames in built.items():
        for frame in frames:
            assert frame["type"] == frame_type


@pytest.mark.parametrize("frame_type", sorted(FRAMES))
def test_each_built_frame_has_the_fields_and_types_of_3_2(frame_type, message):
    for frame in samples(message)[frame_type]:
        check(frame_type, frame)


def test_room_events_are_encoded_as_3_2_with_the_message_state(message):
    for kind, by in ((protocol.MESSAGE, ""), (protocol.MESSAGE_EDITED, ""), (protocol.MESSAGE_DELETED, "moderator"),
                     (protocol.MESSAGE_REACTED, "")):
        event = protocol.event_frame(kind=kind, seq=7, message=message, by=by)
        wire = check(kind, event.text)
        assert (event.seq, wire["seq"], wire["room"]) == (7, 7, "general2")
    assert check(protocol.MESSAGE, protocol.event_frame(kind=protocol.MESSAGE, seq=1, message=message).text)["message"]["body"] == "hi all"


def test_a_deleted_message_is_sent_with_an_empty_body(message):
    message.deleted = True
    wire = check(protocol.MESSAGE_EDITED, protocol.message_edited_frame(seq=4, message=message))
    assert (wire["message"]["deleted"], wire["message"]["body"], wire["message"]["attachments"]) == (True, "", [])
    assert (wire["message"]["html"], wire["message"]["reactions"], wire["message"]["mentions"]) == ("", [], [])


def test_a_reply_quotes_its_root_and_shows_its_reactions(message):
    wire = check(protocol.MESSAGE, protocol.message_frame(seq=2, message=message))["message"]
    assert wire["reply_to"]["excerpt"] == "hi **all**"
    assert wire["reply_to"]["author"] == {"id": message.author_id, "username": "ann", "bot": False}
    assert wire["reactions"] == [{"emoji": "👍", "count": 1, "users": ["ann"]}]
    assert wire["html"] == "<p>hi all</p>"
    deleted = check(protocol.MESSAGE_DELETED, protocol.message_deleted_frame(seq=3, message=message, by="author"))
    assert deleted["reply_to"] == message.reply_to_id


def test_message_carries_its_attachments_in_order(message):
    wire = check(protocol.MESSAGE, protocol.message_frame(seq=1, message=message))
    assert [(a["name"], a["thumbnail_url"] is not None) for a in wire["message"]["attachments"]] == [
        ("cat.png", True), ("plan.pdf", False)
    ]


def test_the_checker_refuses_a_frame_off_the_protocol():
    """The shapes can fail: a renamed, missing, extra or mistyped field is reported."""
    good = {"type": "ack", "room": "general", "client_id": "c", "id": 1, "seq": 1}
    assert mismatches(good, FRAMES["ack"]) == []
    assert mismatches({**good, "seq": "1"}, FRAMES["ack"])
    assert mismatches({**good, "seq": True}, FRAMES["ack"])
    assert mismatches({k: v for k, v in good.items() if k != "id"}, FRAMES["ack"])
    assert mismatches({**good, "message_id": 1}, FRAMES["ack"])
    assert mismatches({"type": "error", "code": "oops", "detail": ""}, FRAMES["error"])


def test_a_user_notifications_message_makes_the_frames_of_its_users_only(message):
    """What a hub receives for a message notifying three users, one of them with a socket here."""
    payload = protocol.user_notifications_message(origin=None, notes=[{
        "room": "general2", "message": protocol.message_payload(message),
        "items": [[1, 11, "mention", "2026-11-26T09:00:00.123456Z"], [2, 12, "room", "2026-11-26T09:00:00.123456Z"]],
    }])
    texts = protocol.user_notifications_texts(json.loads(json.dumps(payload)), {2, 3})
    assert [user_id for user_id, _ in texts] == [2]
    wire = check("notification", texts[0][1])
    assert (wire["notification"]["id"], wire["notification"]["kind"], wire["notification"]["read"]) == (12, "room", False)


# --- events between processes --------------------------------------------------------------


def test_a_room_events_message_carries_its_frames_in_order():
    frames = [protocol.RoomEventFrame(seq=s, text=f'{{"seq":{s}}}') for s in (4, 5, 6)]
    message = protocol.room_events_message(room_id=3, frames=frames, at=0.0)
    assert (message["type"], message["room"]) == (protocol.ROOM_EVENT, 3)
    assert protocol.room_events_frames(json.loads(json.dumps(message))) == frames


def test_user_events_say_what_the_socket_does():
    assert protocol.close_event(code=4401, session_key="s") == {"close": 4401, "session_key": "s"}
    assert protocol.close_event(code=4403) == {"close": 4403}
    assert protocol.kick_event(room_id=3, reason="Banned.") == {"kick": 3, "reason": "Banned."}
    read = protocol.read_event(room="general", seq=9, origin="abc")
    assert read["origin"] == "abc"
    check("read", read["read"])
