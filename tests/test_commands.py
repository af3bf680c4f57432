"""Slash commands (PROTOCOL.md 9): chat.commands' parser, and each command at the socket and
REST doors (the services read commands once, for every door)."""

import uuid

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat import commands, protocol, services
from chat.models import Message, Room
from tests.conftest import open_socket, session_cookie

SHRUG_HTML = "¯\\_(ツ)_/¯"


def cid() -> str:
    return uuid.uuid4().hex


def token_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- the parser -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("hello", commands.Text("hello", "hello")),
        ("/me waves", commands.Text("/me waves", "waves", emote=True)),
        ("/ME  waves\nback", commands.Text("/ME  waves\nback", "waves\nback", emote=True)),
        ("//me waves", commands.Text("/me waves", "/me waves")),
        ("//usr/bin", commands.Text("/usr/bin", "/usr/bin")),
        ("/shrug", commands.Text(commands.SHRUG_MARKDOWN, commands.SHRUG_MARKDOWN)),
        ("/shrug no idea", commands.Text(f"no idea {commands.SHRUG_MARKDOWN}", f"no idea {commands.SHRUG_MARKDOWN}")),
        ("/topic  Release  day ", commands.Action("topic", "Release  day")),
        ("/topic", commands.Action("topic", "")),
        ("/help", commands.Action("help", "")),
    ],
)
def test_parse_reads_each_command(body, expected):
    assert commands.parse(body.strip()) == expected


@pytest.mark.parametrize("body", ["/", "/frobnicate now", "/usr/bin/env", "/ me"])
def test_an_unknown_command_is_invalid_and_lists_the_commands(body):
    with pytest.raises(protocol.ChatError) as caught:
        commands.parse(body)
    assert caught.value.code == protocol.INVALID
    for usage in ("/me <text>", "/shrug [text]", "/topic <text>", "/help", "//"):
        assert usage in caught.value.detail


def test_me_without_text_and_actions_as_edits_are_invalid():
    for body, editing in (("/me", False), ("/topic x", True), ("/help", True)):
        with pytest.raises(protocol.ChatError) as caught:
            commands.parse(body, editing=editing)
        assert caught.value.code == protocol.INVALID


# --- the posting service (every door) -----------------------------------------------------


@pytest.mark.django_db
def test_me_is_stored_as_typed_in_italics_and_an_edit_reads_the_command_again(user, room):
    message, created = services.message_post(room=room, author=user, body="/me waves at @ann", client_id="c-1")
    assert created and message.body == "/me waves at @ann"
    assert message.html == '<p><em>waves at <span class="mention" data-user="ann">@ann</span></em></p>'
    assert message.mentions == ["ann"]
    # A retry of the same client_id is the original, with nothing new stored.
    again, created = services.message_post(room=room, author=user, body="/me waves at @ann", client_id="c-1")
    assert (again.pk, created, Message.objects.count()) == (message.pk, False, 1)

    edited = services.message_edit(message_id=message.pk, user=user, body="/me dances")
    assert (edited.body, edited.html) == ("/me dances", "<p><em>dances</em></p>")
    edited = services.message_edit(message_id=message.pk, user=user, body="dances")
    assert edited.html == "<p>dances</p>"
    with pytest.raises(protocol.ChatError) as caught:
        services.message_edit(message_id=message.pk, user=user, body="/topic nope")
    assert caught.value.code == protocol.INVALID
    assert Message.objects.get().body == "dances"


@pytest.mark.django_db
def test_shrug_and_double_slash_post_text(user, room):
    shrug, _ = services.message_post(room=room, author=user, body="/shrug no idea", client_id="c-1")
    assert shrug.html == f"<p>no idea {SHRUG_HTML}</p>"
    slash, _ = services.message_post(room=room, author=user, body="//me is not a command", client_id="c-2")
    assert (slash.body, slash.html) == ("/me is not a command", "<p>/me is not a command</p>")


@pytest.mark.django_db
def test_a_shrug_past_the_length_limit_is_invalid(user, room):
    with pytest.raises(protocol.ChatError) as caught:
        services.message_post(room=room, author=user, body="/shrug " + "x" * (Message.MAX_BODY - 7), client_id="c-1")
    assert caught.value.code == protocol.INVALID
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_commands_that_store_nothing_are_invalid_where_the_door_cannot_answer_them(user, room):
    for body in ("/help", "/topic quiet"):
        with pytest.raises(protocol.ChatError) as caught:
            services.message_post(room=room, author=user, body=body, client_id=cid())
        assert caught.value.code == protocol.INVALID
    room.refresh_from_db()
    assert room.topic == "" and not Message.objects.exists()


# --- the REST door ------------------------------------------------------------------------


