"""Messages: post (one or a batch: group commit), edit and delete, and the room events they
make. Each stores in one transaction and announces on commit (PROTOCOL.md 3.3, persist then
announce).

Functions raise ChatError with a PROTOCOL.md code for refusals; database outages surface as
django.db.OperationalError / InterfaceError, which the doors turn into `unavailable`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max
from django.utils import timezone

from .. import commands, protocol, realtime, rules, selectors
from ..commands import CommandReply
from ..formatting import parse_markdown
from ..models import Message, Room, RoomEvent
from ..protocol import EVENTS_KEPT, ChatError
from . import attachments, subscriptions
from .log import log_message_delete
from .notifications import ROOM_MENTION, notify_for_posted
from .rooms import room_update

_PRUNE_EVERY = 100


# --- validation -----------------------------------------------------------------------


def validate_body(body: str, *, allow_empty: bool = False) -> str:
    """Return ``body`` trimmed, or raise invalid (empty unless ``allow_empty``, as for a
    message with attachments; too long; NUL or lone surrogates)."""
    body = protocol.validate_text(body, field="body").strip()
    if not body and not allow_empty:
        raise ChatError(protocol.INVALID, "The message is empty.")
    if len(body) > Message.MAX_BODY:
        raise ChatError(protocol.INVALID, f"Messages are limited to {Message.MAX_BODY} characters.")
    return body


def validate_client_id(client_id: str) -> str:
    protocol.validate_text(client_id, field="client_id")
    if not 1 <= len(client_id) <= 64 or not client_id.isprintable():
        raise ChatError(protocol.INVALID, "`client_id` must be 1-64 printable characters.")
    return client_id


# --- formatting (PROTOCOL.md 6) -------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A valid body with its html and the usernames it mentions (those rendered as mentions).

    ``mention_ids`` maps each of ``mentions`` to its user's id and ``room_mention`` says the
    body writes ``@room``: what notify_for_posted() needs, so the body is parsed once.
    """

    body: str
    html: str
    mentions: list[str]
    mention_ids: dict[str, int] = field(default_factory=dict)
    room_mention: bool = False


def render_bodies(items: Sequence[tuple[Room, str | commands.Text]]) -> list[Rendered]:
    """Render each (room, valid body): Markdown to sanitized html, ``@name`` as a mention
    only for users who can read that room (rules.users_who_see: one query, only when some
    body names someone). A body given as commands.Text is stored as its ``body`` and rendered
    from its ``markdown`` (in italics for a /me).

    Runs before the storing transaction, so its CPU time holds no lock; the doors call it
    off the event loop (the socket's group commit runs in the database thread).
    """
    texts = [body if isinstance(body, commands.Text) else commands.Text(body, body) for _room, body in items]
    parsed = [parse_markdown(text.markdown, emote=text.emote) for text in texts]
    named = {(room, name) for (room, _body), body_parsed in zip(items, parsed) for name in body_parsed.mentions}
    seen = rules.users_who_see(named) if named else {}
    rendered = []
    for (room, _body), text, body_parsed in zip(items, texts, parsed):
        ids = {name: seen[room.pk, name] for name in body_parsed.mentions if (room.pk, name) in seen}
        rendered.append(Rendered(
            body=text.body, html=body_parsed.html(mentions=ids), mentions=list(ids), mention_ids=ids,
            room_mention=ROOM_MENTION in body_parsed.mentions,
        ))
    return rendered


# --- posting rate ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float


def post_rate() -> Rate | None:
    """Parse CHAT_POST_RATE ("10/10s", "0" for none)."""
    value = str(settings.CHAT_POST_RATE).strip()
    if value in ("", "0"):
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?", value)
    if not match:
        raise ValueError(f"CHAT_POST_RATE must look like '10/10s' or '0', not {value!r}")
    return Rate(int(match[1]), float(match[2]))


