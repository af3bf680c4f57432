"""Rooms, memberships, messages and the per-room event log.

Fields and constraints only; every write goes through ``chat.services``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Room(models.Model):
    """A chat room. ``seq`` is the number of the room's last event (0 for none yet)."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    topic = models.CharField(max_length=250, blank=True)
    private = models.BooleanField(default=False)
    locked = models.BooleanField(default=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # For a direct-message room: "<lower user id>:<higher user id>", so the pair's room is unique.
    dm_key = models.CharField(max_length=50, null=True, blank=True, unique=True)
    seq = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [("moderate", "Can moderate every room")]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's place in a room: role and read position."""

    class Role(models.TextChoices):
        OWNER = "owner"
        MODERATOR = "moderator"
        MEMBER = "member"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    read_seq = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="membership_room_user")]
        # (room, user) is covered by the constraint's index; this one serves "rooms of a user".
        indexes = [models.Index(fields=["user", "room"], name="membership_user_room")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.room_id} ({self.role})"


class Message(models.Model):
    """A message; ``seq`` is the seq of the room event that created it."""

    MAX_BODY = 4000

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    body = models.TextField(max_length=MAX_BODY)
    client_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted = models.BooleanField(default=False)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["author", "client_id"], name="message_author_client_id"),
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq"),
        ]
        # (room, seq) serves history; (author, created_at) the posting rate window.
        indexes = [models.Index(fields=["author", "created_at"], name="message_author_created")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.room_id}/{self.seq}"


class RoomEvent(models.Model):
    """One numbered change in a room, kept so sockets can resume (the newest events only)."""

    class Kind(models.TextChoices):
        MESSAGE = "message"
        EDITED = "message.edited"
        DELETED = "message.deleted"

    class By(models.TextChoices):
        AUTHOR = "author"
        MODERATOR = "moderator"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    by = models.CharField(max_length=10, choices=By.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="roomevent_room_seq")]

    def __str__(self) -> str:
        return f"{self.room_id}/{self.seq} {self.kind}"


class RoomBan(models.Model):
    """The user may not join or read the room until ``until`` (for ever when null)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_bans")
    until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="roomban_room_user")]


class Mute(models.Model):
    """The user may read the room but not post until ``until`` (for ever when null)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="mutes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mutes")
    until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="mute_room_user")]


def active_until_q(now) -> Q:
    """Filter for bans and mutes still in force at ``now``."""
    return Q(until__isnull=True) | Q(until__gt=now)
