"""Group commit: services.message_post_many and the socket door's batcher (chat/batching.py)."""

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError, connection
from django.utils import timezone

from chat import protocol, realtime, services
from chat.services import messages
from chat.models import Membership, Message, Mute, Room, RoomBan, RoomEvent
from chat.protocol import ChatError
from tests.conftest import open_socket, session_cookie
from tests.factories import make_room, make_user


@pytest.fixture
def published(monkeypatch):
    """(room id, [seqs]) for each announcement, in order."""
    sent = []
    monkeypatch.setattr(
        realtime, "room_events_publish", lambda rooms: sent.extend((room_id, [f.seq for f in frames]) for room_id, frames in rooms)
    )
    return sent


def codes(results):
    return [r.code if isinstance(r, ChatError) else ("created" if r[1] else "repeat") for r in results]


@pytest.mark.django_db(transaction=True)
def test_each_post_of_a_batch_is_judged_as_if_alone(settings, published):
    settings.CHAT_POST_RATE = "3/10s"
    ann, bob, muted = make_user(), make_user(), make_user()
    lobby, other = make_room(slug="lobby"), make_room(slug="other")
    Mute.objects.create(room=lobby, user=muted)
    services.message_post(room=lobby, author=ann, body="earlier", client_id="a0")
    P = services.Post
    results = services.message_post_many([
        P(lobby, ann, "one", "a1"),
        P(other, bob, "two", "b1"),
        P(lobby, ann, "again", "a0"),     # stored before the batch: the original
        P(lobby, ann, "three", "a1"),     # repeated within the batch: the first one's message
        P(lobby, muted, "hush", "m1"),
        P(lobby, bob, "   ", "b2"),
        P(lobby, ann, "four", "a2"),      # ann's third in the window: a0, a1, a2
        P(lobby, ann, "five", "a3"),      # the fourth: over the rate
        P(lobby, bob, "six", "x" * 65),
        P(lobby, bob, "seven", "b3"),
    ])
    assert codes(results) == [
        "created", "created", "repeat", "repeat", protocol.MUTED, protocol.INVALID, "created",
        protocol.RATE_LIMITED, protocol.INVALID, "created",
    ]
    assert results[3][0].pk == results[0][0].pk and results[3][0].body == "one"
    assert results[2][0].body == "earlier"
    # Accepted posts take the room's seqs in batch order, gap-free, with their events.
    assert [(m.body, m.seq) for m in Message.objects.filter(room=lobby).order_by("seq")] == [
        ("earlier", 1), ("one", 2), ("four", 3), ("seven", 4)
    ]
    assert list(RoomEvent.objects.filter(room=lobby).order_by("seq").values_list("seq", "message__body")) == [
        (1, "earlier"), (2, "one"), (3, "four"), (4, "seven")
    ]
    assert Room.objects.get(pk=lobby.pk).seq == 4 and Room.objects.get(pk=other.pk).seq == 1
    # One announcement per room, in seq order, after the one commit.
    assert sorted(published) == sorted([(lobby.pk, [1]), (lobby.pk, [2, 3, 4]), (other.pk, [1])])