def recent_posts(*, author_ids: set[int], rate: Rate, now: datetime) -> dict[int, list[datetime]]:
    """When each author stored their messages within the rate's window: newest first, at
    most ``rate.count`` each. One query for every author of a batch.

    The messages themselves are the log, so every door and every process share one budget.
    """
    rows = (
        Message.objects.filter(author_id__in=author_ids, created_at__gt=now - timedelta(seconds=rate.seconds))
        .order_by("-created_at")
        .values_list("author_id", "created_at")
    )
    recent: dict[int, list[datetime]] = {}
    for author_id, created_at in rows:
        times = recent.setdefault(author_id, [])
        if len(times) < rate.count:
            times.append(created_at)
    return recent


def check_post_rate(*, rate: Rate, recent: list[datetime], queued: int, now: datetime) -> None:
    """Raise rate_limited if the author has used the rate's budget: ``recent`` stored
    messages (recent_posts) plus ``queued`` accepted earlier in the same batch."""
    window = [now] * queued + recent
    if len(window) >= rate.count:
        retry_after = (window[rate.count - 1] + timedelta(seconds=rate.seconds) - now).total_seconds()
        raise ChatError(protocol.RATE_LIMITED, "You are posting too fast.", retry_after=max(retry_after, 0.01))


# --- room events ----------------------------------------------------------------------


def _next_seq(room_id: int) -> int:
    """Take the room's next seq. Must run inside the transaction that stores the change.

    The UPDATE locks the room row until commit, so seqs commit in order and without gaps
    (a database sequence could commit out of order).
    """
    return _take_seqs(room_id, 1)


def _take_seqs(room_id: int, count: int) -> int:
    """Take the room's next ``count`` seqs at once; return the last (see _next_seq)."""
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET seq = seq + %s WHERE id = %s RETURNING seq", [count, room_id])
        return cursor.fetchone()[0]


def _take_seqs_many(counts: dict[int, int]) -> dict[int, int]:
    """Take ``counts[room id]`` seqs in each room at once; return {room id: last seq}.

    Should be called while holding the rooms' locks, taken in id order (the one order every
    writer takes them in, so two batches cannot deadlock): message_post_many takes them
    (rules.rooms_lock) before it reads the posters' access, and passes only the rooms it
    locked. Then one UPDATE, whatever the number of rooms.
    """
    if len(counts) == 1:
        ((room_id, count),) = counts.items()
        return {room_id: _take_seqs(room_id, count)}
    ids = sorted(counts)
    table = connection.ops.quote_name(Room._meta.db_table)
    cases = " ".join(["WHEN %s THEN %s"] * len(ids))
    marks = ", ".join(["%s"] * len(ids))
    params = [value for room_id in ids for value in (room_id, counts[room_id])] + ids
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET seq = seq + CASE id {cases} END WHERE id IN ({marks}) RETURNING id, seq", params
        )
        return dict(cursor.fetchall())


def _prune_events(room_id: int, first: int, last: int) -> None:
    """Every _PRUNE_EVERY seqs, drop the room's events older than the newest EVENTS_KEPT (+ slack)."""
    mark = last - last % _PRUNE_EVERY
    if mark >= first:
        RoomEvent.objects.filter(room_id=room_id, seq__lte=mark - EVENTS_KEPT - _PRUNE_EVERY).delete()


def _announce(room_id: int, frames: list[protocol.RoomEventFrame]) -> None:
    """Publish ``frames`` (in seq order) once the transaction commits."""
    transaction.on_commit(lambda: realtime.room_events_publish([(room_id, frames)]))


def _record_event(*, message: Message, kind: str, seq: int, by: str = "", payload: protocol.MessageShape | None = None) -> None:
    """Store the event, keep it for the room's webhooks, and announce it once the transaction
    commits (``payload``: the message's MESSAGE, if the caller built it already)."""
    RoomEvent.objects.create(room_id=message.room_id, seq=seq, kind=kind, message=message, by=by)
    _prune_events(message.room_id, seq, seq)
    frames = [protocol.event_frame(kind=kind, seq=seq, message=message, by=by, payload=payload)]
    # message.room is the room read under the lock (_message_locked): no query without subscriptions.
    subscriptions.outbox_write(room=message.room, kind=kind, frames=frames)
    _announce(message.room_id, frames)


