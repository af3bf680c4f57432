"""Rooms, memberships, messages, the per-room event log and attachments.

Fields and constraints only; every write goes through ``chat.services``.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


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
    # Active outgoing-webhook subscriptions (PROTOCOL.md 9), kept by chat.services.subscriptions
    # under the room's lock: read with the room under that lock, it tells a post whether to
    # write outbox rows without a query of its own.
    subscriptions_active = models.PositiveIntegerField(default=0, editable=False)

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
    """A message; ``seq`` is the seq of the room event that created it.

    ``html`` is the body's rendering (chat.formatting), made when it is stored or edited, and
    ``mentions`` the usernames rendered as mentions in it. A reply points at its thread's root
    (``reply_to``, one level); a root keeps ``reply_count`` (replies not deleted) and
    ``last_reply_at``, changed in the transaction of the reply, its deletion or its restoring.
    """

    MAX_BODY = 4000

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    body = models.TextField(max_length=MAX_BODY)
    client_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted = models.BooleanField(default=False)
    html = models.TextField(blank=True, default="")
    mentions = models.JSONField(default=list, blank=True)
    # Indexed with seq below (a thread's page); a root is never removed before its replies
    # (messages are deleted softly), so CASCADE only runs when the room goes.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies", db_index=False
    )
    reply_count = models.IntegerField(default=0)
    last_reply_at = models.DateTimeField(null=True, blank=True)
    # The emoji of its reactions in the order each was first used (since it last had none).
    reaction_order = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["author", "client_id"], name="message_author_client_id"),
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq"),
        ]
        # (room, seq) serves history; (author, created_at) the posting rate window;
        # (reply_to, seq) a thread's replies in order.
        indexes = [
            models.Index(fields=["author", "created_at"], name="message_author_created"),
            models.Index(fields=["reply_to", "seq"], name="message_reply_to_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.room_id}/{self.seq}"


class RoomEvent(models.Model):
    """One numbered change in a room, kept so sockets can resume (the newest events only)."""

    class Kind(models.TextChoices):
        MESSAGE = "message"
        EDITED = "message.edited"
        DELETED = "message.deleted"
        REACTED = "message.reacted"

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


class Reaction(models.Model):
    """One user's emoji on a message (PROTOCOL.md 6). The constraint makes a second identical
    reaction impossible, however many sockets or doors send it."""

    MAX_EMOJI_PER_MESSAGE = 20

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    emoji = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The constraint's index (message first) also serves "the reactions of these messages".
        constraints = [models.UniqueConstraint(fields=["message", "user", "emoji"], name="reaction_message_user_emoji")]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class Restriction(models.Model):
    """What mutes and bans share: in force until ``until`` (for ever when null), why, and by whom."""

    until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    def in_force(self, now=None) -> bool:
        return self.until is None or self.until > (now or timezone.now())


class RoomBan(Restriction):
    """The user may not join or read the room until ``until`` (for ever when null)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_bans")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="roomban_room_user")]

    def __str__(self) -> str:
        return f"ban of {self.user_id} in {self.room_id}"


class Mute(Restriction):
    """The user may read the room but not post until ``until`` (for ever when null)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="mutes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mutes")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="mute_room_user")]

    def __str__(self) -> str:
        return f"mute of {self.user_id} in {self.room_id}"


def active_until_q(now) -> Q:
    """Filter for bans and mutes still in force at ``now``."""
    return Q(until__isnull=True) | Q(until__gt=now)


# --- moderation (PROTOCOL.md 5) ---------------------------------------------------------


class SiteBan(Restriction):
    """The user may not use the site until ``until`` (for ever when null): no login, no token,
    every socket closed with 4403."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="site_ban")

    def __str__(self) -> str:
        return f"site ban of {self.user_id}"


class SiteBanKey(models.Model):
    """A SHA-256 digest of a session key or API token the ban ended, so a client that comes
    back with it is told it is banned (4403) rather than logged out (4401)."""

    ban = models.ForeignKey(SiteBan, on_delete=models.CASCADE, related_name="keys")
    digest = models.CharField(max_length=64, db_index=True)

    def __str__(self) -> str:
        return self.digest[:12]


class Report(models.Model):
    """A user's report of a message, queued for the moderators until resolved."""

    class Status(models.TextChoices):
        OPEN = "open"
        HIDDEN = "hidden", "Resolved: message hidden"
        DISMISSED = "dismissed", "Resolved: dismissed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One open report per reporter and message: reporting again returns it.
            models.UniqueConstraint(
                fields=["message", "reporter"], condition=Q(status="open"), name="report_open_message_reporter"
            )
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="report_queue")]

    def __str__(self) -> str:
        return f"report #{self.pk} of message {self.message_id}"


