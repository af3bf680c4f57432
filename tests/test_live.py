"""Live state: edits and deletions on the socket, read positions, unread counts, DMs."""

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat import services
from chat.models import Membership, Room
from tests.conftest import open_socket, session_cookie
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@database_sync_to_async
def post(author, body, client_id, slug="general"):
    return services.message_post(room=Room.objects.get(slug=slug), author=author, body=body, client_id=client_id)[0]


@database_sync_to_async
def unread(user, slug="general"):
    rooms = api(user).get("/api/v1/rooms/").json()
    return next(r["unread"] for r in rooms if r["slug"] == slug)


async def joined(cookie, room="general"):
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected
    assert (await sock.join(room))["type"] == "joined"
    return sock


async def test_edit_and_delete_over_the_socket_are_room_events_for_everyone(ann_cookie, bob_cookie):
    ann, bob = await joined(ann_cookie), await joined(bob_cookie)
    await ann.send(type="send", room="general", body="typo", client_id="c1")
    message_id = (await bob.recv())["message"]["id"]
    await ann.send(type="edit", id=message_id, body="fixed", ref="e")
    edited = await bob.recv()
    assert edited["type"] == "message.edited" and edited["seq"] == 2
    assert edited["message"]["body"] == "fixed" and edited["message"]["edited_at"]
    await ann.send(type="delete", id=message_id)
    deleted = await bob.recv()
    assert deleted == {"type": "message.deleted", "room": "general", "seq": 3, "id": message_id, "by": "author", "reply_to": None}
    # The author's own socket gets the events too, and no direct reply.
    frames = [await ann.recv() for _ in range(4)]
    assert [f["type"] for f in frames if f["type"] != "ack"] == ["message", "message.edited", "message.deleted"]
    assert await ann.silent()


async def test_read_positions_unread_counts_and_read_frames_across_doors(ann_cookie, user, other):
    tab1 = await joined(ann_cookie)
    tab2 = await joined(await database_sync_to_async(session_cookie)(user))
    for i in range(3):
        await post(other, f"m{i}", f"c{i}")
    await post(user, "mine", "own")  # the reader's own messages never count
    assert await unread(user) == 3

    await tab1.send(type="read", room="general", seq=2)
    assert await tab2.recv_until("read") == {"type": "read", "room": "general", "seq": 2}
    assert await unread(user) == 1
    # A lower seq is ignored; one beyond the room is clamped; REST tells every socket.
    response = await database_sync_to_async(api(user).post)("/api/v1/rooms/general/read/", {"seq": 1}, format="json")
    assert response.status_code == 200 and response.json() == {"room": "general", "seq": 2}
    response = await database_sync_to_async(api(user).post)("/api/v1/rooms/general/read/", {"seq": 99}, format="json")
    assert response.json() == {"room": "general", "seq": 4}
    assert await tab1.recv_until("read") == {"type": "read", "room": "general", "seq": 4}
    assert await tab2.recv_until("read") == {"type": "read", "room": "general", "seq": 4}
    assert await unread(user) == 0
    # The socket that set the position is not told; deleted messages do not count.
    assert await tab1.silent(0.3)
    message = await post(other, "later", "c9")
    await post(other, "later2", "c10")
    await database_sync_to_async(services.message_delete)(message_id=message.pk, user=other)
    assert await unread(user) == 1


async def test_read_of_a_room_not_joined_is_refused(ann_cookie):
    sock, _, _ = await open_socket(cookie=ann_cookie)
    await sock.send(type="read", room="general", seq=1)
    assert (await sock.recv())["code"] == "not_joined"


def test_dm_is_created_once_whichever_side_asks_first(user, other):
    first = api(user).post("/api/v1/dms/", {"username": "bob"}, format="json")
    assert first.status_code == 201
    again = api(other).post("/api/v1/dms/", {"username": "ann"}, format="json")
    assert again.status_code == 200 and again.json()["slug"] == first.json()["slug"]
    room = Room.objects.get(slug=first.json()["slug"])
    assert room.private and set(Membership.objects.filter(room=room).values_list("user__username", flat=True)) == {"ann", "bob"}
    assert api(user).post("/api/v1/dms/", {"username": "ann"}, format="json").status_code == 400
    assert api(user).post("/api/v1/dms/", {"username": "nobody"}, format="json").status_code == 404
    # A room slug of the DM form cannot be taken by hand.
    assert api(user).post("/api/v1/rooms/", {"slug": "dm-99-100"}, format="json").status_code == 400


async def test_a_dm_is_private_to_its_two_people(ann_cookie, user, other):
    slug = (await database_sync_to_async(api(other).post)("/api/v1/dms/", {"username": "ann"}, format="json")).json()["slug"]
    eve = await database_sync_to_async(make_user)("eve")
    eve_api = api(eve)
    for path in (f"/api/v1/rooms/{slug}/", f"/api/v1/rooms/{slug}/messages/"):
        assert (await database_sync_to_async(eve_api.get)(path)).status_code == 404
    eve_sock, _, _ = await open_socket(cookie=await database_sync_to_async(session_cookie)(eve))
    assert (await eve_sock.join(slug))["code"] == "not_found"
    ann = await joined(ann_cookie, slug)
    await post(other, "just us", "dm1", slug=slug)
    # (ann's socket also gets the DM's `notification` frame: docs/protocol.md, notifications)
    assert (await ann.recv_until("message"))["message"]["body"] == "just us"


async def test_a_new_member_s_sockets_are_told_of_the_room_with_a_read_frame(ann_cookie, bob_cookie, user, other):
    """Being added to a room or opened a DM with reaches every open socket at once (the page's
    room list adds the room); the socket that was already there learns nothing else."""
    ann = await joined(ann_cookie)
    bob = await joined(bob_cookie)
    secret = await database_sync_to_async(Room.objects.create)(slug="secret", name="Secret", private=True, owner=other)
    await database_sync_to_async(Membership.objects.create)(room=secret, user=other, role="owner")
    response = await database_sync_to_async(api(other).post)("/api/v1/rooms/secret/members/", {"username": "ann"}, format="json")
    assert response.status_code == 201
    assert await ann.recv_until("read") == {"type": "read", "room": "secret", "seq": 0}
    # Adding her again changes nothing and announces nothing.
    response = await database_sync_to_async(api(other).post)("/api/v1/rooms/secret/members/", {"username": "ann"}, format="json")
    assert response.status_code == 200
    assert await ann.silent(0.3)

    response = await database_sync_to_async(api(other).post)("/api/v1/dms/", {"username": "ann"}, format="json")
    assert response.status_code == 201
    assert await ann.recv_until("read") == {"type": "read", "room": response.json()["slug"], "seq": 0}
    assert await bob.silent(0.3)  # the one who opened it goes there himself