# --- messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One `send`: what message_post_many stores."""

    room: Room
    author: Any
    body: str
    client_id: str
    door: rules.Door = rules.Door.SOCKET  # the group commit (chat.batching) is the socket's
    reply_to: int | None = None  # the id of the message answered (PROTOCOL.md 6)
    attachments: tuple = ()  # upload ids (PROTOCOL.md 8), checked by attachments.claim()
    # The door answers a command that stores nothing (/topic, /help) with a CommandReply
    # (the socket, REST); for other callers such a command is invalid.
    interactive: bool = False


class _Deferred:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFERRED"


# message_post_many(skip_locked=True)'s result for a post it did not judge: its room's lock
# was held by another transaction (or an earlier deferred post holds it back, see Holds).
# Nothing of it was stored or counted; the caller tries it again later (chat/batching.py).
DEFERRED = _Deferred()

PostResult = tuple[Message, bool] | ChatError | CommandReply | _Deferred


class Holds:
    """The rooms and (author id, client_id) keys of deferred posts: a post queued after a
    deferred one in the same room, or with the same key, is deferred too, so a room's seqs
    keep the order its posts were queued in and a repeated client_id still gets the first
    post's message. (A post with the same key in another room holds that room as well: what
    was queued after it there must not overtake it.)"""

    __slots__ = ("rooms", "keys")

    def __init__(self) -> None:
        self.rooms: set[int] = set()
        self.keys: set[tuple[int, str]] = set()

    def holds(self, post: Post) -> bool:
        return post.room.pk in self.rooms or (post.author.pk, post.client_id) in self.keys

    def add(self, post: Post) -> None:
        self.rooms.add(post.room.pk)
        self.keys.add((post.author.pk, post.client_id))


def _text_of(post: Post, body: str) -> commands.Text | commands.Action:
    """What the valid ``body`` of ``post`` asks for (chat.commands), or raise invalid."""
    parsed = commands.parse(body)
    if isinstance(parsed, commands.Action):
        if not post.interactive:
            raise ChatError(protocol.INVALID, f"/{parsed.name} can only be sent from a chat client.")
        if post.attachments:
            raise ChatError(protocol.INVALID, f"/{parsed.name} posts no message, so it takes no attachments.")
    elif len(parsed.body) > Message.MAX_BODY:  # /shrug adds to the body
        raise ChatError(protocol.INVALID, f"Messages are limited to {Message.MAX_BODY} characters.")
    return parsed


def _action_run(post: Post, action: commands.Action, *, skip_locked: bool = False) -> CommandReply | _Deferred:
    """Run a command that stores no message; raise its refusal (/topic: forbidden unless
    the author owns or moderates the room). With ``skip_locked``, a /topic whose room's lock
    another transaction holds is DEFERRED (message_post_many), not waited for."""
    if action.name == "topic":
        with transaction.atomic():
            if skip_locked and not rules.rooms_lock({post.room.pk}, skip_locked=True):
                if Room.objects.filter(pk=post.room.pk).exists():
                    return DEFERRED
            access = rules.room_access(user=post.author, room=post.room, door=post.door)
            if access is None:
                raise ChatError(protocol.NOT_FOUND, "No such room.")
            # room_update decides under the room's lock and announces `room.updated`.
            room = room_update(access=access, actor=post.author, topic=action.arg)
        text = f"You set the topic: {room.topic}" if room.topic else "You cleared the topic."
        return CommandReply(room=room.slug, text=text, client_id=post.client_id)
    return CommandReply(room=post.room.slug, text=commands.help_text(), client_id=post.client_id)


