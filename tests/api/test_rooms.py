"""Rooms: list, create, detail, PATCH (/api/v1/rooms/…)."""

import pytest
from django.test import Client

from chat import rules, services
from chat.models import Membership, Room, RoomBan
from tests.api.conftest import session_client
from tests.factories import make_room


def _slugs(response) -> list[str]:
    return [room["slug"] for room in response.json()]


# --- list -----------------------------------------------------------------------------


def test_list_shows_public_rooms_and_own_private_rooms_only(ann, bob, general, room, secret):
    make_room(slug="elsewhere", private=True)
    response = ann.get("/api/v1/rooms/")
    assert response.status_code == 200
    assert _slugs(response) == ["general", "lobby", "secret"]
    assert _slugs(bob.get("/api/v1/rooms/")) == ["general", "lobby"]


def test_list_items_carry_the_documented_fields(ann, room):
    lobby = next(r for r in ann.get("/api/v1/rooms/").json() if r["slug"] == "lobby")
    assert lobby == {
        "slug": "lobby", "name": "lobby", "topic": "", "private": False, "locked": False,
        "seq": 0, "role": "owner", "can_moderate": True, "unread": 0, "mentions": 0,
    }


def test_unread_counts_undeleted_messages_by_others_above_the_read_position(ann, user, other, room, settings):
    settings.CHAT_POST_RATE = "0"
    services.room_join(access=rules.room_access(user=other, room=room, door=rules.Door.API), user=other)
    services.message_post(room=room, author=user, body="mine", client_id="a1")  # own: not unread
    ids = [services.message_post(room=room, author=other, body=f"m{i}", client_id=f"b{i}")[0].pk for i in range(4)]
    services.message_delete(message_id=ids[0], user=other)  # deleted: not unread
    Membership.objects.filter(room=room, user=user).update(read_seq=3)  # read up to seq 3 (m0, m1)
    lobby = next(r for r in ann.get("/api/v1/rooms/").json() if r["slug"] == "lobby")
    assert lobby["unread"] == 2  # m2, m3
    assert lobby["seq"] == 6


def test_unread_is_zero_in_a_public_room_not_joined(ann, bob, user, room):
    services.message_post(room=room, author=user, body="hi", client_id="c1")
    lobby = next(r for r in bob.get("/api/v1/rooms/").json() if r["slug"] == "lobby")
    assert lobby["role"] is None and lobby["unread"] == 0 and lobby["seq"] == 1


def test_list_unauthenticated_is_401(anon, db):
    response = anon.get("/api/v1/rooms/")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


# --- create ---------------------------------------------------------------------------


def test_create_makes_the_caller_owner(ann, user):
    response = ann.post("/api/v1/rooms/", {"slug": "dev-team", "name": " Dev team ", "private": True}, format="json")
    assert response.status_code == 201
    assert response.json() == {
        "slug": "dev-team", "name": "Dev team", "topic": "", "private": True, "locked": False,
        "seq": 0, "role": "owner", "can_moderate": True, "unread": 0, "mentions": 0,
    }
    room = Room.objects.get(slug="dev-team")
    assert room.owner == user
    assert Membership.objects.get(room=room, user=user).role == "owner"


def test_create_without_name_uses_the_slug(ann):
    assert ann.post("/api/v1/rooms/", {"slug": "misc", "name": "  "}, format="json").json()["name"] == "misc"


