"""Every read that more than one door needs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection
from django.db.models import Case, Count, F, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from . import protocol
from .models import Attachment, Membership, Message, Notification, Reaction, Room, RoomEvent
from .protocol import EVENTS_KEPT, REACTION_USERS_SHOWN


def rooms_visible_to(*, user) -> QuerySet[Room]:
    """Public rooms and the private rooms ``user`` is a member of."""
    member_of = Membership.objects.filter(user=user).values("room_id")
    return Room.objects.filter(private=False) | Room.objects.filter(pk__in=member_of)


def room_seq(*, room_id: int) -> int:
    return Room.objects.values_list("seq", flat=True).get(pk=room_id)


def room_seqs(*, room_ids: list[int]) -> dict[int, int]:
    """Current seq of each room, in one query."""
    return dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "seq"))


# What MESSAGE reads of a message's relations (protocol.message_payload), for select_related()
# of one message; lists join the author only and attach the rest (message_state_attach).
MESSAGE_RELATED = ("author__chat_bot", "reply_to__author__chat_bot")


def reactions_of(*, message_ids) -> dict[int, list[protocol.ReactionShape]]:
    """The reactions of each message that has any, in one query: for each emoji its exact
    count and the first REACTION_USERS_SHOWN names (in the order they reacted), the emoji in
    the order of their earliest reaction still there (reactions_attach() orders them by the
    message's reaction_order)."""
    rows = (
        Reaction.objects.filter(message_id__in=message_ids)
        .order_by("message_id", "pk")
        .values_list("message_id", "emoji", "user__username")
    )
    found: dict[int, dict[str, protocol.ReactionShape]] = {}
    for message_id, emoji, username in rows:
        entries = found.setdefault(message_id, {})
        entry = entries.get(emoji)
        if entry is None:
            entry = entries[emoji] = {"emoji": emoji, "count": 0, "users": []}
        entry["count"] += 1
        if len(entry["users"]) < REACTION_USERS_SHOWN:
            entry["users"].append(username)
    return {message_id: list(entries.values()) for message_id, entries in found.items()}


def reactions_attach(messages) -> None:
    """Set each message's ``reaction_list`` (what protocol.message_payload shows), one query
    for all, none when no message has any: deleted messages show none, and a message without
    ``reaction_order`` has no reaction (the reaction services keep it), so neither is looked up."""
    messages = [m for m in messages if m is not None]
    wanted = {m.pk for m in messages if not m.deleted and m.reaction_order}
    found = reactions_of(message_ids=wanted) if wanted else {}
    for message in messages:
        entries = found.get(message.pk, [])
        if len(entries) > 1:
            order = {emoji: i for i, emoji in enumerate(message.reaction_order)}
            entries.sort(key=lambda entry: order.get(entry["emoji"], len(order)))
        message.reaction_list = entries


def message_state_attach(messages) -> None:
    """Give each message of a list (author loaded) what MESSAGE shows besides: the roots of the
    replies among them (one query, only when there are replies, reading just the root's body,
    state and author) and the reactions (reactions_attach)."""
    messages = [m for m in messages if m is not None]
    cached = Message._meta.get_field("reply_to").is_cached
    wanted = {m.reply_to_id for m in messages if m.reply_to_id is not None and not cached(m)}
    if wanted:
        roots = (
            Message.objects.select_related("author__chat_bot")
            .only("body", "deleted", "author__username", "author__id", "author__chat_bot__user")
            .in_bulk(wanted)
        )
        for message in messages:
            if message.reply_to_id in roots:
                message.reply_to = roots[message.reply_to_id]
    reactions_attach(messages)


def event_frames(*, room_id: int, after: int, upto: int) -> list[protocol.RoomEventFrame]:
    """The room's events with after < seq <= upto, encoded with each message's current state
    (body, replies, reactions: a replayed `message.reacted` carries the current REACTIONS)."""
    events = list(
        RoomEvent.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto)
        .select_related("message__room", "message__author__chat_bot")
        .prefetch_related(Prefetch("message__attachments", to_attr=protocol.LOADED_ATTACHMENTS))
        .order_by("seq")
    )
    # One object per message, so its reactions are looked up once however many events it has.
    messages: dict[int, Message] = {}
    for event in events:
        event.message = messages.setdefault(event.message_id, event.message)
    message_state_attach(messages.values())
    return [protocol.event_frame(kind=e.kind, seq=e.seq, message=e.message, by=e.by) for e in events]


@dataclass(frozen=True)
class Resume:
    """What `joined` says and replays: the room's seq, the events to replay, resync."""

    seq: int
    frames: list[protocol.RoomEventFrame]
    resync: bool