def message_post(
    *,
    room: Room,
    author,
    body: str,
    client_id: str,
    door: rules.Door = rules.Door.API,
    reply_to: int | None = None,
    attachments: Sequence[str] = (),
    interactive: bool = False,
) -> tuple[Message, bool] | CommandReply:
    """Store a message (a reply when ``reply_to`` names a message, with the caller's
    unposted ``attachments``) and broadcast it; return (message, created).

    A repeated ``client_id`` of the same author returns the original (in whatever room it
    was posted) with created False: nothing stored, broadcast or counted against the rate.
    A slash command is read first (chat.commands): with ``interactive``, one that stores
    nothing (/topic, /help) is run and answered with a CommandReply; without, it is invalid.
    """
    post = Post(
        room=room, author=author, body=body, client_id=client_id, door=door, reply_to=reply_to,
        attachments=tuple(attachments), interactive=interactive,
    )
    result = message_post_many([post])[0]
    if isinstance(result, ChatError):
        raise result
    return result


def message_post_many(posts: Sequence[Post], *, skip_locked: bool = False, _retried: bool = False) -> list[PostResult]:
    """Store many posts in one transaction (group commit); return one result per post.

    Each post is judged as message_post would judge it alone, in order (an earlier post of
    the batch counts against the rate, and a repeated ``client_id`` within the batch gets
    the first one's message): its result is (message, created), a CommandReply for a slash
    command that stores nothing (``Post.interactive``), or the ChatError refusing it, and a
    refusal costs the others nothing. The accepted posts take their rooms' seqs
    in batch order (one UPDATE per room, rooms locked in id order), are inserted with two
    bulk INSERTs and are announced, in seq order, after the one commit. A database error
    raises for the whole batch; nothing of it is stored.

    With ``skip_locked`` (the socket's group commit) a room whose lock another transaction
    holds is not waited for: its posts, and those Holds keeps behind them, are answered
    DEFERRED, not judged, stored or counted against the rate, so the other rooms of the
    batch are not held up; the caller tries them again later, ahead of anything newer
    (chat/batching.py). Without it the batch waits for every room's lock (lock_timeout).
    A repeat of a message already stored is answered at once either way (it takes no seq).
    """
    results: list[PostResult | int | None] = [None] * len(posts)
    for i, post in enumerate(posts):
        try:
            validate_client_id(post.client_id)
        except ChatError as error:
            results[i] = error
    existing = _messages_by_client_id({(p.author.pk, p.client_id) for p, r in zip(posts, results) if r is None})
    # Rendered before the transaction: its CPU time holds no lock. A body's refusal waits
    # for its turn after the permissions (PROTOCOL.md 3.4's order).
    # Slash commands are read here, for every door (chat.commands).
    bodies: dict[int, Rendered | ChatError] = {}
    valid: list[tuple[int, Room, commands.Text]] = []
    actions: dict[int, commands.Action] = {}
    for i, post in enumerate(posts):
        if results[i] is None and (post.author.pk, post.client_id) not in existing:
            try:
                text = _text_of(post, validate_body(post.body, allow_empty=bool(post.attachments)))
            except ChatError as error:
                bodies[i] = error
                continue
            if isinstance(text, commands.Action):
                actions[i] = text
            else:
                valid.append((i, post.room, text))
    for (i, _room, _body), rendered in zip(valid, render_bodies([(room, text) for _i, room, text in valid])):
        bodies[i] = rendered
    # Commands that store nothing run first, each in its own transaction (a /topic takes the
    # room's lock in room_update); then the batch's transaction judges and stores the rest.
    for i, action in actions.items():
        try:
            results[i] = _action_run(posts[i], action, skip_locked=skip_locked)
        except ChatError as error:
            results[i] = error
    rate, now = post_rate(), timezone.now()
    recent = {} if rate is None else recent_posts(author_ids={p.author.pk for p in posts}, rate=rate, now=now)
    try:
        with transaction.atomic():
            # Who may post is read under the rooms' locks, in the transaction that stores the
            # posts: a mute, ban or room lock committed before the batch took the locks is seen.
            keys = {(p.room.pk, p.author, p.door) for p, r in zip(posts, results) if r is None}
            locked = rules.rooms_lock({room_id for room_id, _user, _door in keys}, skip_locked=skip_locked)
            accesses = rules.room_access_many(keys)
            _judge_and_store(posts, results, existing, accesses, bodies, locked, rate=rate, recent=recent, now=now)
    except IntegrityError:
        # Another door stored one of these (author, client_id) after the lookup above. The
        # whole batch was rolled back (nothing announced): judge each post again alone, when
        # the lookup finds the one stored meanwhile. (No savepoint on the common path: it
        # would cost two round trips a batch.)
        if _retried:
            raise
        # The commands already run keep their answers (they are not run twice); once a post
        # is deferred, what Holds keeps behind it is deferred without being tried.
        alone: list[PostResult] = []
        holds = Holds()
        for i, post in enumerate(posts):
            if i in actions:
                alone.append(results[i])  # type: ignore[arg-type]
            elif holds.holds(post):
                alone.append(DEFERRED)
            else:
                alone.append(message_post_many([post], skip_locked=skip_locked, _retried=True)[0])
                if alone[-1] is DEFERRED:
                    holds.add(post)
        return alone
    for i, result in enumerate(results):
        if isinstance(result, int):
            first = results[result]
            results[i] = first if isinstance(first, ChatError) else (first[0], False)
    return results  # type: ignore[return-value]


