"""Replies, threads, reactions and formatting over REST (PROTOCOL.md 6).

The socket door of the same rules is tests/test_reactions.py.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from chat import services
from chat.models import Membership, Message, Mute, Reaction, Room
from tests.factories import make_user
from tests.test_protocol import MESSAGE, mismatches

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate(settings):
    settings.CHAT_POST_RATE = "0"


def send(client, slug, body, client_id, **extra):
    return client.post(f"/api/v1/rooms/{slug}/messages/", {"body": body, "client_id": client_id, **extra}, format="json")


def test_a_reply_over_rest_and_its_thread(ann, bob, room, other):
    Membership.objects.create(room=room, user=other)
    root = send(ann, "lobby", "the *root*", "r").json()
    assert mismatches(root, MESSAGE) == [] and root["html"] == "<p>the <em>root</em></p>"
    replies = []
    for i in range(3):
        response = send(bob, "lobby", f"reply {i}", f"b{i}", reply_to=root["id"])
        assert response.status_code == 201
        replies.append(response.json())
    nested = send(ann, "lobby", "to a reply", "n", reply_to=replies[0]["id"]).json()
    assert nested["reply_to"]["id"] == root["id"]
    assert replies[0]["reply_to"] == {"id": root["id"], "author": root["author"], "excerpt": "the *root*"}

    thread = ann.get(f"/api/v1/messages/{root['id']}/thread/?limit=2").json()
    assert thread["root"]["reply_count"] == 4 and thread["has_more_after"] is True
    assert [m["body"] for m in thread["results"]] == ["reply 0", "reply 1"]
    rest = ann.get(f"/api/v1/messages/{root['id']}/thread/?after={thread['results'][-1]['seq']}").json()
    assert [m["body"] for m in rest["results"]] == ["reply 2", "to a reply"] and rest["has_more_after"] is False
    # The thread of a reply is its root's.
    assert bob.get(f"/api/v1/messages/{replies[1]['id']}/thread/").json()["root"]["id"] == root["id"]

    assert bob.delete(f"/api/v1/messages/{replies[2]['id']}/").status_code == 204
    history = ann.get("/api/v1/rooms/lobby/messages/").json()["results"]
    assert history[0]["id"] == root["id"] and history[0]["reply_count"] == 3
    assert history[0]["last_reply_at"] == nested["created_at"]


@pytest.mark.parametrize("reply_to", ["1", True, 1.5, [1], {"id": 1}, -1, 0, 2**63])
def test_a_mistyped_reply_to_is_invalid(ann, room, reply_to):
    response = send(ann, "lobby", "x", "c", reply_to=reply_to)
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert not Message.objects.exists()


def test_a_reply_to_what_is_not_there_is_404_and_stores_nothing(ann, room, secret):
    hidden = services.message_post(room=secret, author=room.owner, body="elsewhere", client_id="s")[0]
    gone = services.message_post(room=room, author=room.owner, body="gone", client_id="g")[0]
    services.message_delete(message_id=gone.pk, user=room.owner)
    for target in (hidden.pk, gone.pk, 10**9):
        response = send(ann, "lobby", "x", f"c{target}", reply_to=target)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert Message.objects.count() == 2


def test_a_thread_is_404_where_the_room_is_not_visible(ann, bob, secret):
    root = send(ann, "secret", "private", "p").json()
    assert bob.get(f"/api/v1/messages/{root['id']}/thread/").status_code == 404
    assert bob.get("/api/v1/messages/999999/thread/").status_code == 404
    assert ann.get(f"/api/v1/messages/{root['id']}/thread/?limit=0").status_code == 400


def test_reactions_over_rest(ann, bob, room, other):
    Membership.objects.create(room=room, user=other)
    message = send(ann, "lobby", "react to me", "m").json()
    url = f"/api/v1/messages/{message['id']}/reactions/"
    response = bob.post(url, {"emoji": "👍"}, format="json")
    assert response.status_code == 200 and mismatches(response.json(), MESSAGE) == []
    assert response.json()["reactions"] == [{"emoji": "👍", "count": 1, "users": ["bob"]}]
    seq = Room.objects.get(pk=room.pk).seq
    assert bob.post(url, {"emoji": "👍"}, format="json").json()["reactions"][0]["count"] == 1
    assert Room.objects.get(pk=room.pk).seq == seq  # no change, no event

    skin = "👍🏽"
    assert ann.post(url, {"emoji": skin}, format="json").status_code == 200
    removed = bob.delete(f"{url}{quote('👍')}/")
    assert removed.status_code == 200
    assert removed.json()["reactions"] == [{"emoji": skin, "count": 1, "users": ["ann"]}]
    assert ann.delete(f"{url}{quote(skin)}/").json()["reactions"] == []
    assert ann.delete(f"{url}{quote(skin)}/").status_code == 200  # nothing to remove: still 200
    assert ann.get("/api/v1/rooms/lobby/messages/").json()["results"][0]["reactions"] == []


@pytest.mark.parametrize("body", ['{"emoji": "nope"}', '{"emoji": "%s"}' % ("x" * 100), '{"emoji": "\\ud83d"}',
                                  '{"emoji": 5}', '{"emoji": ["\\ud83d\\udc4d"]}', "{}", '{"emoji": "👍👍"}'])
def test_bad_emoji_are_400_invalid(ann, room, body):
    message = send(ann, "lobby", "m", "m").json()
    response = ann.post(f"/api/v1/messages/{message['id']}/reactions/", body, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    bad = ann.delete(f"/api/v1/messages/{message['id']}/reactions/{quote('no')}/")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid")
    assert not Reaction.objects.exists()


def test_who_may_react_over_rest(ann, bob, room, secret, other):
    Membership.objects.create(room=room, user=other)
    message = send(ann, "lobby", "m", "m").json()
    private = send(ann, "secret", "p", "p").json()
    assert bob.post(f"/api/v1/messages/{private['id']}/reactions/", {"emoji": "👍"}, format="json").status_code == 404
    Mute.objects.create(room=room, user=other)
    muted = bob.post(f"/api/v1/messages/{message['id']}/reactions/", {"emoji": "👍"}, format="json")
    assert (muted.status_code, muted.json()["code"]) == (403, "muted")
    Mute.objects.all().delete()
    Room.objects.filter(pk=room.pk).update(locked=True)
    locked = bob.post(f"/api/v1/messages/{message['id']}/reactions/", {"emoji": "👍"}, format="json")
    assert (locked.status_code, locked.json()["code"]) == (403, "room_locked")
    Room.objects.filter(pk=room.pk).update(locked=False)
    ann.delete(f"/api/v1/messages/{message['id']}/")
    gone = bob.post(f"/api/v1/messages/{message['id']}/reactions/", {"emoji": "👍"}, format="json")
    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
    assert not Reaction.objects.exists()


def test_reactions_are_not_rate_limited_by_the_posting_rate(ann, room, settings):
    settings.CHAT_POST_RATE = "1/60s"
    message = send(ann, "lobby", "m", "m").json()
    for emoji in ["😀", "😁", "😂", "🤣", "😃"]:
        assert ann.post(f"/api/v1/messages/{message['id']}/reactions/", {"emoji": emoji}, format="json").status_code == 200
    assert send(ann, "lobby", "again", "m2").status_code == 429


def test_search_and_a_repeated_post_show_the_current_state(ann, bob, room, other):
    Membership.objects.create(room=room, user=other)
    message = send(ann, "lobby", "findable words", "f").json()
    bob.post(f"/api/v1/messages/{message['id']}/reactions/", {"emoji": "🎉"}, format="json")
    send(bob, "lobby", "a reply", "br", reply_to=message["id"])
    (found,) = ann.get("/api/v1/rooms/lobby/messages/?q=findable").json()["results"]
    assert (found["reply_count"], found["reactions"][0]["emoji"]) == (1, "🎉")
    again = send(ann, "lobby", "findable words", "f")
    assert again.status_code == 200 and again.json()["reactions"][0]["users"] == ["bob"]
    assert again.json()["reply_count"] == 1


def test_mentions_render_only_for_users_who_see_the_room(ann, secret, user):
    make_user("bob")
    response = send(ann, "secret", "hi @bob and @ann", "m")
    assert response.json()["mentions"] == ["ann"]
    assert response.json()["html"] == '<p>hi @bob and <span class="mention" data-user="ann">@ann</span></p>'