class ModerationLog(models.Model):
    """One moderation action: who, what, to whom, why, when. Append-only: written by the
    moderation services, never changed. ``summary`` keeps the names as they were, so an
    entry still reads right after its user, message or room is gone."""

    class Action(models.TextChoices):
        MESSAGE_DELETE = "message.delete", "Deleted a message"
        MESSAGE_RESTORE = "message.restore", "Restored a message"
        ROOM_LOCK = "room.lock", "Locked a room"
        ROOM_UNLOCK = "room.unlock", "Unlocked a room"
        MUTE = "mute", "Muted"
        UNMUTE = "unmute", "Unmuted"
        BAN = "ban", "Banned from a room"
        UNBAN = "unban", "Unbanned from a room"
        SITE_BAN = "site_ban", "Banned from the site"
        SITE_UNBAN = "site_unban", "Unbanned from the site"
        MEMBER_REMOVE = "member.remove", "Removed a member"
        REPORT_HIDE = "report.hide", "Resolved a report: hid the message"
        REPORT_DISMISS = "report.dismiss", "Resolved a report: dismissed"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="moderation_actions"
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="moderation_log"
    )
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    summary = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.summary

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("The moderation log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("The moderation log is append-only.")


# --- attachments (PROTOCOL.md 8) ----------------------------------------------------------


def _new_attachment_id() -> str:
    return secrets.token_urlsafe(16)


class Attachment(models.Model):
    """An uploaded file: the uploader's until posted (``message`` null), then its message's.

    ``file`` and ``thumbnail`` are names in STORAGES["default"], random and never derived from
    what the client sent (chat.files.storage.storage_name()); ``name`` is the uploaded name,
    cleaned (chat.files.content.clean_name()), shown to people and offered as the download's
    name only. ``content_type`` comes from the bytes (chat.files.inspection). ``hidden_at``
    is when the message was last deleted: its files are removed CHAT_DELETED_FILE_DAYS later
    unless staff restored it (chat/files/cleanup.py).
    """

    MAX_PER_MESSAGE = 10

    id = models.CharField(primary_key=True, max_length=32, default=_new_attachment_id, editable=False)
    uploader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=255)
    file = models.CharField(max_length=100)
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=100)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    thumbnail = models.CharField(max_length=100, blank=True)
    thumbnail_type = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    hidden_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position", "created_at"]
        indexes = [
            # The upload rate window, and the cleanup of uploads never posted.
            models.Index(fields=["uploader", "created_at"], name="attachment_uploader_created"),
            models.Index(fields=["created_at"], condition=Q(message__isnull=True), name="attachment_unposted"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.name}"


# --- mentions and notifications (PROTOCOL.md 7) ------------------------------------------


class Notification(models.Model):
    """A message that concerns a user: a mention, a DM, a reply to them, an ``@room``.

    At most one per (user, message), whatever edits follow. ``seq`` is the message's (which
    never changes), so moving a read position marks its notifications read without a join.
    ``emailed_at`` is set by the digest that emailed it (chat.tasks), never twice.
    """

    class Kind(models.TextChoices):
        MENTION = "mention"
        DM = "dm"
        REPLY = "reply"
        ROOM = "room"

    # No index of their own: each column leads one of the indexes below, which serve the
    # cascades (PostgreSQL looks the referencing rows up on every delete) as well as the
    # queries. Every index costs each stored notification a B-tree insertion.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", db_index=False
    )
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="notifications", db_index=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # One per (user, message); message first, so it is also the message's cascade index.
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="notification_message_user")]
        indexes = [
            # The inbox (newest first, keyset on id), the digest's "unread, not emailed", and
            # the user's cascade.
            models.Index(fields=["user", "read_at", "id"], name="notification_user_unread"),
            # Marking read up to a seq, the unread count per room, and the room's cascade.
            models.Index(fields=["room", "user", "seq"], name="notification_room_user_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.message_id} for {self.user_id}"


class UserPreferences(models.Model):
    """A user's settings and the state of their email digests; a missing row is the defaults.

    ``digest_due_at``: when the digest task scheduled for the user runs (null: none is);
    ``digested_at``: when the last digest was sent (at most one per CHAT_NOTIFY_EMAIL_DELAY).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="chat_preferences"
    )
    email_notifications = models.BooleanField(default=True)
    digest_due_at = models.DateTimeField(null=True, blank=True)
    digested_at = models.DateTimeField(null=True, blank=True)
    # The IANA name of the user's time zone, as their browser reports it ("" until one did):
    # the user card shows the local time (services.preferences_update validates it).
    timezone = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"preferences of {self.user_id}"


# --- bots and incoming webhooks (PROTOCOL.md 9) ---------------------------------------------


class Bot(models.Model):
    """Marks a user as a bot, owned by a person. A user is a bot from creation for ever: an
    ended bot's user is deactivated (its messages stay, still a bot's), never turned into a
    person. The user of an incoming webhook is a bot too (``IncomingWebhook.bot``).

    Read as ``user.chat_bot`` (chat.protocol.is_bot): load it with the user
    (select_related("author__chat_bot")) so that MESSAGE costs no query per author.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="chat_bot"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bots")
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "created_at"], name="bot_owner_created")]

    def __str__(self) -> str:
        return f"bot {self.user_id} of {self.owner_id}"