@pytest.mark.django_db
def test_rest_help_answers_200_with_the_command_frame_and_stores_nothing(user, room):
    response = token_client(user).post(
        "/api/v1/rooms/lobby/messages/", {"body": "/help", "client_id": "c-1"}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == protocol.command_frame(room="lobby", text=commands.help_text(), client_id="c-1")
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_rest_topic_by_the_owner_sets_it_and_by_a_member_is_forbidden(user, other, room):
    url = "/api/v1/rooms/lobby/messages/"
    response = token_client(other).post(url, {"body": "/topic mine now", "client_id": "c-1"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, protocol.FORBIDDEN)
    assert Room.objects.get(pk=room.pk).topic == ""

    response = token_client(user).post(url, {"body": "/topic Release day", "client_id": "c-2"}, format="json")
    assert response.status_code == 200 and response.json()["type"] == protocol.COMMAND
    assert Room.objects.get(pk=room.pk).topic == "Release day"
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_rest_me_and_history_carry_the_italic_html(user, room):
    client = token_client(user)
    response = client.post("/api/v1/rooms/lobby/messages/", {"body": "/me waves", "client_id": "c-1"}, format="json")
    assert response.status_code == 201 and response.json()["html"] == "<p><em>waves</em></p>"
    (result,) = client.get("/api/v1/rooms/lobby/messages/").json()["results"]
    assert (result["body"], result["html"]) == ("/me waves", "<p><em>waves</em></p>")
    response = client.post("/api/v1/rooms/lobby/messages/", {"body": "/nope", "client_id": "c-2"}, format="json")
    assert response.status_code == 400 and "/shrug [text]" in response.json()["detail"]


# --- the socket door ----------------------------------------------------------------------


async def two_sockets(user, other):
    """ann (the room's owner) and bob, each with a socket that joined lobby."""
    socks = []
    for person in (user, other):
        sock, connected, _ = await open_socket(cookie=await database_sync_to_async(session_cookie)(person))
        assert connected
        assert (await sock.join("lobby"))["type"] == "joined"
        socks.append(sock)
    return socks


@pytest.mark.django_db(transaction=True)
async def test_socket_me_and_shrug_reach_everyone_as_messages(user, other, room):
    ann, bob = await two_sockets(user, other)
    await ann.send(type="send", room="lobby", body="/me waves", client_id="c-1", ref="r1")
    assert (await ann.recv_until("ack"))["client_id"] == "c-1"
    event = await bob.recv_until("message")
    assert (event["message"]["body"], event["message"]["html"]) == ("/me waves", "<p><em>waves</em></p>")

    await ann.send(type="send", room="lobby", body="/shrug", client_id="c-2")
    assert (await bob.recv_until("message"))["message"]["html"] == f"<p>{SHRUG_HTML}</p>"
    await ann.send(type="send", room="lobby", body="/dance", client_id="c-3", ref="r3")
    error = await ann.recv_until("error")
    assert (error["code"], error["ref"]) == (protocol.INVALID, "r3") and "/me <text>" in error["detail"]
    await ann.close()
    await bob.close()


@pytest.mark.django_db(transaction=True)
async def test_socket_topic_by_the_owner_updates_every_socket_and_by_a_member_is_forbidden(user, other, room):
    ann, bob = await two_sockets(user, other)
    await bob.send(type="send", room="lobby", body="/topic bob rules", client_id="b-1", ref="rb")
    error = await bob.recv_until("error")
    assert (error["code"], error["ref"]) == (protocol.FORBIDDEN, "rb")
    assert await ann.silent()

    await ann.send(type="send", room="lobby", body="/topic Release day", client_id="a-1", ref="ra")
    # The reply and the announcement come in either order (the announcement is sent on commit).
    frames = {frame["type"]: frame for frame in [await ann.recv(), await ann.recv()]}
    reply, update = frames["command"], frames["room.updated"]
    assert (reply["room"], reply["client_id"], reply["ref"]) == ("lobby", "a-1", "ra")
    assert (update["room"], update["topic"]) == ("lobby", "Release day")
    assert await bob.recv() == update
    room_now = await database_sync_to_async(Room.objects.get)(pk=room.pk)
    assert room_now.topic == "Release day"
    assert await database_sync_to_async(Message.objects.count)() == 0
    await ann.close()
    await bob.close()


@pytest.mark.django_db(transaction=True)
async def test_socket_help_goes_to_the_callers_socket_alone(user, other, room):
    ann, bob = await two_sockets(user, other)
    await ann.send(type="send", room="lobby", body="/help", client_id="a-1", ref="h")
    assert await ann.recv() == {
        "type": "command", "room": "lobby", "text": commands.help_text(), "client_id": "a-1", "ref": "h"
    }
    assert await bob.silent()
    assert await database_sync_to_async(Message.objects.count)() == 0
    await ann.close()
    await bob.close()