def _judge_and_store(posts, results, existing, accesses, bodies, locked, *, rate, recent, now) -> None:
    """Fill ``results`` for the posts not yet refused: judge each in order, store the accepted.

    Should be called inside the transaction holding the ``locked`` rooms' locks
    (message_post_many), so the messages replied to are read as they stand (a deletion
    cannot come in between). A post of an existing room not in ``locked`` is DEFERRED, and
    so is what Holds keeps behind it.
    """
    first_index: dict[tuple[int, str], int] = {}
    queued: dict[int, int] = {}
    accepted: list[tuple[int, Room, Rendered, Message | None]] = []
    judged = [p for p, r in zip(posts, results) if r is None and p.room.pk in locked]
    answered = {p.reply_to for p in judged if p.reply_to is not None}
    targets = Message.objects.select_related(*selectors.MESSAGE_RELATED).in_bulk(answered) if answered else {}
    # Only the uploads of posts whose rooms are locked: no wait behind a deferred room's poster.
    uploads, claimed = attachments.uploads_locked(judged), set()
    holds = Holds()
    for i, post in enumerate(posts):
        if results[i] is not None:
            continue
        key = (post.author.pk, post.client_id)
        if key in existing:
            results[i] = (existing[key], False)
            continue
        if key in first_index:
            results[i] = first_index[key]  # resolved to that post's message below
            continue
        access = accesses.get((post.room.pk, post.author.pk, post.door))
        if (post.room.pk not in locked and access is not None) or (holds.rooms and holds.holds(post)):
            results[i] = DEFERRED
            holds.add(post)
            continue
        try:
            # PROTOCOL.md 3.4's order: permissions, then the body (and what it answers), then the rate.
            room = rules.check_post(access).room
            rendered = bodies[i]
            if isinstance(rendered, ChatError):
                raise rendered
            root = rules.check_reply(targets.get(post.reply_to), room_id=room.pk) if post.reply_to is not None else None
            if rate is not None:
                check_post_rate(rate=rate, recent=recent.get(post.author.pk, []), queued=queued.get(post.author.pk, 0), now=now)
            attachments.claim(post, uploads, claimed)
        except ChatError as error:
            results[i] = error
            continue
        first_index[key] = i
        queued[post.author.pk] = queued.get(post.author.pk, 0) + 1
        accepted.append((i, room, rendered, root))
    if accepted:
        for i, message in _store_posts(posts, accepted).items():
            results[i] = (message, True)