class IncomingWebhook(models.Model):
    """A URL that posts into one room as its own bot (``bot``). Only the SHA-256 of the
    secret is kept (``secret_hash``, looked up by); the secret is shown once, at creation."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="incoming_webhooks")
    bot = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="incoming_webhook")
    name = models.CharField(max_length=100)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["room", "created_at"], name="incomingwebhook_room")]

    def __str__(self) -> str:
        return f"webhook {self.name} in {self.room_id}"


class ConnectTokenUse(models.Model):
    """A used connect token (PROTOCOL.md 9), by its nonce: the primary key makes each token
    open one socket, across every server process. Rows older than CHAT_CONNECT_TOKEN_TTL
    (whose tokens have expired anyway) are deleted as new ones are written."""

    nonce = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    used_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"connect token of {self.user_id} used at {self.used_at}"


# --- outgoing webhooks (PROTOCOL.md 9) ---------------------------------------------------


def _new_subscription_secret() -> str:
    return secrets.token_urlsafe(32)


class Subscription(models.Model):
    """An outgoing webhook: every room event is POSTed to ``url``, signed with ``secret``
    (an HMAC key, so stored as is: shown once by the API, never listed).

    Delivery state (chat.services.deliveries): ``delivered_seq`` is the last seq delivered
    (or the room's seq when it was created); the outbox rows after it are owed, in seq order.
    ``pending``: an event committed since a worker last looked (a task is on its way).
    ``lease_until``/``lease_token``: the worker delivering now (a lease, so no transaction
    is held across HTTP). ``retry_at``, ``failures`` and ``failing_since`` describe the
    oldest owed event while it fails; ``paused_at`` is set after CHAT_WEBHOOK_GIVE_UP
    seconds of failures (a paused subscription is not counted in Room.subscriptions_active).
    """

    MAX_PER_ROOM = 10
    MAX_URL = 2000

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="subscriptions")
    url = models.URLField(max_length=MAX_URL)
    secret = models.CharField(max_length=64, default=_new_subscription_secret, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_seq = models.BigIntegerField(default=0)
    pending = models.BooleanField(default=False)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # By id only: ordering by "room" would join the room's row into every query, and
        # into the row locks the delivery takes (chat.services.deliveries).
        ordering = ["pk"]
        indexes = [models.Index(fields=["room", "paused_at"], name="subscription_room_paused")]

    def __str__(self) -> str:
        return f"{self.room_id} -> {self.url}"


class OutboxEvent(models.Model):
    """A room event owed to the room's subscriptions: the socket frame's JSON as it was sent,
    written in the event's own transaction (only while the room has active subscriptions),
    removed once every active subscription has it. RoomEvent pruning never touches it."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()
    type = models.CharField(max_length=32)
    frame = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="outboxevent_room_seq")]

    def __str__(self) -> str:
        return f"{self.room_id}/{self.seq} {self.type}"


class DeliveryAttempt(models.Model):
    """One POST of one event to one subscription: the answer's status or the error, how long
    it took. Shown to the room's moderators (REST) and in the admin."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="attempts")
    seq = models.BigIntegerField()
    event_type = models.CharField(max_length=32)
    delivery_id = models.CharField(max_length=36)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    ok = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["subscription", "-id"], name="deliveryattempt_sub_id")]

    def __str__(self) -> str:
        return f"{self.subscription_id} seq {self.seq}: {self.status_code or self.error}"
