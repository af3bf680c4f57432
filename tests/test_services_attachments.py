"""Attaching uploads to messages (chat/services/attachments.py, PROTOCOL.md 8): through the
socket's `send`, in live frames and replays, and when two posts race for one upload."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat import protocol, selectors, services
from chat.models import Attachment, Message, Room
from chat.protocol import ChatError
from tests.conftest import open_socket
from tests.factories import make_room, make_user
from tests.test_races import at_once

pytestmark = pytest.mark.django_db(transaction=True)


def make_upload(*, user, room, name="plan.pdf") -> Attachment:
    """An upload's record (its bytes are not needed to attach it)."""
    return Attachment.objects.create(
        uploader=user, room=room, name=name, size=5, file=f"attachments/xx/{name}", content_type="application/pdf"
    )


@pytest.fixture(autouse=True)
def _no_rate(settings):
    settings.CHAT_POST_RATE = "0"


async def test_send_with_attachments_is_broadcast_with_them_and_replayed_with_them(ann_cookie, user, general):
    upload = await database_sync_to_async(make_upload)(user=user, room=general)
    ann, connected, _ = await open_socket(cookie=ann_cookie)
    assert connected
    assert (await ann.join("general"))["type"] == "joined"
    await ann.send(type="send", room="general", body="", client_id="c1", attachments=[upload.pk], ref="r")
    frames = [await ann.recv(), await ann.recv()]
    live = next(f for f in frames if f["type"] == "message")
    assert next(f for f in frames if f["type"] == "ack")["ref"] == "r"
    assert live["message"]["body"] == ""
    assert live["message"]["attachments"] == [protocol.attachment_payload(upload)]
    await ann.close()

    replayer, _, _ = await open_socket(cookie=ann_cookie)
    await replayer.join("general", since=live["seq"] - 1)
    replayed = await replayer.recv()
    assert replayed["type"] == "message" and replayed["message"]["attachments"] == live["message"]["attachments"]
    await replayer.close()


async def test_send_with_attachments_not_a_list_is_bad_frame_and_someone_elses_is_invalid(ann_cookie, other, general):
    upload = await database_sync_to_async(make_upload)(user=other, room=general)
    ann, _, _ = await open_socket(cookie=ann_cookie)
    await ann.join("general")
    await ann.send(type="send", room="general", body="hi", client_id="c1", attachments=upload.pk)
    assert (await ann.recv())["code"] == "bad_frame"
    await ann.send(type="send", room="general", body="hi", client_id="c2", attachments=[upload.pk])
    assert (await ann.recv())["code"] == "invalid"
    assert await database_sync_to_async(Message.objects.count)() == 0
    await ann.close()


def test_a_deleted_messages_replayed_events_carry_no_attachments(user):
    room = make_room(owner=user)
    upload = make_upload(user=user, room=room)
    message, _ = services.message_post(room=room, author=user, body="x", client_id="c", attachments=[upload.pk])
    services.message_delete(message_id=message.pk, user=user)
    frames = selectors.event_frames(room_id=room.pk, after=0, upto=Room.objects.get(pk=room.pk).seq)
    first = protocol.loads(frames[0].text)
    assert first["message"]["deleted"] is True and first["message"]["attachments"] == []


def test_a_batch_gives_each_post_its_own_attachments_and_refuses_a_second_claim_alone(user):
    room = make_room(owner=user)
    a, b = make_upload(user=user, room=room, name="a"), make_upload(user=user, room=room, name="b")
    posts = [
        services.Post(room=room, author=user, body="one", client_id="1", attachments=(a.pk,)),
        services.Post(room=room, author=user, body="two", client_id="2", attachments=(b.pk, a.pk)),
        services.Post(room=room, author=user, body="three", client_id="3"),
    ]
    first, second, third = services.message_post_many(posts)
    assert [x.pk for x in first[0].loaded_attachments] == [a.pk]
    assert isinstance(second, ChatError) and second.code == protocol.INVALID
    assert third[0].loaded_attachments == []
    assert set(Attachment.objects.filter(message=first[0]).values_list("pk", flat=True)) == {a.pk}
    assert Attachment.objects.get(pk=b.pk).message_id is None


def test_two_posts_racing_for_one_upload_attach_it_once_and_the_other_fails_cleanly(user):
    room = make_room(owner=user)
    for round_ in range(10):
        upload = make_upload(user=user, room=room, name=f"u{round_}")

        def attempt(n, upload_id=upload.pk):
            return services.message_post(
                room=room, author=user, body=f"{n}", client_id=f"{round_}-{n}", attachments=[upload_id]
            )

        results = at_once(lambda: attempt(1), lambda: attempt(2))
        stored = [r for r in results if isinstance(r, tuple)]
        refused = [r for r in results if isinstance(r, ChatError)]
        assert len(stored) == 1 and len(refused) == 1, results
        assert refused[0].code == protocol.INVALID
        assert Attachment.objects.get(pk=upload.pk).message_id == stored[0][0].pk
    assert Message.objects.filter(room=room).count() == 10


def test_another_user_racing_cannot_take_an_upload_either(user):
    other = make_user()
    room = make_room(owner=user)
    upload = make_upload(user=user, room=room)
    with pytest.raises(ChatError) as refused:
        services.message_post(room=room, author=other, body="mine", client_id="x", attachments=[upload.pk])
    assert refused.value.code == protocol.INVALID
