"""Bots over REST (PROTOCOL.md 9): created, listed and ended by their owner; a bot token
authenticates; a bot posts only where it is a member, under every posting rule; MESSAGE
says ``author.bot``."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat import services
from chat.models import Bot, Membership, Message
from tests.factories import make_room

pytestmark = pytest.mark.django_db

BOTS = "/api/v1/bots/"


def bot_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def make_bot(owner, username="deploybot"):
    user, key = services.bot_create(owner=owner, username=username)
    return user, bot_client(key)


def post(client, slug, body, client_id):
    return client.post(f"/api/v1/rooms/{slug}/messages/", {"body": body, "client_id": client_id}, format="json")


def test_a_person_creates_lists_and_ends_a_bot(ann, user):
    created = ann.post(BOTS, {"username": "deploybot"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["username"] == "deploybot" and len(body["token"]) == 40
    bot = Bot.objects.select_related("user").get(user__username="deploybot")
    assert bot.owner == user and not bot.user.has_usable_password()

    listed = ann.get(BOTS).json()
    assert [(b["username"], b["token"]) for b in listed] == [("deploybot", body["token"])]

    # Its own token works at the REST API.
    me = bot_client(body["token"])
    assert me.get("/api/v1/rooms/").status_code == 200

    assert ann.delete(BOTS + "deploybot/").status_code == 204
    assert me.get("/api/v1/rooms/").status_code == 401
    assert ann.get(BOTS).json() == []
    assert not Token.objects.filter(user=bot.user).exists()
    # Ended, not removed: the name stays taken.
    again = ann.post(BOTS, {"username": "deploybot"}, format="json")
    assert again.status_code == 400 and again.json()["code"] == "invalid"


def test_only_the_owner_lists_and_ends_a_bot(ann, bob, user):
    make_bot(user)
    assert bob.get(BOTS).json() == []
    response = bob.delete(BOTS + "deploybot/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert ann.delete(BOTS + "nobody/").status_code == 404


@pytest.mark.parametrize("username", ["ann", "ANN", "deploy bot", "", "x" * 151, "bad\x00name"])
def test_a_taken_or_bad_username_is_a_400_and_nothing_is_made(ann, user, username):
    response = ann.post(BOTS, {"username": username}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid", response.content
    assert not Bot.objects.exists()


def test_a_bot_cannot_create_bots(user):
    _bot, client = make_bot(user)
    response = client.post(BOTS, {"username": "child"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert Bot.objects.count() == 1


def test_an_owner_has_at_most_CHAT_BOTS_PER_OWNER_bots(ann, user, settings):
    settings.CHAT_BOTS_PER_OWNER = 2
    for name in ("b1", "b2"):
        assert ann.post(BOTS, {"username": name}, format="json").status_code == 201
    response = ann.post(BOTS, {"username": "b3"}, format="json")
    assert response.status_code == 403 and "2 bots" in response.json()["detail"]
    # An ended bot frees its place.
    assert ann.delete(BOTS + "b1/").status_code == 204
    assert ann.post(BOTS, {"username": "b3"}, format="json").status_code == 201


def test_a_bot_is_refused_in_a_public_room_it_has_not_joined(user, general):
    bot, client = make_bot(user)
    response = post(client, "general", "hello", "c1")
    assert response.status_code == 403 and response.json()["code"] == "forbidden", response.content
    assert not Message.objects.exists()
    assert not Membership.objects.filter(user=bot).exists()  # posting does not join a bot


def test_a_member_bot_posts_and_author_bot_is_true_in_the_answer_and_history(ann, user, general):
    bot, client = make_bot(user)
    make_room(owner=user, slug="deploys")
    assert ann.post("/api/v1/rooms/deploys/members/", {"username": bot.username}, format="json").status_code == 201
    made = post(client, "deploys", "v1.2 is out", "c1")
    assert made.status_code == 201, made.content
    assert made.json()["author"] == {"id": bot.pk, "username": "deploybot", "bot": True}
    assert post(ann, "deploys", "thanks", "c2").json()["author"]["bot"] is False
    # A reply quotes the bot as a bot too.
    reply = ann.post("/api/v1/rooms/deploys/messages/",
                     {"body": "nice", "client_id": "c3", "reply_to": made.json()["id"]}, format="json")
    assert reply.json()["reply_to"]["author"]["bot"] is True

    history = ann.get("/api/v1/rooms/deploys/messages/").json()["results"]
    assert [(m["author"]["username"], m["author"]["bot"]) for m in history] == [
        ("deploybot", True), ("ann", False), ("ann", False)
    ]
    assert history[2]["reply_to"]["author"]["bot"] is True


def test_history_loads_the_bot_flag_with_the_authors_not_per_message(ann, user):
    room = make_room(owner=user, slug="busy")
    bots = [make_bot(user, f"bot{i}")[0] for i in range(4)]
    for bot in bots:
        Membership.objects.create(room=room, user=bot)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert ann.get("/api/v1/rooms/busy/messages/").status_code == 200
        return len(captured)

    services.message_post(room=room, author=bots[0], body="first", client_id="x0")
    one = queries()
    for i, bot in enumerate(bots):
        services.message_post(room=room, author=bot, body=f"m{i}", client_id=f"y{i}")
        services.message_post(room=room, author=user, body=f"h{i}", client_id=f"z{i}")
    assert queries() == one


def test_a_bot_is_under_mutes_and_the_posting_rate(ann, user, settings):
    settings.CHAT_POST_RATE = "2/10s"
    bot, client = make_bot(user)
    make_room(owner=user, slug="ops")
    ann.post("/api/v1/rooms/ops/members/", {"username": bot.username}, format="json")
    assert post(client, "ops", "one", "c1").status_code == 201
    assert post(client, "ops", "two", "c2").status_code == 201
    limited = post(client, "ops", "three", "c3")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    settings.CHAT_POST_RATE = "0"
    assert ann.post("/api/v1/rooms/ops/mutes/", {"username": bot.username}, format="json").status_code == 201
    muted = post(client, "ops", "four", "c4")
    assert muted.status_code == 403 and muted.json()["code"] == "muted"
    assert Message.objects.filter(author=bot).count() == 2


def test_a_staff_moderator_ends_a_bot_in_the_admin(user, general, admin_client):
    bot, client = make_bot(user)
    bot_row = Bot.objects.get(user=bot)
    response = admin_client.post("/admin/chat/bot/", {"action": "end", "_selected_action": [bot_row.pk]})
    assert response.status_code == 302
    assert client.get("/api/v1/rooms/").status_code == 401
    page = admin_client.get("/admin/chat/bot/")
    assert page.status_code == 200 and b"deploybot" in page.content and b"ann" in page.content

