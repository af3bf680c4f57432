"""Group commit and room locks held elsewhere (issue 18): a batch skips the rooms it cannot
lock at once (SKIP LOCKED), stores the rest, and the batcher (chat/batching.py) tries the
skipped rooms' posts again, in their order, until lock_timeout's share of CHAT_DB_TIMEOUT.

Real PostgreSQL row locks, held by another connection in a thread: SQLite has none (its
IMMEDIATE transactions queue on the database's one write lock at BEGIN, so there is no
room lock to skip and nothing is ever deferred)."""

import asyncio
import contextlib
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError, connection, transaction

from chat import batching, realtime, services
from chat.models import Message, Room
from chat.protocol import ChatError
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only(settings, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no row locks: a batch waits for the database's one write lock, nothing to skip")
    settings.CHAT_POST_RATE = "0"
    monkeypatch.setattr(realtime, "room_events_publish", lambda rooms: None)


@contextlib.contextmanager
def room_lock_held(room):
    """Hold ``room``'s row lock in another connection (a thread's transaction) until the block ends."""
    locked, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                Room.objects.select_for_update().get(pk=room.pk)
                locked.set()
                release.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(10), "the lock holder did not get the lock"
        yield
    finally:
        release.set()
        thread.join(10)


def stored(room):
    return list(Message.objects.filter(room=room).order_by("seq").values_list("body", "seq"))


def test_a_batch_stores_the_rooms_it_can_lock_and_defers_the_others():
    ann, bob, carl = make_user(), make_user(), make_user()
    held, free, third = make_room(), make_room(), make_room()
    P = services.Post
    posts = [
        P(free, bob, "b1", "b1"),
        P(held, ann, "a1", "same"),
        P(free, ann, "a1 again", "same"),  # ann's client_id of a deferred post: waits for it
        P(free, carl, "c1", "c1"),  # queued after a deferred post in its room: waits too
        P(third, carl, "c2", "c2"),
    ]
    with room_lock_held(held):
        results = services.message_post_many(posts, skip_locked=True)
        assert results[1:4] == [services.DEFERRED] * 3
        assert [r[0].body for r in (results[0], results[4])] == ["b1", "c2"]
        assert stored(held) == [] and stored(free) == [("b1", 1)] and stored(third) == [("c2", 1)]
    # Released: tried again, in order, they are judged as they would have been.
    again = services.message_post_many(posts[1:4], skip_locked=True)
    assert [(r[0].body, r[1]) for r in again] == [("a1", True), ("a1", False), ("c1", True)]
    assert again[1][0].pk == again[0][0].pk
    assert stored(held) == [("a1", 1)] and stored(free) == [("b1", 1), ("c1", 2)]


def test_a_topic_for_a_held_room_is_deferred_too():
    ann = make_user()
    held = make_room(owner=ann)
    post = services.Post(held, ann, "/topic fresh", "t1", interactive=True)
    with room_lock_held(held):
        assert services.message_post_many([post], skip_locked=True) == [services.DEFERRED]
        assert Room.objects.get(pk=held.pk).topic == ""
    (reply,) = services.message_post_many([post], skip_locked=True)
    assert reply.text == "You set the topic: fresh" and Room.objects.get(pk=held.pk).topic == "fresh"


def test_a_missing_room_is_still_not_found():
    ann = make_user()
    gone = make_room()
    Room.objects.filter(pk=gone.pk).delete()
    (result,) = services.message_post_many([services.Post(gone, ann, "hi", "c")], skip_locked=True)
    assert isinstance(result, ChatError) and result.code == "not_found"


async def test_a_held_room_stalls_only_its_own_posts_and_keeps_their_order(settings):
    settings.CHAT_DB_TIMEOUT = 60  # the deferred room waits for the release, however slow the machine
    users = [await database_sync_to_async(make_user)() for _ in range(5)]
    held, free = await database_sync_to_async(make_room)(), await database_sync_to_async(make_room)()
    P = services.Post

    def send(room, n):  # n: the room's n-th post, by users[n]
        return asyncio.ensure_future(batching.post(P(room, users[n], f"{room.slug}-{n}", f"{room.slug}-{n}")))

    with room_lock_held(held):
        first = [send(held, 0), send(free, 0), send(held, 1), send(held, 2)]  # one batch
        message, created = await asyncio.wait_for(first[1], 30)  # acked while the lock is held
        assert created and message.seq == 1
        assert await database_sync_to_async(stored)(free) == [(f"{free.slug}-0", 1)]
        later = [send(held, 3), send(free, 1)]  # a later batch: the free room goes on
        assert (await asyncio.wait_for(later[1], 30))[0].seq == 2
        assert not any(f.done() for f in first[::2] + later[:1])
        assert await database_sync_to_async(stored)(held) == []
    # Sent after the release, possibly before the deferred posts' next try: still after them.
    last = send(held, 4)
    answers = await asyncio.wait_for(asyncio.gather(first[0], first[2], first[3], later[0], last), 30)
    assert [(m.body, m.seq) for m, _created in answers] == [(f"{held.slug}-{n}", n + 1) for n in range(5)]
    assert await database_sync_to_async(stored)(held) == [(f"{held.slug}-{n}", n + 1) for n in range(5)]


async def test_a_room_locked_past_lock_timeout_answers_unavailable_and_stores_nothing(settings, monkeypatch):
    settings.CHAT_DB_TIMEOUT = 0.5  # a deferred post gives up after 0.4 s
    ann, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    held, free = await database_sync_to_async(make_room)(), await database_sync_to_async(make_room)()
    tries = []
    store = services.message_post_many

    def counted(posts, **kwargs):
        tries.append(sum(p.room.pk == held.pk for p in posts))
        return store(posts, **kwargs)

    monkeypatch.setattr(services, "message_post_many", counted)
    P = services.Post
    with room_lock_held(held):
        sends = [batching.post(P(held, ann, "a1", "a1")), batching.post(P(free, bob, "b1", "b1")),
                 batching.post(P(held, bob, "a2", "a2"))]
        answers = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 30)
        assert isinstance(answers[1], tuple) and answers[1][0].seq == 1
        assert [type(a) for a in answers[::2]] == [OperationalError, OperationalError]
        assert await database_sync_to_async(stored)(held) == []
    assert await database_sync_to_async(lambda: Room.objects.get(pk=held.pk).seq)() == 0
    # Retried with a back-off, not in a busy loop (which would try thousands of times in 0.4 s).
    assert 2 <= sum(1 for n in tries if n) < 40
    # Once free, the room takes posts again.
    message, _ = await asyncio.wait_for(batching.post(P(held, ann, "a3", "a3")), 30)
    assert message.seq == 1


async def test_a_batch_that_breaks_is_stored_one_by_one_keeping_a_held_room_in_order(settings, monkeypatch):
    settings.CHAT_DB_TIMEOUT = 60
    users = [await database_sync_to_async(make_user)() for _ in range(3)]
    held, free = await database_sync_to_async(make_room)(), await database_sync_to_async(make_room)()
    store = services.message_post_many

    def fragile(posts, **kwargs):
        if len(posts) > 1:
            raise RuntimeError("a bug")
        return store(posts, **kwargs)

    monkeypatch.setattr(services, "message_post_many", fragile)
    P = services.Post
    with room_lock_held(held):
        sends = [asyncio.ensure_future(batching.post(P(room, user, f"{room.slug}-{n}", "c")))
                 for n, (room, user) in enumerate([(held, users[0]), (free, users[1]), (held, users[2])])]
        assert (await asyncio.wait_for(sends[1], 30))[0].seq == 1
        assert not sends[0].done() and not sends[2].done()
    answers = await asyncio.wait_for(asyncio.gather(sends[0], sends[2]), 30)
    assert [(m.body, m.seq) for m, _ in answers] == [(f"{held.slug}-0", 1), (f"{held.slug}-2", 2)]