@pytest.mark.django_db(transaction=True)
def test_mutes_and_bans_apply_in_a_batch_until_they_expire(published):
    room = make_room()
    later, earlier = timezone.now() + timedelta(minutes=5), timezone.now() - timedelta(seconds=1)
    cases = {"muted": (Mute, later), "mute_over": (Mute, earlier), "banned": (RoomBan, later), "ban_over": (RoomBan, earlier)}
    users = {}
    for name, (model, until) in cases.items():
        users[name] = make_user()
        model.objects.create(room=room, user=users[name], until=until)
    users["moderator"] = make_user()
    Membership.objects.create(room=room, user=users["moderator"], role=Membership.Role.MODERATOR)
    Room.objects.filter(pk=room.pk).update(locked=True)
    users["member"] = make_user()
    results = services.message_post_many([services.Post(room, user, "hi", "c") for user in users.values()])
    assert dict(zip(users, codes(results))) == {
        "muted": protocol.MUTED, "mute_over": protocol.ROOM_LOCKED, "banned": protocol.FORBIDDEN,
        "ban_over": protocol.ROOM_LOCKED, "moderator": "created", "member": protocol.ROOM_LOCKED,
    }
    Room.objects.filter(pk=room.pk).update(locked=False)
    results = services.message_post_many([services.Post(room, user, "hi", "d") for user in users.values()])
    assert codes(results) == [protocol.MUTED, "created", protocol.FORBIDDEN, "created", "created", "created"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_over_the_same_rooms_keep_every_room_gap_free(settings, published):
    """Batches naming the same rooms in different orders, from several threads (connections):
    every post stored, every room's seqs gap-free."""
    settings.CHAT_POST_RATE = "0"
    rooms = [make_room() for _ in range(4)]
    authors = [make_user() for _ in range(4)]
    errors = []

    def post_batches(n, author):
        try:
            for i in range(10):
                order = rooms[n:] + rooms[:n] if i % 2 else list(reversed(rooms[n:] + rooms[:n]))
                posts = [services.Post(room, author, f"{i}", f"{i}-{room.pk}") for room in order]
                assert all(not isinstance(r, ChatError) for r in services.message_post_many(posts))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post_batches, args=(n, a)) for n, a in enumerate(authors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for room in rooms:
        assert list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True)) == list(range(1, 41))
        assert Room.objects.get(pk=room.pk).seq == 40


@pytest.mark.django_db(transaction=True)
def test_a_client_id_stored_meanwhile_by_another_door_falls_back_to_one_by_one(published, monkeypatch):
    ann, bob = make_user(), make_user()
    room = make_room()
    original, _ = services.message_post(room=room, author=ann, body="via REST", client_id="c1")
    # As if REST stored c1 between the batch's lookup and its insert.
    lookup = messages._messages_by_client_id
    calls = []
    monkeypatch.setattr(messages, "_messages_by_client_id", lambda keys: calls.append(keys) or ({} if len(calls) == 1 else lookup(keys)))
    results = services.message_post_many([services.Post(room, bob, "fine", "b1"), services.Post(room, ann, "dup", "c1")])
    assert codes(results) == ["created", "repeat"]
    assert results[1][0].pk == original.pk
    assert list(Message.objects.order_by("seq").values_list("body", "seq")) == [("via REST", 1), ("fine", 2)]
    assert Room.objects.get(pk=room.pk).seq == 2


@pytest.mark.django_db(transaction=True)
def test_a_database_error_stores_nothing_of_the_batch(published, monkeypatch):
    room, ann = make_room(), make_user()
    # After the batch's rows are inserted (attach runs next, on both databases' paths).
    monkeypatch.setattr(messages.attachments, "attach", lambda *a, **kw: (_ for _ in ()).throw(OperationalError("gone")))
    with pytest.raises(OperationalError):
        services.message_post_many([services.Post(room, ann, f"m{i}", f"c{i}") for i in range(3)])
    assert Message.objects.count() == 0 and Room.objects.get(pk=room.pk).seq == 0 and published == []


# --- the socket door ---------------------------------------------------------------------


async def sockets_in(room_slug, users):
    socks = []
    for user in users:
        sock, connected, _ = await open_socket(cookie=await database_sync_to_async(session_cookie)(user))
        assert connected
        assert (await sock.join(room_slug))["type"] == "joined"
        socks.append(sock)
    return socks


async def collect(sock, *, answers: int, events: int = 0):
    """The socket's next ``answers`` replies to sends (ack or error) and ``events`` message seqs."""
    replies, seqs = [], []
    while len(replies) < answers or len(seqs) < events:
        frame = await sock.recv(timeout=5)
        if frame["type"] in ("ack", "error"):
            replies.append(frame)
        elif frame["type"] == "message":
            seqs.append(frame["seq"])
    return replies, seqs


async def acks_and_errors(socks, n):
    return [(await collect(sock, answers=n))[0] for sock in socks]