def room_resume(*, room_id: int, since: int | None) -> Resume:
    """The room's current seq and the events after ``since`` (PROTOCOL.md 3.3, item 4).

    The seq is read first: seqs commit in order, so every event up to it is committed.
    """
    resume = room_resume_many([(room_id, since)])[0]
    if isinstance(resume, Exception):
        raise resume
    return resume


def room_resume_many(resumes: Sequence[tuple[int, int | None]]) -> list[Resume | Exception]:
    """room_resume() for many (room id, since), in order (Room.DoesNotExist for a room that
    is gone): the seqs in one query, then each room's events once, from the lowest ``since``
    of its resumes (the joins of a reconnect storm, chat/coalesce.py)."""
    seqs = room_seqs(room_ids=list({room_id for room_id, _since in resumes}))

    def replays(since: int | None, seq: int) -> bool:
        return since is not None and 0 <= since < seq and seq - since <= EVENTS_KEPT

    lowest: dict[int, int] = {}
    for room_id, since in resumes:
        if room_id in seqs and replays(since, seqs[room_id]):
            lowest[room_id] = min(since, lowest.get(room_id, since))
    frames = {room_id: event_frames(room_id=room_id, after=low, upto=seqs[room_id]) for room_id, low in lowest.items()}
    results: list[Resume | Exception] = []
    for room_id, since in resumes:
        seq = seqs.get(room_id)
        if seq is None:
            results.append(Room.DoesNotExist(f"no room {room_id}"))
        elif replays(since, seq):
            results.append(Resume(seq=seq, frames=[f for f in frames[room_id] if f.seq > since], resync=False))
        else:
            results.append(Resume(seq=seq, frames=[], resync=since is not None and since != seq))
    return results


# --- rooms and history (REST API) -----------------------------------------------------


def rooms_for_user(*, user) -> QuerySet[Room]:
    """rooms_visible_to(), each annotated with the user's ``role`` (None when not a member),
    ``unread``: messages by others above the member's read position, not deleted, and
    ``mentions``: the user's unread notifications in the room (all in the one query).

    A public room the user has not joined has no read position, so its ``unread`` is 0.
    """
    membership = Membership.objects.filter(room=OuterRef("pk"), user=user)
    unread = (
        Message.objects.filter(room=OuterRef("pk"), seq__gt=OuterRef("read_seq"), deleted=False)
        .exclude(author=user)
        .order_by()
        .values("room")
        .annotate(n=Count("pk"))
        .values("n")
    )
    mentions = (
        Notification.objects.filter(user=user, room=OuterRef("pk"), read_at__isnull=True)
        .order_by()
        .values("room")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        rooms_visible_to(user=user)
        .annotate(
            role=Subquery(membership.values("role")[:1]),
            read_seq=Subquery(membership.values("read_seq")[:1]),
        )
        .annotate(unread=Coalesce(Subquery(unread), 0), mentions=Coalesce(Subquery(mentions), 0))
    )


def rooms_for_sidebar(*, user) -> QuerySet[Room]:
    """rooms_for_user() with ``last_at`` (the newest message's time), most recent activity first."""
    newest = Message.objects.filter(room=OuterRef("pk")).order_by("-seq").values("created_at")[:1]
    return rooms_for_user(user=user).annotate(last_at=Subquery(newest)).order_by(F("last_at").desc(nulls_last=True), "slug")


def message_seq(*, room: Room, message_id: int) -> int | None:
    """The seq of the room's message ``message_id``, or None when the room has no such message."""
    return Message.objects.filter(room=room, pk=message_id).values_list("seq", flat=True).first()


NOTIFICATIONS_LIMIT_DEFAULT = 50
NOTIFICATIONS_LIMIT_MAX = 200


def notifications_page(*, user, unread: bool = False, before: int | None = None, limit: int = NOTIFICATIONS_LIMIT_DEFAULT) -> tuple[list[Notification], bool]:
    """The user's notifications newest first (keyset on id: those with id < ``before``),
    only the unread ones if ``unread``; return (page, whether older ones exist)."""
    found = Notification.objects.filter(user=user)
    if unread:
        found = found.filter(read_at__isnull=True)
    if before is not None:
        found = found.filter(pk__lt=before)
    page = list(
        found.select_related("message__room", "message__author__chat_bot")
        .prefetch_related(Prefetch("message__attachments", to_attr=protocol.LOADED_ATTACHMENTS))
        .order_by("-pk")[: limit + 1]
    )
    # Each MESSAGE as it stands now (reply roots, reactions), for a fixed number of queries.
    message_state_attach([n.message for n in page])
    return page[:limit], len(page) > limit