@pytest.mark.parametrize(
    "data",
    [
        {"slug": "Has Caps"},
        {"slug": "-dash-first"},
        {"slug": "newline\n"},
        {"slug": ""},
        {"slug": "x" * 65},
        {"slug": "lobby"},  # taken
        {"name": "no slug"},
        {"slug": 5},
        {"slug": "ok", "private": "maybe"},
        {"slug": "ok", "name": "n" * 101},
    ],
)
def test_create_with_a_bad_or_taken_slug_is_a_400_invalid(ann, room, data):
    response = ann.post("/api/v1/rooms/", data, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert Room.objects.count() == 2  # general and lobby


def test_create_unauthenticated_is_401(anon, db):
    assert anon.post("/api/v1/rooms/", {"slug": "x"}, format="json").status_code == 401


def test_create_with_a_session_needs_the_csrf_token(user):
    client = session_client(user)
    response = client.post("/api/v1/rooms/", {"slug": "csrf"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Room.objects.filter(slug="csrf").exists()

    client.get("/api/docs/")
    from django.conf import settings

    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    assert client.post("/api/v1/rooms/", {"slug": "csrf"}, format="json", HTTP_X_CSRFTOKEN=token).status_code == 201


# --- detail ---------------------------------------------------------------------------


def test_detail_has_online_usernames(ann, room):
    response = ann.get("/api/v1/rooms/lobby/")
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "lobby" and body["role"] == "owner"
    assert body["online"] == []


@pytest.mark.parametrize("slug", ["secret", "nope", "BAD%20SLUG", "lobby%0A"])
def test_detail_of_a_private_room_of_others_or_no_room_is_404(bob, secret, slug):
    response = bob.get(f"/api/v1/rooms/{slug}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such room.", "code": "not_found"}


def test_detail_unauthenticated_is_401(anon, room):
    assert anon.get("/api/v1/rooms/lobby/").status_code == 401


# --- PATCH ----------------------------------------------------------------------------


def test_owner_renames_and_locks(ann, room):
    response = ann.patch("/api/v1/rooms/lobby/", {"name": "The lobby", "locked": True}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "The lobby" and response.json()["locked"] is True
    room.refresh_from_db()
    assert room.name == "The lobby" and room.locked


def test_moderator_may_patch_a_plain_member_may_not(ann, bob, other, user, room):
    Membership.objects.create(room=room, user=other, role="member")
    response = bob.patch("/api/v1/rooms/lobby/", {"locked": True}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    Membership.objects.filter(room=room, user=other).update(role="moderator")
    assert bob.patch("/api/v1/rooms/lobby/", {"locked": True}, format="json").status_code == 200
    room.refresh_from_db()
    assert room.locked


def test_locked_room_refuses_members_posts_with_room_locked(ann, bob, room):
    ann.patch("/api/v1/rooms/lobby/", {"locked": True}, format="json")
    response = bob.post("/api/v1/rooms/lobby/messages/", {"body": "hi", "client_id": "b1"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "room_locked"
    # The owner still may.
    assert ann.post("/api/v1/rooms/lobby/messages/", {"body": "hi", "client_id": "a1"}, format="json").status_code == 201


@pytest.mark.parametrize("data", [{"name": ""}, {"name": "   "}, {"name": "n" * 101}, {"locked": "yes"}, {"locked": 1}])
def test_patch_with_invalid_values_is_a_400(ann, room, data):
    response = ann.patch("/api/v1/rooms/lobby/", data, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    room.refresh_from_db()
    assert room.name == "lobby" and not room.locked


def test_patch_of_a_private_room_by_a_non_member_is_404(bob, secret):
    assert bob.patch("/api/v1/rooms/secret/", {"locked": True}, format="json").status_code == 404


def test_patch_unauthenticated_is_401_and_without_csrf_403(anon, user, room):
    assert anon.patch("/api/v1/rooms/lobby/", {"locked": True}, format="json").status_code == 401
    assert session_client(user).patch("/api/v1/rooms/lobby/", {"locked": True}, format="json").status_code == 403
    room.refresh_from_db()
    assert not room.locked


def test_can_moderate_tells_each_caller_their_rights(ann, bob, user, other, room):
    """Owner yes; member no; a room moderator yes until banned; the page gets the same answer."""

    def rights(client, slug="lobby"):
        listed = next(r for r in client.get("/api/v1/rooms/").json() if r["slug"] == slug)
        detail = client.get(f"/api/v1/rooms/{slug}/").json()
        assert listed["can_moderate"] == detail["can_moderate"]
        return listed["role"], detail["can_moderate"]

    def page(member):
        browser = Client()
        browser.force_login(member)
        return browser.get("/rooms/lobby/").content.decode()

    assert rights(ann) == ("owner", True)
    assert rights(bob) == (None, False)
    assert 'data-can-moderate="false"' in page(other) and 'data-can-moderate="true"' in page(user)
    Membership.objects.create(room=room, user=other, role=Membership.Role.MODERATOR)
    assert rights(bob) == ("moderator", True)
    assert 'data-can-moderate="true"' in page(other)
    RoomBan.objects.create(room=room, user=other)
    assert bob.get("/api/v1/rooms/lobby/").json()["can_moderate"] is False


def test_owner_sets_and_clears_the_topic(ann, room):
    response = ann.patch("/api/v1/rooms/lobby/", {"topic": "  Release week: ship on Friday  "}, format="json")
    assert response.status_code == 200 and response.json()["topic"] == "Release week: ship on Friday"
    room.refresh_from_db()
    assert room.topic == "Release week: ship on Friday"
    assert ann.patch("/api/v1/rooms/lobby/", {"topic": ""}, format="json").json()["topic"] == ""
    room.refresh_from_db()
    assert room.topic == ""


@pytest.mark.parametrize("topic", ["t" * 251, 7, None, "bad\u0000topic"])
def test_a_bad_topic_is_a_400_and_changes_nothing(ann, room, topic):
    room.topic = "kept"
    room.save()
    response = ann.patch("/api/v1/rooms/lobby/", {"topic": topic}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    room.refresh_from_db()
    assert room.topic == "kept"


def test_a_plain_member_may_not_set_the_topic(bob, other, room):
    Membership.objects.create(room=room, user=other, role="member")
    response = bob.patch("/api/v1/rooms/lobby/", {"topic": "mine now"}, format="json")
    assert response.status_code == 403
    room.refresh_from_db()
    assert room.topic == ""
