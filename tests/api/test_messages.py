"""Posting, editing and deleting messages over REST, with the socket's rules and codes."""

import math
import uuid

import pytest
from django.db import OperationalError
from django.utils import timezone

from chat import protocol, services
from chat.models import Membership, Message, Mute, RoomBan, RoomEvent
from tests.api.conftest import session_client, token_client
from tests.factories import make_user

URL = "/api/v1/rooms/lobby/messages/"


def _post(client, body="hi", client_id=None, url=URL):
    return client.post(url, {"body": body, "client_id": client_id or uuid.uuid4().hex}, format="json")


# --- post -----------------------------------------------------------------------------


def test_post_stores_trimmed_and_answers_201_with_message(ann, user, room, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _post(ann, body="  hello there \n", client_id="c-1")
    assert response.status_code == 201
    message = Message.objects.select_related("room", "author").get()
    assert response.json() == protocol.message_payload(message)
    assert response.json()["body"] == "hello there" and response.json()["seq"] == 1
    assert RoomEvent.objects.get().kind == "message"
    assert len(callbacks) == 1  # the broadcast, after commit


def test_repeated_client_id_answers_200_with_the_original_and_stores_nothing(ann, room, general):
    first = _post(ann, body="once", client_id="same")
    again = _post(ann, body="twice", client_id="same", url="/api/v1/rooms/general/messages/")
    assert again.status_code == 200
    assert again.json() == first.json()  # the original, in its own room
    assert Message.objects.count() == 1


def test_posting_in_a_public_room_joins_it(bob, other, room):
    assert _post(bob).status_code == 201
    assert Membership.objects.get(room=room, user=other).role == "member"


@pytest.mark.parametrize(
    "data",
    [
        {"body": "", "client_id": "x"},
        {"body": "   \n\t", "client_id": "x"},
        {"body": "a" * 4001, "client_id": "x"},
        {"body": "hi", "client_id": ""},
        {"body": "hi", "client_id": "x" * 65},
        {"body": "hi", "client_id": "tab\there"},
        {"body": "hi"},
        {"client_id": "x"},
        {"body": 5, "client_id": "x"},
        {"body": "hi", "client_id": 5},
    ],
)
def test_post_with_an_invalid_body_or_client_id_is_a_400_invalid(ann, room, data):
    response = ann.post(URL, data, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not Message.objects.exists()


def test_body_of_4000_characters_after_trimming_is_accepted(ann, room):
    assert _post(ann, body="  " + "é" * 4000 + "  ").status_code == 201


def test_malformed_json_is_a_400_bad_json(ann, room):
    response = ann.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_json"


def test_post_in_a_private_room_of_others_is_404(bob, secret):
    response = _post(bob, url="/api/v1/rooms/secret/messages/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert not Message.objects.exists()


def test_post_unauthenticated_is_401(anon, room):
    assert _post(anon).status_code == 401


def test_post_with_a_session_needs_the_csrf_token(user, room):
    response = _post(session_client(user))
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert not Message.objects.exists()


def test_muted_user_gets_403_muted(bob, other, room):
    Mute.objects.create(room=room, user=other)
    response = _post(bob)
    assert response.status_code == 403 and response.json()["code"] == "muted"


def test_banned_user_gets_403_forbidden(bob, other, room):
    RoomBan.objects.create(room=room, user=other, until=timezone.now() + timezone.timedelta(hours=1))
    response = _post(bob)
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


def test_posting_rate_is_shared_with_the_socket_and_answers_429_with_retry_after(ann, user, room, general, settings):
    settings.CHAT_POST_RATE = "3/30s"
    # Two by the socket's door (the same service), one over REST: the budget is spent.
    services.message_post(room=general, author=user, body="a", client_id="s1")
    services.message_post(room=general, author=user, body="b", client_id="s2")
    assert _post(ann).status_code == 201
    response = _post(ann)
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited" and 0 < body["retry_after"] <= 30
    assert response["Retry-After"] == str(math.ceil(body["retry_after"]))
    # A repeat of a stored client_id is not counted and still answered.
    assert _post(ann, client_id="s1").status_code == 200


def test_database_outage_is_a_503_unavailable(ann, room, monkeypatch):
    """The translation of OperationalError, whichever query raises it."""

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "message_post", down)
    response = _post(ann)
    assert response.status_code == 503
    assert response.json() == {"detail": "The database is unavailable; retry later.", "code": "unavailable"}


# --- edit -----------------------------------------------------------------------------


@pytest.fixture
def message(user, room):
    message, _ = services.message_post(room=room, author=user, body="typo", client_id="m1")
    return message


def test_author_edits_and_gets_the_message(ann, message, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = ann.patch(f"/api/v1/messages/{message.pk}/", {"body": " fixed "}, format="json")
    assert response.status_code == 200
    assert response.json()["body"] == "fixed" and response.json()["edited_at"] is not None
    assert RoomEvent.objects.filter(kind="message.edited", seq=2).exists()
    assert len(callbacks) == 1


def test_editing_another_users_message_is_403(bob, other, message):
    Membership.objects.create(room=message.room, user=other, role="moderator")
    response = bob.patch(f"/api/v1/messages/{message.pk}/", {"body": "mine now"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


@pytest.mark.parametrize("data", [{"body": ""}, {"body": "  "}, {}, {"body": "x" * 4001}, {"body": None}])
def test_edit_with_an_invalid_body_is_400(ann, message, data):
    response = ann.patch(f"/api/v1/messages/{message.pk}/", data, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    message.refresh_from_db()
    assert message.body == "typo"


def test_edit_in_a_locked_room_is_403_room_locked_for_members(bob, other, room):
    mine, _ = services.message_post(room=room, author=other, body="a", client_id="b1")
    room.locked = True
    room.save()
    response = bob.patch(f"/api/v1/messages/{mine.pk}/", {"body": "b"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "room_locked"


@pytest.mark.parametrize("message_id", ["999999", str(2**63), str(2**70)])
def test_edit_or_delete_of_no_such_message_is_404(ann, message, message_id):
    assert ann.patch(f"/api/v1/messages/{message_id}/", {"body": "x"}, format="json").status_code == 404
    assert ann.delete(f"/api/v1/messages/{message_id}/").status_code == 404


def test_messages_of_a_private_room_are_404_to_non_members(bob, user, secret):
    hidden, _ = services.message_post(room=secret, author=user, body="psst", client_id="p1")
    assert bob.patch(f"/api/v1/messages/{hidden.pk}/", {"body": "x"}, format="json").status_code == 404
    assert bob.delete(f"/api/v1/messages/{hidden.pk}/").status_code == 404
    hidden.refresh_from_db()
    assert not hidden.deleted and hidden.body == "psst"


def test_edit_and_delete_unauthenticated_are_401(anon, message):
    assert anon.patch(f"/api/v1/messages/{message.pk}/", {"body": "x"}, format="json").status_code == 401
    assert anon.delete(f"/api/v1/messages/{message.pk}/").status_code == 401


def test_edit_and_delete_with_a_session_need_the_csrf_token(user, message):
    client = session_client(user)
    assert client.patch(f"/api/v1/messages/{message.pk}/", {"body": "x"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/messages/{message.pk}/").status_code == 403
    message.refresh_from_db()
    assert message.body == "typo" and not message.deleted


# --- delete ---------------------------------------------------------------------------


def test_author_deletes_softly_and_history_shows_it_deleted(ann, message):
    assert ann.delete(f"/api/v1/messages/{message.pk}/").status_code == 204
    event = RoomEvent.objects.get(kind="message.deleted")
    assert event.by == "author"
    shown = ann.get(URL).json()["results"]
    assert [(m["id"], m["deleted"], m["body"]) for m in shown] == [(message.pk, True, "")]
    # Deleting again changes nothing and is still fine; editing it is 404.
    assert ann.delete(f"/api/v1/messages/{message.pk}/").status_code == 204
    assert RoomEvent.objects.filter(kind="message.deleted").count() == 1
    assert ann.patch(f"/api/v1/messages/{message.pk}/", {"body": "x"}, format="json").status_code == 404


def test_room_moderator_deletes_others_messages_a_member_may_not(message, other, room):
    cid = token_client(make_user("cid"))
    assert cid.delete(f"/api/v1/messages/{message.pk}/").status_code == 403
    Membership.objects.create(room=room, user=other, role="moderator")
    assert token_client(other).delete(f"/api/v1/messages/{message.pk}/").status_code == 204
    assert RoomEvent.objects.get(kind="message.deleted").by == "moderator"
