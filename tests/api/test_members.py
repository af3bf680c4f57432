"""Members of a room: list, add (or change role), remove or leave."""

import pytest
from channels.db import database_sync_to_async

from chat.models import Membership
from tests.api.conftest import session_client, token_client
from tests.conftest import open_socket, session_cookie
from tests.factories import make_user

URL = "/api/v1/rooms/secret/members/"


@pytest.fixture
def cid(db):
    return make_user("cid")


def _roles(room) -> dict[str, str]:
    return {m.user.username: m.role for m in Membership.objects.filter(room=room).select_related("user")}


def test_list_members_with_roles_owner_first(ann, secret, other, cid):
    Membership.objects.create(room=secret, user=cid, role="member")
    Membership.objects.create(room=secret, user=other, role="moderator")
    response = ann.get(URL)
    assert response.status_code == 200
    assert [(m["username"], m["role"]) for m in response.json()] == [("ann", "owner"), ("bob", "moderator"), ("cid", "member")]
    assert set(response.json()[0]) == {"username", "name", "role", "joined_at"}
    other.first_name = "Bob B"
    other.save()
    assert [m["name"] for m in ann.get(URL).json()] == ["", "Bob B", ""]  # display names, "" for none


def test_private_room_members_are_404_to_non_members(bob, secret):
    assert bob.get(URL).status_code == 404
    assert bob.post(URL, {"username": "bob"}, format="json").status_code == 404
    assert bob.delete(URL + "ann/").status_code == 404


def test_members_unauthenticated_is_401(anon, secret):
    assert anon.get(URL).status_code == 401
    assert anon.post(URL, {"username": "bob"}, format="json").status_code == 401
    assert anon.delete(URL + "ann/").status_code == 401


def test_owner_adds_a_member_who_then_sees_the_room(ann, bob, secret, other):
    response = ann.post(URL, {"username": "bob"}, format="json")
    assert response.status_code == 201
    assert response.json()["username"] == "bob" and response.json()["role"] == "member"
    assert bob.get("/api/v1/rooms/secret/").status_code == 200
    # Adding again changes nothing: 200.
    assert ann.post(URL, {"username": "bob", "role": "member"}, format="json").status_code == 200