@pytest.mark.django_db(transaction=True)
async def test_concurrent_sends_are_stored_in_shared_transactions_and_each_acked(settings, monkeypatch, general):
    settings.CHAT_POST_RATE = "0"
    users = [await database_sync_to_async(make_user)() for _ in range(8)]
    socks = await sockets_in("general", users)
    batches = []
    store = services.message_post_many
    monkeypatch.setattr(services, "message_post_many", lambda posts, **kw: batches.append(len(posts)) or store(posts, **kw))
    for round_ in range(3):
        await asyncio.gather(*(s.send(type="send", room="general", body=f"r{round_}", client_id=f"r{round_}") for s in socks))
    seen = [await collect(sock, answers=3, events=24) for sock in socks]
    acked = sorted(frame["seq"] for replies, _ in seen for frame in replies)
    assert acked == list(range(1, 25))  # every send acked once, each with its own seq
    assert all(seqs == list(range(1, 25)) for _, seqs in seen)  # every socket: every event once, in order
    assert max(batches) > 1 and sum(batches) == 24  # some went together
    for sock in socks:
        assert await sock.silent(0.3)


@pytest.mark.django_db(transaction=True)
async def test_one_post_that_breaks_a_batch_costs_the_others_nothing(settings, monkeypatch, general):
    settings.CHAT_POST_RATE = "0"
    users = [await database_sync_to_async(make_user)() for _ in range(4)]
    socks = await sockets_in("general", users)
    store = services.message_post_many

    def fragile(posts, **kwargs):
        if any(p.body == "poison" for p in posts):
            raise RuntimeError("a bug")
        return store(posts, **kwargs)

    monkeypatch.setattr(services, "message_post_many", fragile)
    bodies = ["ok0", "poison", "ok2", "ok3"]
    await asyncio.gather(*(s.send(type="send", room="general", body=b, client_id="c", ref=b) for s, b in zip(socks, bodies)))
    answers = [frames[0] for frames in await acks_and_errors(socks, 1)]
    assert [a["type"] for a in answers] == ["ack", "error", "ack", "ack"]
    assert answers[1]["code"] == protocol.SERVER_ERROR and answers[1]["ref"] == "poison"
    assert await database_sync_to_async(Message.objects.count)() == 3


@pytest.mark.django_db(transaction=True)
async def test_a_database_outage_answers_unavailable_to_every_sender(settings, monkeypatch, general):
    settings.CHAT_POST_RATE = "0"
    users = [await database_sync_to_async(make_user)() for _ in range(3)]
    socks = await sockets_in("general", users)

    def down(posts, **kwargs):
        raise OperationalError("the database is down")

    monkeypatch.setattr(services, "message_post_many", down)
    await asyncio.gather(*(s.send(type="send", room="general", body="hi", client_id="c", ref="r") for s in socks))
    answers = [frames[0] for frames in await acks_and_errors(socks, 1)]
    assert [(a["type"], a["code"], a["ref"]) for a in answers] == [("error", protocol.UNAVAILABLE, "r")] * 3
    # The batcher is not stuck: once the database is back, sends are stored.
    monkeypatch.undo()
    await socks[0].send(type="send", room="general", body="back", client_id="c2")
    assert (await acks_and_errors(socks[:1], 1))[0][0]["type"] == "ack"


@pytest.mark.django_db(transaction=True)
def test_a_client_id_stored_by_another_door_meanwhile_is_a_repeat(monkeypatch, published):
    """Between the batch's client_id lookup and its INSERT another door stores the same
    (author, client_id): the clash rolls the batch back, and each post is judged again."""
    ann, bob = make_user(), make_user()
    lobby = make_room(slug="lobby")
    # The other door's message, committed "after" the lookup: the first lookup misses it.
    other_door, _ = services.message_post(room=lobby, author=ann, body="from REST", client_id="same")
    published.clear()
    lookup = messages._messages_by_client_id
    calls = []

    def late_lookup(keys):
        calls.append(keys)
        return {} if len(calls) == 1 else lookup(keys)

    monkeypatch.setattr(messages, "_messages_by_client_id", late_lookup)
    results = services.message_post_many([
        services.Post(room=lobby, author=bob, body="bob's", client_id="b1"),
        services.Post(room=lobby, author=ann, body="from the socket", client_id="same"),
    ])
    assert codes(results) == ["created", "repeat"]
    assert results[1][0].pk == other_door.pk
    assert list(Message.objects.filter(room=lobby).order_by("seq").values_list("body", "seq")) == [
        ("from REST", 1), ("bob's", 2)
    ]
    assert published == [(lobby.pk, [2])]  # the rolled-back attempt announced nothing