def _messages_by_client_id(keys: set[tuple[int, str]]) -> dict[tuple[int, str], Message]:
    """The stored messages of these (author id, client_id) pairs.

    One query on the (author, client_id) unique index, written out (it runs for every batch);
    a second loads the messages found, which only retries have.
    """
    if not keys:
        return {}
    table = connection.ops.quote_name(Message._meta.db_table)
    values = ", ".join(["(%s, %s)"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            # A join, not `(author_id, client_id) IN (VALUES …)`: SQLite scans the whole index for that.
            f"SELECT m.id FROM (VALUES {values}) AS p JOIN {table} m ON m.author_id = p.column1 AND m.client_id = p.column2",
            [value for key in keys for value in key],
        )
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return {}
    # Retries only: the original as it stands now (reactions included) is what is answered.
    found = list(Message.objects.select_related("room", "author__chat_bot").filter(pk__in=ids))
    selectors.message_state_attach(found)
    return {(m.author_id, m.client_id): m for m in found}


def _store_posts(posts: Sequence[Post], accepted: list[tuple[int, Room, Rendered, Message | None]]) -> dict[int, Message]:
    """Insert the accepted posts; return {post index: message}.

    Runs in message_post_many's transaction, which holds the rooms' locks. The roots of the
    replies among them get their reply_count and last_reply_at there (one UPDATE per root).
    """
    by_room: dict[int, list[tuple[int, Room, Rendered, Message | None]]] = {}
    for item in accepted:
        by_room.setdefault(item[1].pk, []).append(item)
    stored: dict[int, Message] = {}
    for items in by_room.values():
        for i, room, rendered, root in items:
            post = posts[i]
            stored[i] = Message(
                room=room, author=post.author, body=rendered.body, client_id=post.client_id,
                html=rendered.html, mentions=rendered.mentions, reply_to=root,
            )
    if connection.vendor == "postgresql":
        messages = _insert_posted(by_room, stored)
    else:
        last_seqs = _take_seqs_many({room_id: len(items) for room_id, items in by_room.items()})
        for room_id, items in by_room.items():
            for seq, (i, *_rest) in enumerate(items, start=last_seqs[room_id] - len(items) + 1):
                stored[i].seq = seq
        messages = Message.objects.bulk_create(list(stored.values()))
        RoomEvent.objects.bulk_create(
            [RoomEvent(room_id=m.room_id, seq=m.seq, kind=protocol.MESSAGE, message=m) for m in messages]
        )
    attachments.attach(posts, stored)
    replies: dict[int, list[Message]] = {}
    for message in messages:
        message.reaction_list = []
        if message.reply_to_id is not None:
            replies.setdefault(message.reply_to_id, []).append(message)
    for root_id, answers in replies.items():
        Message.objects.filter(pk=root_id).update(
            reply_count=F("reply_count") + len(answers), last_reply_at=max(m.created_at for m in answers)
        )
    # Each MESSAGE is built once: for the room's frame and for the `notification` frames.
    payloads = {message.pk: protocol.message_payload(message) for message in messages}
    # Mentions, DMs and replies: their notifications are stored with the posts.
    notify_for_posted(
        messages=messages,
        reply_roots={stored[i].pk: root.author_id for i, _room, _rendered, root in accepted if root is not None},
        mentioned={stored[i].pk: rendered.mention_ids for i, _room, rendered, _root in accepted if rendered.mention_ids},
        room_mentions={stored[i].pk for i, _room, rendered, _root in accepted if rendered.room_mention},
        payloads=payloads,
    )
    announced = []
    for room_id, items in by_room.items():
        seqs = [stored[item[0]].seq for item in items]
        _prune_events(room_id, seqs[0], seqs[-1])
        frames = [
            protocol.event_frame(kind=protocol.MESSAGE, seq=message.seq, message=message, payload=payloads[message.pk])
            for message in (stored[item[0]] for item in items)
        ]
        # The room as read under its lock (room_access_many): no query without subscriptions.
        subscriptions.outbox_write(room=items[0][1], kind=protocol.MESSAGE, frames=frames)
        announced.append((room_id, frames))
    transaction.on_commit(lambda: realtime.room_events_publish(announced))
    return stored


def _insert_posted(by_room: dict[int, list], stored: dict[int, Message]) -> list[Message]:
    """PostgreSQL: take the rooms' seqs, insert the messages and their room events in one
    statement; return the messages (``stored``'s, given their pk and seq), in stored order.

    The same rows as _take_seqs_many and two bulk_create calls, in one round trip instead of
    three and without Django's per-field preparation of every row: the rows travel as one
    JSON parameter (json.dumps is C; psycopg's client-side quoting of an array or of a
    placeholder per value is Python) in a statement of fixed text, which psycopg parses once.
    Should be called under the rooms' locks (message_post_many).
    """
    now = timezone.now()
    rows = [(i, room_id, len(items) - 1 - k) for room_id, items in by_room.items() for k, (i, *_rest) in enumerate(items)]
    data = json.dumps([
        [room_id, (m := stored[i]).author_id, back, m.body, m.client_id, m.html, m.mentions, m.reply_to_id]
        for i, room_id, back in rows
    ])
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_POSTED, [data, now, protocol.MESSAGE, now])
        ids = {(room_id, seq): pk for pk, room_id, seq in cursor.fetchall()}
    last: dict[int, int] = {}  # each room's last seq: the highest returned
    for room_id, seq in ids:
        last[room_id] = max(seq, last.get(room_id, seq))
    for i, room_id, back in rows:
        message = stored[i]
        message.seq = last[room_id] - back
        message.pk = ids[room_id, message.seq]
        message.created_at = now
        message._state.adding, message._state.db = False, connection.alias
    return list(stored.values())


