"""Incoming webhooks (PROTOCOL.md 9): made and revoked by a room's owner or moderators; the
URL's secret posts as the webhook's bot through the one posting service, with no session,
token or CSRF; the secret itself is stored nowhere."""

import hashlib
import json

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat.models import IncomingWebhook, Membership, Message
from tests.api.conftest import token_client
from tests.conftest import open_socket, session_cookie
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db

HOOKS = "/api/v1/rooms/{}/webhooks/"


def create(client, slug="builds", name="CI"):
    return client.post(HOOKS.format(slug), {"name": name}, format="json")


def hook(url, data=None, **kwargs):
    """POST to a webhook URL as a stranger would: no credentials, CSRF checks on."""
    client = APIClient(enforce_csrf_checks=True)
    if data is None:
        return client.post(url, **kwargs)
    return client.post(url, json.dumps(data), content_type="application/json", **kwargs)


@pytest.fixture
def builds(user):
    return make_room(owner=user, slug="builds")


@pytest.fixture
def url(ann, builds):
    response = create(ann)
    assert response.status_code == 201, response.content
    return response.json()["url"]


def test_the_owner_creates_a_webhook_whose_secret_is_shown_once_and_stored_hashed(ann, builds):
    response = create(ann)
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "CI" and body["url"].startswith("/hooks/") and body["url"].endswith("/")
    secret = body["url"][len("/hooks/"):-1]
    assert len(secret) >= 40
    webhook = IncomingWebhook.objects.select_related("bot__chat_bot").get(pk=body["id"])
    assert webhook.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(v) for v in IncomingWebhook.objects.values().get(pk=body["id"]).values()]
    assert not any(secret in value for value in stored)
    # Its bot: owned by the creator, a member of the room, named after the webhook.
    assert webhook.bot.chat_bot.owner.username == "ann" and webhook.bot.first_name == "CI"
    assert Membership.objects.filter(room=builds, user=webhook.bot).exists()

    listed = ann.get(HOOKS.format("builds")).json()
    assert listed == [{"id": body["id"], "name": "CI", "bot": webhook.bot.username, "created_at": body["created_at"]}]
    assert secret not in json.dumps(listed)


def test_a_member_who_does_not_moderate_cannot_create_or_list(ann, bob, other, builds):
    ann.post("/api/v1/rooms/builds/members/", {"username": "bob"}, format="json")
    response = create(bob)
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert bob.get(HOOKS.format("builds")).status_code == 403
    assert not IncomingWebhook.objects.exists()


def test_a_moderator_creates_one_and_a_private_room_is_404_to_others(ann, bob, other, user):
    make_room(owner=user, slug="secret", private=True)
    assert create(bob, "secret").status_code == 404
    ann.post("/api/v1/rooms/secret/members/", {"username": "bob", "role": "moderator"}, format="json")
    assert create(bob, "secret").status_code == 201


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_bad_name_is_a_400(ann, builds, name):
    response = create(ann, name=name)
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert not IncomingWebhook.objects.exists()