def test_only_the_owner_grants_moderator(ann, secret, other, cid):
    Membership.objects.create(room=secret, user=other, role="moderator")
    bob = token_client(other)
    assert bob.post(URL, {"username": "cid"}, format="json").status_code == 201  # moderators add members
    response = bob.post(URL, {"username": "cid", "role": "moderator"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert ann.post(URL, {"username": "cid", "role": "moderator"}, format="json").status_code == 200
    assert _roles(secret) == {"ann": "owner", "bob": "moderator", "cid": "moderator"}


def test_a_plain_member_cannot_add(ann, secret, other, cid):
    Membership.objects.create(room=secret, user=other, role="member")
    response = token_client(other).post(URL, {"username": "cid"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


def test_the_owners_role_cannot_change(ann, secret):
    response = ann.post(URL, {"username": "ann", "role": "member"}, format="json")
    assert response.status_code == 403
    assert _roles(secret) == {"ann": "owner"}


@pytest.mark.parametrize("data", [{"username": "bob", "role": "owner"}, {"username": "bob", "role": "admin"}, {}, {"username": 3}])
def test_add_with_invalid_input_is_400(ann, secret, other, data):
    response = ann.post(URL, data, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_add_of_no_such_user_is_404(ann, secret):
    response = ann.post(URL, {"username": "ghost"}, format="json")
    assert response.status_code == 404 and response.json()["detail"] == "No such user."


def test_add_with_a_session_needs_the_csrf_token(user, secret, other):
    assert session_client(user).post(URL, {"username": "bob"}, format="json").status_code == 403
    assert _roles(secret) == {"ann": "owner"}


def test_moderator_removes_a_member_but_not_a_moderator(ann, secret, other, cid):
    dan = make_user("dan")
    Membership.objects.create(room=secret, user=other, role="moderator")
    Membership.objects.create(room=secret, user=cid, role="member")
    Membership.objects.create(room=secret, user=dan, role="moderator")
    bob = token_client(other)
    assert bob.delete(URL + "cid/").status_code == 204
    assert bob.delete(URL + "dan/").status_code == 403
    assert ann.delete(URL + "dan/").status_code == 204
    assert _roles(secret) == {"ann": "owner", "bob": "moderator"}


def test_a_member_leaves_and_the_room_is_then_404_to_them(ann, secret, other):
    Membership.objects.create(room=secret, user=other, role="member")
    bob = token_client(other)
    assert bob.delete(URL + "bob/").status_code == 204
    assert bob.get("/api/v1/rooms/secret/").status_code == 404


def test_a_member_cannot_remove_another(ann, secret, other, cid):
    Membership.objects.create(room=secret, user=other, role="member")
    Membership.objects.create(room=secret, user=cid, role="member")
    assert token_client(other).delete(URL + "cid/").status_code == 403


def test_the_owner_cannot_leave_or_be_removed(ann, secret, other):
    Membership.objects.create(room=secret, user=other, role="moderator")
    assert ann.delete(URL + "ann/").status_code == 403
    assert token_client(other).delete(URL + "ann/").status_code == 403


def test_removing_a_non_member_or_no_such_user_is_404(ann, secret, other):
    assert ann.delete(URL + "bob/").status_code == 404
    assert ann.delete(URL + "ghost/").status_code == 404


def test_remove_with_a_session_needs_the_csrf_token(user, secret, other):
    Membership.objects.create(room=secret, user=other, role="member")
    assert session_client(user).delete(URL + "bob/").status_code == 403
    assert "bob" in _roles(secret)


async def _secret_room_socket(user, other):
    """A socket of ``other``, a member of ``user``'s private room "secret" (not joined yet)."""
    from chat import services

    def setup():
        room = services.room_create(owner=user, slug="secret", private=True)
        Membership.objects.create(room=room, user=other)
        return session_cookie(other)

    sock, _, _ = await open_socket(cookie=await database_sync_to_async(setup)())
    return sock


@pytest.mark.django_db(transaction=True)
async def test_removed_member_of_a_private_room_is_kicked_from_it_at_once(user, other, general):
    sock = await _secret_room_socket(user, other)
    assert (await sock.join("secret"))["type"] == "joined"
    status = await database_sync_to_async(lambda: token_client(user).delete(URL + "bob/").status_code)()
    assert status == 204
    frame = await sock.recv_until("kicked")
    assert frame["room"] == "secret"
    await sock.close()


@pytest.mark.django_db(transaction=True)
async def test_a_member_removed_while_their_join_is_in_flight_is_joined_then_kicked(user, other, general, monkeypatch):
    """The kick comes between the join's access check and its subscription: it is not lost,
    and the socket is out of the room (a message posted there afterwards does not reach it)."""
    import threading

    from chat import selectors
    from chat.consumers import ChatConsumer

    sock = await _secret_room_socket(user, other)
    kick_seen = threading.Event()
    user_event = ChatConsumer.user_event

    async def seen(self, event):
        await user_event(self, event)
        if "kick" in event:
            kick_seen.set()

    resume = selectors.room_resume_many

    def remove_bob_then_resume(resumes):
        # In the join's database thread, after its access check: ann removes bob, and the
        # socket has taken the kick before the join goes on.
        assert token_client(user).delete(URL + "bob/").status_code == 204
        assert kick_seen.wait(5)
        return resume(resumes)

    monkeypatch.setattr(ChatConsumer, "user_event", seen)
    monkeypatch.setattr(selectors, "room_resume_many", remove_bob_then_resume)
    assert (await sock.join("secret", ref="j1"))["type"] == "joined"
    assert await sock.recv() == {"type": "kicked", "room": "secret", "reason": "You were removed."}
    monkeypatch.setattr(selectors, "room_resume_many", resume)

    def post():
        body = {"body": "after", "client_id": "6f1c0c2e-0000-4000-8000-000000000002"}
        return token_client(user).post("/api/v1/rooms/secret/messages/", body, format="json").status_code

    assert await database_sync_to_async(post)() == 201
    assert await sock.silent()
    await sock.send(type="send", room="secret", body="still here?", client_id="6f1c0c2e-0000-4000-8000-000000000001", ref="s1")
    assert (await sock.recv())["code"] == "not_joined"
    await sock.close()