# p: the posts, in stored order (a room's in seq order; ``back`` counts from its last seq);
# s: each room's seqs taken; m: the messages; e: their room events.
_INSERT_POSTED = """
WITH p AS MATERIALIZED (
    SELECT (r->>0)::bigint AS room_id, (r->>1)::bigint AS author_id, (r->>2)::integer AS back, r->>3 AS body,
           r->>4 AS client_id, r->>5 AS html, (r->6)::jsonb AS mentions, (r->>7)::bigint AS reply_to_id, ord
    FROM json_array_elements(%s::json) WITH ORDINALITY AS j(r, ord)
), s AS (
    UPDATE {room} r SET seq = r.seq + c.n
    FROM (SELECT room_id, count(*) AS n FROM p GROUP BY room_id) AS c
    WHERE r.id = c.room_id
    RETURNING r.id, r.seq
), m AS (
    INSERT INTO {message} (room_id, author_id, seq, body, client_id, created_at, deleted, html, mentions,
                           reply_to_id, reply_count, reaction_order)
    SELECT p.room_id, p.author_id, s.seq - p.back, p.body, p.client_id, %s, false, p.html, p.mentions,
           p.reply_to_id, 0, '[]'::jsonb
    FROM p JOIN s ON s.id = p.room_id
    ORDER BY p.ord
    RETURNING id, room_id, seq
), e AS (
    INSERT INTO {event} (room_id, seq, kind, message_id, "by", created_at)
    SELECT room_id, seq, %s, id, '', %s FROM m
)
SELECT id, room_id, seq FROM m
""".format(room=Room._meta.db_table, message=Message._meta.db_table, event=RoomEvent._meta.db_table)


def thread_recount(root_id: int) -> None:
    """Set the root's reply_count and last_reply_at from its replies that are not deleted.

    Should be called under the room's lock, in the transaction that deletes or restores one
    of its replies.
    """
    state = Message.objects.filter(reply_to_id=root_id, deleted=False).aggregate(n=Count("pk"), last=Max("created_at"))
    Message.objects.filter(pk=root_id).update(reply_count=state["n"], last_reply_at=state["last"])


