"""Request validation and the shapes of rooms and members.

Messages are not serialized here: responses carry protocol.message_payload(), the one JSON
shape of a message (its schema is in schema.py).
"""

from __future__ import annotations

import re

from rest_framework import serializers

from .. import protocol, selectors, services
from ..models import Attachment, Membership, Message, Room
from .schema import MAX_ID


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text, and
    text that cannot be stored faithfully (NUL, lone surrogates: protocol.validate_text)."""

    default_error_messages = {"unstorable": "Text must not contain NUL characters or lone surrogates."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if not protocol.text_storable(data):
            self.fail("unstorable")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField for query strings: decimal digits only ("5", not "5.0", " 5" or "+5")."""

    _DIGITS = re.compile(r"[0-9]{1,19}")

    def to_internal_value(self, data):
        if isinstance(data, str) and not self._DIGITS.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictJSONIntegerField(serializers.IntegerField):
    """An IntegerField for JSON bodies: a JSON integer only (not "5", 5.0 or true)."""

    def to_internal_value(self, data):
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A BooleanField that takes true and false only (JSON booleans, or "true"/"false" in a form),
    not DRF's 0, 1, "yes", "on" …"""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and data.lower() in ("true", "false"):
            return data.lower() == "true"
        self.fail("invalid", input=data)


# --- tokens ---------------------------------------------------------------------------


class TokenObtainSerializer(serializers.Serializer):
    username = StrictCharField(trim_whitespace=False, max_length=150)
    password = StrictCharField(trim_whitespace=False, max_length=4096, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True, help_text="Send as `Authorization: Token <token>`.")


class ConnectTokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True, help_text="Open `/ws/chat/?token=<token>` with it, once.")
    expires_in = serializers.IntegerField(read_only=True, help_text="Seconds it stays usable.")


# --- rooms ----------------------------------------------------------------------------


class RoomSerializer(serializers.ModelSerializer):
    """A room as rooms_for_user() annotates it, with ``can_moderate`` set from the caller's
    rules.RoomAccess (api.views._with_rights)."""

    role = serializers.ChoiceField(
        choices=Membership.Role.choices,
        allow_null=True,
        read_only=True,
        help_text="The caller's role in the room; null when not a member.",
    )
    unread = serializers.IntegerField(
        read_only=True,
        help_text="Messages by others above the caller's read position, not deleted; "
        "0 in a public room the caller has not joined.",
    )

    mentions = serializers.IntegerField(
        read_only=True, help_text="The caller's unread notifications in the room (mentions, DMs, replies, @room)."
    )

    can_moderate = serializers.BooleanField(
        read_only=True,
        help_text="Whether the caller moderates the room (owner, room moderator or staff, not banned "
        "from it): delete others' messages, mute, ban, lock, add members.",
    )

    class Meta:
        model = Room
        fields = ["slug", "name", "topic", "private", "locked", "seq", "role", "can_moderate", "unread", "mentions"]
        read_only_fields = fields


class RoomDetailSerializer(RoomSerializer):
    online = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Usernames with a socket in the room."
    )

    class Meta(RoomSerializer.Meta):
        fields = [*RoomSerializer.Meta.fields, "online"]
        read_only_fields = fields


class RoomCreateSerializer(serializers.Serializer):
    slug = StrictCharField(
        trim_whitespace=False,
        help_text="1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit.",
    )
    name = StrictCharField(required=False, allow_blank=True, max_length=services.ROOM_NAME_MAX,
                           help_text="Defaults to the slug.")
    private = StrictBooleanField(default=False, help_text="Private rooms exist only for their members.")


class RoomUpdateSerializer(serializers.Serializer):
    name = StrictCharField(required=False, max_length=services.ROOM_NAME_MAX)
    locked = StrictBooleanField(required=False, help_text="A locked room takes posts from moderators only.")
    topic = StrictCharField(
        required=False, allow_blank=True, max_length=services.ROOM_TOPIC_MAX, help_text="Shown under the name; empty clears it."
    )


# --- members --------------------------------------------------------------------------


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    name = serializers.CharField(source="user.first_name", read_only=True,
                                 help_text='The display name set on the settings page ("" for none).')
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "name", "role", "joined_at"]
        read_only_fields = fields


class MemberAddSerializer(serializers.Serializer):
    username = StrictCharField(trim_whitespace=False, max_length=150)
    role = serializers.ChoiceField(
        choices=[(Membership.Role.MEMBER.value, "Member"), (Membership.Role.MODERATOR.value, "Moderator")],
        default=Membership.Role.MEMBER.value,
        help_text="Only the owner grants `moderator`.",
    )


# --- messages -------------------------------------------------------------------------


class MessagePostSerializer(serializers.Serializer):
    body = StrictCharField(
        trim_whitespace=False,
        required=False,
        allow_blank=True,
        default="",
        help_text=f"Stored trimmed; 1-{Message.MAX_BODY} characters after trimming (may be empty with attachments).",
    )
    attachments = serializers.ListField(
        child=StrictCharField(max_length=32),
        required=False,
        default=list,
        max_length=Attachment.MAX_PER_MESSAGE,
        help_text="Ids of the caller's own unposted uploads in this room (POST …/uploads/), "
        f"at most {Attachment.MAX_PER_MESSAGE}.",
    )
    client_id = StrictCharField(
        trim_whitespace=False,
        min_length=1,
        max_length=64,
        help_text="Unique per author (a UUID): repeating it returns the original message.",
    )
    reply_to = StrictJSONIntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_ID,
        help_text="The id of a message of this room, not deleted, to reply to (a reply to a reply "
        "joins that reply's thread); `not_found` otherwise.",
    )


class MessageEditSerializer(serializers.Serializer):
    body = StrictCharField(
        trim_whitespace=False,
        help_text=f"Stored trimmed; 1-{Message.MAX_BODY} characters after trimming.",
    )


class HistoryQuerySerializer(serializers.Serializer):
    before = StrictIntegerField(required=False, min_value=0, max_value=MAX_ID,
                                help_text="The newest messages with seq < before.")
    after = StrictIntegerField(required=False, min_value=0, max_value=MAX_ID,
                               help_text="The oldest messages with seq > after (not with `before`).")
    limit = StrictIntegerField(required=False, min_value=1, max_value=selectors.HISTORY_LIMIT_MAX,
                               default=selectors.HISTORY_LIMIT_DEFAULT)
    q = StrictCharField(required=False, allow_blank=True, max_length=200,
                        help_text="Only messages having every word (full-text search on PostgreSQL, "
                        "a case-insensitive match on SQLite); deleted messages never match.")

    def validate(self, attrs):
        if attrs.get("before") is not None and attrs.get("after") is not None:
            raise serializers.ValidationError("Give `before` or `after`, not both.")
        return attrs



class ThreadQuerySerializer(serializers.Serializer):
    after = StrictIntegerField(required=False, min_value=0, max_value=MAX_ID,
                               help_text="Only replies with seq > after.")
    limit = StrictIntegerField(required=False, min_value=1, max_value=selectors.HISTORY_LIMIT_MAX,
                               default=selectors.HISTORY_LIMIT_DEFAULT)


class ReactionSerializer(serializers.Serializer):
    emoji = StrictCharField(
        trim_whitespace=False, max_length=64,
        help_text="One emoji (a single grapheme Unicode calls an emoji; skin tones and ZWJ sequences included).",
    )
