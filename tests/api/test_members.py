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


@pytest.mark.django_db(transaction=True)
async def test_removed_member_of_a_private_room_is_kicked_from_it_at_once(user, other, general):
    from chat import services

    def setup():
        room = services.room_create(owner=user, slug="secret", private=True)
        Membership.objects.create(room=room, user=other)
        return session_cookie(other)

    cookie = await database_sync_to_async(setup)()
    sock, _, _ = await open_socket(cookie=cookie)
    assert (await sock.join("secret"))["type"] == "joined"
    status = await database_sync_to_async(lambda: token_client(user).delete(URL + "bob/").status_code)()
    assert status == 204
    frame = await sock.recv_until("kicked")
    assert frame["room"] == "secret"
    await sock.close()