def test_a_post_to_the_url_is_a_message_by_the_webhooks_bot(url, builds):
    response = hook(url, {"text": "build #42 passed"})
    assert response.status_code == 201, response.content
    message = response.json()
    assert message["body"] == "build #42 passed" and message["room"] == "builds" and message["seq"] == 1
    assert message["author"]["bot"] is True and message["author"]["username"].startswith("ci-hook-")
    # Slack's form: payload=<json>.
    form = APIClient(enforce_csrf_checks=True).post(url, {"payload": json.dumps({"text": "deployed"})})
    assert form.status_code == 201 and form.json()["body"] == "deployed"
    assert list(Message.objects.order_by("seq").values_list("body", flat=True)) == ["build #42 passed", "deployed"]


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"data": b"{not json", "content_type": "application/json"}, "bad_json"),
        ({"data": b"[1, 2]", "content_type": "application/json"}, "bad_json"),
        ({"data": b'{"txt": "hi"}', "content_type": "application/json"}, "invalid"),
        ({"data": b'{"text": 5}', "content_type": "application/json"}, "invalid"),
        ({"data": b'{"text": "   "}', "content_type": "application/json"}, "invalid"),
        ({"data": json.dumps({"text": "x" * 4001}).encode(), "content_type": "application/json"}, "invalid"),
        ({"data": b'{"text": "a\\u0000b"}', "content_type": "application/json"}, "invalid"),
        ({"data": "payload=%7Bnope", "content_type": "application/x-www-form-urlencoded"}, "bad_json"),
    ],
)
def test_bad_input_is_a_400_with_the_apis_error_shape_and_nothing_is_stored(url, kwargs, code):
    response = APIClient().post(url, **kwargs)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code and response.json()["detail"]
    assert not Message.objects.exists()


def test_the_rooms_posting_rate_applies(url, settings):
    settings.CHAT_POST_RATE = "2/10s"
    assert hook(url, {"text": "1"}).status_code == 201
    assert hook(url, {"text": "2"}).status_code == 201
    limited = hook(url, {"text": "3"})
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1
    assert Message.objects.count() == 2


def test_the_rooms_rules_apply_a_locked_room_refuses(ann, url):
    ann.patch("/api/v1/rooms/builds/", {"locked": True}, format="json")
    response = hook(url, {"text": "hi"})
    assert response.status_code == 403 and response.json()["code"] == "room_locked"


def test_a_revoked_or_unknown_secret_is_a_404(ann, url):
    (webhook,) = ann.get(HOOKS.format("builds")).json()
    assert ann.delete(HOOKS.format("builds") + f"{webhook['id']}/").status_code == 204
    response = hook(url, {"text": "too late"})
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert ann.get(HOOKS.format("builds")).json() == []
    assert ann.delete(HOOKS.format("builds") + f"{webhook['id']}/").status_code == 404
    for unknown in ("/hooks/" + "a" * 43 + "/", "/hooks/x/", "/hooks/%00%00/"):
        assert hook(unknown, {"text": "hi"}).status_code == 404
    assert not Message.objects.exists()


def test_only_the_owner_or_a_moderator_revokes_and_only_in_its_room(ann, bob, other, url, user):
    (webhook,) = ann.get(HOOKS.format("builds")).json()
    make_room(owner=other, slug="bobs")
    assert bob.delete(HOOKS.format("bobs") + f"{webhook['id']}/").status_code == 404
    ann.post("/api/v1/rooms/builds/members/", {"username": "bob"}, format="json")
    assert bob.delete(HOOKS.format("builds") + f"{webhook['id']}/").status_code == 403
    assert hook(url, {"text": "still here"}).status_code == 201


def test_a_staff_moderator_revokes_in_the_admin(url, admin_client):
    webhook = IncomingWebhook.objects.get()
    response = admin_client.post("/admin/chat/incomingwebhook/", {"action": "revoke", "_selected_action": [webhook.pk]})
    assert response.status_code == 302
    assert hook(url, {"text": "hi"}).status_code == 404
    assert admin_client.get(f"/admin/chat/incomingwebhook/{webhook.pk}/change/").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_a_webhook_post_reaches_the_sockets_of_the_rooms_members():
    def setup():
        owner = make_user("ann")
        make_room(owner=owner, slug="builds")
        url = create(token_client(owner)).json()["url"]
        return session_cookie(owner), url

    cookie, url = await database_sync_to_async(setup)()
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected and (await sock.join("builds"))["type"] == "joined"
    response = await database_sync_to_async(hook)(url, {"text": "deploy finished"})
    assert response.status_code == 201
    frame = await sock.recv()
    assert frame["type"] == "message" and frame["message"]["body"] == "deploy finished"
    assert frame["message"]["author"]["bot"] is True
    await sock.close()
