"""Handshakes and joins arriving at once share their database reads (chat/coalesce.py), and
each socket still gets exactly its own answer: its user, its ban, its room, its replay."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import selectors, services
from chat.models import Room, SiteBan
from tests.conftest import open_socket
from tests.factories import make_room, make_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _members(count):
    users = [make_user(f"u{i}") for i in range(count)]
    return [(u, make_token(u)) for u in users]


@database_sync_to_async
def _post(slug, author, count):
    room = Room.objects.get(slug=slug)
    for i in range(count):
        services.message_post(room=room, author=author, body=f"m{i}", client_id=f"{slug}-{i}")


async def _join(token, room, since):
    sock, connected, _ = await open_socket(token=token)
    assert connected
    joined = await sock.join(room, **({} if since is None else {"since": since}))
    frames = []
    if joined["type"] == "joined":
        frames = [await sock.recv() for _ in range(joined["seq"] - since if since is not None and not joined["resync"] else 0)]
        assert await sock.silent()
    return sock, joined, frames


async def test_joins_at_once_each_replay_exactly_what_their_socket_missed(monkeypatch, other):
    members = await _members(12)
    await database_sync_to_async(make_room)(owner=other, slug="one")
    await database_sync_to_async(make_room)(owner=other, slug="two")
    await _post("one", other, 6)
    await _post("two", other, 3)
    batches = []
    many = selectors.room_resume_many

    def counting(resumes):
        batches.append(len(resumes))
        return many(resumes)

    monkeypatch.setattr(selectors, "room_resume_many", counting)
    plan = [(token, "one" if i % 2 else "two", [None, 0, 1, 2, 3][i % 5]) for i, (_user, token) in enumerate(members)]
    results = await asyncio.gather(*(_join(token, room, since) for token, room, since in plan))
    for (_token, room, since), (sock, joined, frames) in zip(plan, results):
        seq = 6 if room == "one" else 3
        assert joined["type"] == "joined" and joined["seq"] == seq and joined["resync"] is False
        expected = list(range(since + 1, seq + 1)) if since is not None else []
        assert [f["seq"] for f in frames] == expected
        assert all(f["room"] == room for f in frames)
    assert sum(batches) == len(plan) and len(batches) < len(plan)  # shared, yet one answer each
    for sock, _joined, _frames in results:
        await sock.close()


async def test_a_banned_user_among_handshakes_at_once_is_closed_and_the_others_join(general):
    members = await _members(6)
    banned_user, banned_token = members[2]
    await database_sync_to_async(SiteBan.objects.create)(user=banned_user, reason="spam")
    # Two sockets on one token, in the same batch: both are that user.
    tokens = [token for _user, token in members] + [members[0][1]]
    opened = await asyncio.gather(*(open_socket(token=token) for token in tokens))
    for (sock, connected, _), token in zip(opened, tokens):
        assert connected
        if token == banned_token:
            assert (await sock.recv())["code"] == "forbidden"
            assert (await sock.comm.receive_output(2))["code"] == 4403
        else:
            joined = await sock.join("general")
            assert joined["type"] == "joined"
            await sock.close()


async def test_joins_at_once_to_a_missing_and_a_forbidden_room_are_refused_alone(general, other):
    members = await _members(3)
    private = await database_sync_to_async(make_room)(owner=other, slug="secret", private=True)
    assert private.private
    rooms = ["general", "nowhere", "secret"]
    opened = await asyncio.gather(*(open_socket(token=token) for _user, token in members))
    answers = await asyncio.gather(*(sock.join(room) for (sock, _c, _s), room in zip(opened, rooms)))
    assert answers[0]["type"] == "joined"
    assert answers[1]["type"] == "error" and answers[1]["code"] == "not_found"
    assert answers[2]["type"] == "error" and answers[2]["code"] == "not_found"
    for sock, _c, _s in opened:
        await sock.close()


def test_resume_many_answers_each_since_as_a_resume_alone_would(db, other):
    room = make_room(owner=other, slug="r")
    for i in range(4):
        services.message_post(room=room, author=other, body=f"m{i}", client_id=f"c{i}")
    answers = selectors.room_resume_many([(room.pk, None), (room.pk, 4), (room.pk, 1), (room.pk, 9), (room.pk, -1),
                                          (room.pk, 3), (room.pk + 1000, 0)])
    shapes = [(a.seq, [f.seq for f in a.frames], a.resync) if not isinstance(a, Exception) else type(a) for a in answers]
    assert shapes == [(4, [], False), (4, [], False), (4, [2, 3, 4], False), (4, [], True), (4, [], True),
                      (4, [4], False), Room.DoesNotExist]
    with pytest.raises(Room.DoesNotExist):
        selectors.room_resume(room_id=room.pk + 1000, since=0)