def room_members(*, room: Room) -> QuerySet[Membership]:
    """The room's memberships with their users: owner first, then moderators, then by name."""
    rank = Case(
        When(role=Membership.Role.OWNER, then=Value(0)),
        When(role=Membership.Role.MODERATOR, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return (
        Membership.objects.filter(room=room)
        .select_related("user")
        .alias(rank=rank)
        .order_by("rank", "user__username")
    )


HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 200
SEARCH_CONFIG = "simple"  # no stemming or stop words: every language, every word counts
_WORD_RE = re.compile(r"[^\W_]+")


def _matching(messages: QuerySet[Message], q: str) -> QuerySet[Message]:
    """Messages whose body has every word of ``q``; deleted messages never match.

    PostgreSQL: full-text search (plainto_tsquery, words lowercased, no stemming), served by
    the GIN index of migration 0003. SQLite: each word (a run of letters and digits) must
    occur in the body, case-insensitively (ASCII only: SQLite's LIKE).
    """
    messages = messages.filter(deleted=False)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        return messages.alias(search=SearchVector("body", config=SEARCH_CONFIG)).filter(
            search=SearchQuery(q, config=SEARCH_CONFIG, search_type="plain")
        )
    words = _WORD_RE.findall(q)
    if not words:
        return messages.none()
    for word in words:
        messages = messages.filter(body__icontains=word)
    return messages


@dataclass(frozen=True)
class HistoryPage:
    """A page of history in ascending seq, and whether more matches lie on either side."""

    messages: list[Message]
    has_more_before: bool
    has_more_after: bool


def message_history(
    *, room: Room, before: int | None = None, after: int | None = None,
    limit: int = HISTORY_LIMIT_DEFAULT, q: str | None = None,
) -> HistoryPage:
    """One page of the room's messages, keyset-paginated on seq (PROTOCOL.md 4).

    No cursor: the newest ``limit``. ``before``: the newest with seq < before. ``after``:
    the oldest with seq > after (not both). Each page is one index range scan on
    (room, seq) plus an EXISTS probe for the far side, so its cost does not grow with depth.
    """
    if before is not None and after is not None:
        raise ValueError("before and after are exclusive")
    messages = Message.objects.filter(room=room)
    attachments = Prefetch("attachments", to_attr=protocol.LOADED_ATTACHMENTS)
    if q and q.strip():
        messages = _matching(messages, q)
    if after is not None:
        rows = list(messages.filter(seq__gt=after).select_related("author__chat_bot").prefetch_related(attachments).order_by("seq")[: limit + 1])
        has_more_after = len(rows) > limit
        rows = rows[:limit]
        has_more_before = messages.filter(seq__lte=after).exists()
    else:
        window = messages if before is None else messages.filter(seq__lt=before)
        rows = list(window.select_related("author__chat_bot").prefetch_related(attachments).order_by("-seq")[: limit + 1])
        has_more_before = len(rows) > limit
        rows = rows[:limit][::-1]
        has_more_after = before is not None and messages.filter(seq__gte=before).exists()
    for message in rows:
        message.room = room  # message_payload reads room.slug; spare the join
    message_state_attach(rows)
    return HistoryPage(messages=rows, has_more_before=has_more_before, has_more_after=has_more_after)


# --- threads (PROTOCOL.md 6) ------------------------------------------------------------


@dataclass(frozen=True)
class ThreadPage:
    """A thread's root and a page of its replies in ascending seq."""

    root: Message
    replies: list[Message]
    has_more_after: bool


def message_with_room(*, message_id: int) -> Message | None:
    """The message with its room and what MESSAGE shows (reactions not attached); None if none."""
    return Message.objects.select_related("room", *MESSAGE_RELATED).filter(pk=message_id).first()


def message_thread(*, root: Message, after: int | None = None, limit: int = HISTORY_LIMIT_DEFAULT) -> ThreadPage:
    """The replies of ``root`` (loaded with its room) with seq > ``after``, oldest first, at
    most ``limit``: one range scan of the (reply_to, seq) index, deleted replies included (as
    in history), reactions attached to root and replies in one query."""
    replies = Message.objects.filter(reply_to=root)
    if after is not None:
        replies = replies.filter(seq__gt=after)
    rows = list(
        replies.select_related("author__chat_bot")
        .prefetch_related(Prefetch("attachments", to_attr=protocol.LOADED_ATTACHMENTS))
        .order_by("seq")[: limit + 1]
    )
    has_more_after = len(rows) > limit
    rows = rows[:limit]
    for reply in rows:
        reply.room, reply.reply_to = root.room, root
    reactions_attach([root, *rows])
    return ThreadPage(root=root, replies=rows, has_more_after=has_more_after)


# --- attachments (PROTOCOL.md 8) ------------------------------------------------------


def attachment_get(*, attachment_id: str) -> Attachment | None:
    """The attachment with this id and its message (None if there is none)."""
    if not (0 < len(attachment_id) <= 32 and attachment_id.isascii()):
        return None
    return Attachment.objects.select_related("message").filter(pk=attachment_id).first()