def _message_locked(*, message_id: int, user, door: rules.Door) -> tuple[Message, rules.RoomAccess]:
    """The message and the caller's access to its room, both read under the room's lock.

    Should be called inside transaction.atomic(): the lock (the row lock _next_seq takes) is
    held until commit, so no other change to the room can come between these reads and the
    caller's write, and a caller that decides "no change" has taken no seq. Raise not_found
    if there is no such message or its room does not exist for the caller.
    """
    # A message never changes rooms, so its room can be read before the lock.
    room_id = Message.objects.filter(pk=message_id).values_list("room_id", flat=True).first()
    access = rules.room_access(user=user, room_id=room_id, door=door, lock=True) if room_id is not None else None
    # "of": lock the message row alone; its author's row must stay free for their other posts.
    message = (
        Message.objects.select_for_update(of=("self",)).select_related(*selectors.MESSAGE_RELATED)
        .filter(pk=message_id).first()
        if access is not None and access.visible
        else None
    )
    if message is None:
        raise ChatError(protocol.NOT_FOUND, "No such message.")
    message.room = access.room
    return message, access


def message_edit(*, message_id: int, user, body: str, door: rules.Door = rules.Door.API) -> Message:
    """The author replaces the body; broadcasts `message.edited`.

    Who may edit and whether the message still stands are decided under the room's lock:
    an edit that loses a race with a deletion answers not_found and announces nothing. The
    new body is rendered before the transaction (its refusal still comes after the
    permission checks).
    """
    try:
        # The same parser as posting: /me stays or becomes a /me, // escapes (chat.commands).
        text = commands.parse(validate_body(body), editing=True)
        if len(text.body) > Message.MAX_BODY:
            raise ChatError(protocol.INVALID, f"Messages are limited to {Message.MAX_BODY} characters.")
        rendered: Rendered | ChatError = _render_for(message_id, text)
    except ChatError as error:
        rendered = error
    with transaction.atomic():
        message, access = _message_locked(message_id=message_id, user=user, door=door)
        rules.check_edit(access, message, user)
        if isinstance(rendered, ChatError):
            raise rendered
        seq = _next_seq(message.room_id)
        message.body, message.html, message.mentions = rendered.body, rendered.html, rendered.mentions
        message.edited_at = timezone.now()
        message.save(update_fields=["body", "html", "mentions", "edited_at"])
        selectors.reactions_attach([message])
        payload = protocol.message_payload(message)
        _record_event(message=message, kind=protocol.MESSAGE_EDITED, seq=seq, payload=payload)
        # Those the edit newly mentions (the unique constraint keeps one per user and message).
        notify_for_posted(messages=[message], mentioned={message.pk: rendered.mention_ids},
                          room_mentions={message.pk} if rendered.room_mention else (), payloads={message.pk: payload})
    return message


def _render_for(message_id: int, text: commands.Text) -> Rendered:
    """render_bodies() of a body for the message ``message_id``'s room (read only if the body
    names someone; no such message renders no mention and is refused under the lock)."""
    room = Room.objects.filter(messages__pk=message_id).first() if "@" in text.markdown else None
    if room is None:
        html = parse_markdown(text.markdown, emote=text.emote).html(mentions=())
        return Rendered(body=text.body, html=html, mentions=[])
    return render_bodies([(room, text)])[0]


def message_delete(*, message_id: int, user, door: rules.Door = rules.Door.API, reason: str = "") -> Message:
    """Soft-delete (author, room moderator or staff); broadcasts `message.deleted`.

    Deleting a deleted message changes nothing, announces nothing and takes no seq (of two
    deletions at once, one makes the change). A moderator's deletion is written to the
    moderation log with ``reason``; through Door.ADMIN staff act in private rooms too.
    """
    with transaction.atomic():
        message, access = _message_locked(message_id=message_id, user=user, door=door)
        by = rules.check_delete(access, message, user)
        if message.deleted:
            return message
        seq = _next_seq(message.room_id)
        message.deleted = True
        message.save(update_fields=["deleted"])
        if message.reply_to_id is not None:
            thread_recount(message.reply_to_id)
        attachments.hide(message)
        _record_event(message=message, kind=protocol.MESSAGE_DELETED, seq=seq, by=by)
        if by == RoomEvent.By.MODERATOR:
            log_message_delete(actor=user, message=message, reason=reason)
    return message
