"""Replies, reactions and formatting (PROTOCOL.md 6) through the services and over the socket.

The REST door of the same rules is tests/api/test_threads.py; the races are in test_races.py.
"""

from __future__ import annotations

import importlib
import json

import pytest
from channels.db import database_sync_to_async
from django.apps import apps

from chat import protocol, selectors, services
from chat.models import Membership, Message, Mute, Reaction, Room, RoomEvent
from chat.protocol import ChatError
from tests.conftest import open_socket
from tests.factories import make_room, make_user
from tests.test_protocol import MESSAGE, FRAMES, mismatches


def state(message_id: int) -> dict:
    """MESSAGE of the message as history shows it now."""
    message = Message.objects.select_related("room").get(pk=message_id)
    page = selectors.message_history(room=message.room, after=message.seq - 1, limit=1)
    return protocol.message_payload(page.messages[0])


def post(room, author, body="hi", client_id=None, **extra) -> Message:
    client_id = client_id or f"c{Message.objects.count()}-{body[:10]}"
    return services.message_post(room=room, author=author, body=body, client_id=client_id, **extra)[0]


@pytest.fixture
def cast(db, settings):
    settings.CHAT_POST_RATE = "0"
    ann, bob, cid = make_user("ann"), make_user("bob"), make_user("cid")
    room = make_room(owner=ann, slug="lobby")
    for user in (bob, cid):
        Membership.objects.create(room=room, user=user)
    return {"room": room, "ann": ann, "bob": bob, "cid": cid}


# --- formatting -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_stored_message_has_its_html_and_mentions_of_users_who_see_the_room(cast):
    secret = make_room(owner=cast["ann"], slug="secret", private=True)
    Membership.objects.create(room=secret, user=cast["bob"])
    message = post(secret, cast["ann"], "hi **@bob** and @cid and @nobody `@bob`")
    wire = state(message.pk)
    assert wire["html"] == (
        '<p>hi <strong><span class="mention" data-user="bob">@bob</span></strong> and @cid and @nobody '
        "<code>@bob</code></p>"
    )
    assert wire["mentions"] == ["bob"]  # cid exists but is not a member of the private room
    assert wire["body"] == "hi **@bob** and @cid and @nobody `@bob`"


@pytest.mark.django_db
def test_an_edit_renders_the_new_body(cast):
    message = post(cast["room"], cast["ann"], "plain")
    services.message_edit(message_id=message.pk, user=cast["ann"], body="now *em* @cid")
    wire = state(message.pk)
    assert wire["html"] == '<p>now <em>em</em> <span class="mention" data-user="cid">@cid</span></p>'
    assert wire["mentions"] == ["cid"]


@pytest.mark.django_db
def test_hostile_markup_is_stored_sanitized(cast):
    message = post(cast["room"], cast["ann"], '[x](javascript:alert(1)) <img src=x onerror=alert(1)> `<script>`')
    html = state(message.pk)["html"]
    assert html == ("<p>[x](javascript:alert(1)) &lt;img src=x onerror=alert(1)&gt; "
                    "<code>&lt;script&gt;</code></p>")  # all of it text: no link, no image, no script


@pytest.mark.django_db
def test_the_data_migration_fills_html_in_batches(cast, monkeypatch):
    fill = importlib.import_module("chat.migrations.0006_fill_message_html")
    monkeypatch.setattr(fill, "BATCH", 2)
    ids = [post(cast["room"], cast["ann"], f"**m{i}** @bob", client_id=f"m{i}").pk for i in range(5)]
    Message.objects.filter(pk__in=ids).update(html="", mentions=[])
    fill.fill_html(apps, None)
    for message in Message.objects.filter(pk__in=ids):
        assert message.html == f'<p><strong>{message.body[2:4]}</strong> <span class="mention" data-user="bob">@bob</span></p>'
        assert message.mentions == ["bob"]


# --- replies ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reply_to_a_reply_joins_the_root_and_counts_are_kept(cast):
    root = post(cast["room"], cast["ann"], "root " + "x" * 200)
    first = post(cast["room"], cast["bob"], "first", reply_to=root.pk)
    second = post(cast["room"], cast["cid"], "second", reply_to=first.pk)
    assert state(second.pk)["reply_to"] == {
        "id": root.pk, "author": {"id": cast["ann"].pk, "username": "ann", "bot": False},
        "excerpt": ("root " + "x" * 200)[:120],
    }
    root_state = state(root.pk)
    assert root_state["reply_count"] == 2
    assert root_state["last_reply_at"] == protocol.timestamp(Message.objects.get(pk=second.pk).created_at)

    services.message_delete(message_id=second.pk, user=cast["cid"])
    deleted = RoomEvent.objects.get(message=second, kind=RoomEvent.Kind.DELETED)
    frames = selectors.event_frames(room_id=cast["room"].pk, after=deleted.seq - 1, upto=deleted.seq)
    assert json.loads(frames[0].text)["reply_to"] == root.pk
    root_state = state(root.pk)
    assert root_state["reply_count"] == 1
    assert root_state["last_reply_at"] == protocol.timestamp(Message.objects.get(pk=first.pk).created_at)

    staff = make_user("staff", is_staff=True, is_superuser=True)
    services.message_restore(message_id=second.pk, actor=staff)
    assert state(root.pk)["reply_count"] == 2


@pytest.mark.django_db
def test_replies_to_what_is_not_there_are_not_found_and_store_nothing(cast):
    root = post(cast["room"], cast["ann"], "root")
    elsewhere = post(make_room(owner=cast["ann"], slug="elsewhere"), cast["ann"], "other room")
    gone = post(cast["room"], cast["ann"], "gone")
    services.message_delete(message_id=gone.pk, user=cast["ann"])
    before = (Message.objects.count(), Room.objects.get(pk=cast["room"].pk).seq)
    for target in (elsewhere.pk, gone.pk, 0, 10**12):
        with pytest.raises(ChatError) as refused:
            post(cast["room"], cast["bob"], "reply", client_id=f"r{target}", reply_to=target)
        assert refused.value.code == protocol.NOT_FOUND
    assert (Message.objects.count(), Room.objects.get(pk=cast["room"].pk).seq) == before
    assert state(root.pk)["reply_count"] == 0


@pytest.mark.django_db
def test_a_batch_of_replies_counts_each_once(cast):
    root = post(cast["room"], cast["ann"], "root")
    posts = [services.Post(room=cast["room"], author=cast["bob"], body=f"r{i}", client_id=f"b{i}", reply_to=root.pk)
             for i in range(3)]
    posts.append(posts[0])  # a retry in the same batch
    results = services.message_post_many(posts)
    assert [created for _m, created in results] == [True, True, True, False]
    assert state(root.pk)["reply_count"] == 3


# --- reactions --------------------------------------------------------------------------------


def reacted_frames(room) -> list[dict]:
    events = RoomEvent.objects.filter(room=room, kind=RoomEvent.Kind.REACTED).order_by("seq")
    frames = selectors.event_frames(room_id=room.pk, after=0, upto=Room.objects.get(pk=room.pk).seq)
    seqs = set(events.values_list("seq", flat=True))
    return [json.loads(f.text) for f in frames if f.seq in seqs]


@pytest.mark.django_db
def test_reactions_keep_the_order_of_first_use_and_noops_take_no_seq(cast):
    message = post(cast["room"], cast["ann"], "hello")
    room = cast["room"]
    services.reaction_add(message_id=message.pk, user=cast["bob"], emoji="👍")
    services.reaction_add(message_id=message.pk, user=cast["ann"], emoji="🎉")
    services.reaction_add(message_id=message.pk, user=cast["ann"], emoji="👍")
    seq = Room.objects.get(pk=room.pk).seq
    again = services.reaction_add(message_id=message.pk, user=cast["ann"], emoji="👍")
    services.reaction_remove(message_id=message.pk, user=cast["cid"], emoji="👍")
    assert Room.objects.get(pk=room.pk).seq == seq  # neither changed anything
    expected = [{"emoji": "👍", "count": 2, "users": ["bob", "ann"]}, {"emoji": "🎉", "count": 1, "users": ["ann"]}]
    assert protocol.message_payload(again)["reactions"] == expected
    assert state(message.pk)["reactions"] == expected
    frames = reacted_frames(room)
    assert len(frames) == 3 and all(mismatches(f, FRAMES["message.reacted"]) == [] for f in frames)
    # A replay carries the current list, whichever change the event was.
    assert all(f["reactions"] == expected for f in frames)

    services.reaction_remove(message_id=message.pk, user=cast["bob"], emoji="👍")
    assert state(message.pk)["reactions"] == [{"emoji": "👍", "count": 1, "users": ["ann"]},
                                              {"emoji": "🎉", "count": 1, "users": ["ann"]}]


@pytest.mark.django_db
def test_two_spellings_of_one_emoji_count_once(cast):
    message = post(cast["room"], cast["ann"], "hello")
    services.reaction_add(message_id=message.pk, user=cast["bob"], emoji="❤")
    services.reaction_add(message_id=message.pk, user=cast["bob"], emoji="❤️")
    assert state(message.pk)["reactions"] == [{"emoji": "❤️", "count": 1, "users": ["bob"]}]


@pytest.mark.django_db
def test_users_list_at_most_20_names_and_count_is_exact(cast):
    message = post(cast["room"], cast["ann"], "popular")
    for i in range(23):
        services.reaction_add(message_id=message.pk, user=make_user(f"fan{i:02}"), emoji="🔥")
    (entry,) = state(message.pk)["reactions"]
    assert entry["count"] == 23 and entry["users"] == [f"fan{i:02}" for i in range(20)]


@pytest.mark.django_db
def test_a_21st_distinct_emoji_is_invalid(cast):
    message = post(cast["room"], cast["ann"], "many")
    emoji = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰", "😗", "😙",
             "🥲", "😚", "🙂", "🤗"]
    for e in emoji[:20]:
        services.reaction_add(message_id=message.pk, user=cast["bob"], emoji=e)
    with pytest.raises(ChatError) as refused:
        services.reaction_add(message_id=message.pk, user=cast["cid"], emoji=emoji[20])
    assert refused.value.code == protocol.INVALID
    services.reaction_add(message_id=message.pk, user=cast["cid"], emoji=emoji[0])  # a used one still goes
    assert len(state(message.pk)["reactions"]) == 20


@pytest.mark.django_db
@pytest.mark.parametrize("emoji", ["", "a", "👍👍", "🏻", "x" * 5000, "\ud83d", "👍\x00", 5, None, ["👍"]])
def test_anything_but_one_emoji_is_invalid(cast, emoji):
    message = post(cast["room"], cast["ann"], "hello")
    with pytest.raises(ChatError) as refused:
        services.reaction_add(message_id=message.pk, user=cast["bob"], emoji=emoji)
    assert refused.value.code == protocol.INVALID
    assert not Reaction.objects.exists()


@pytest.mark.django_db
def test_who_may_react(cast):
    message = post(cast["room"], cast["ann"], "hello")
    Mute.objects.create(room=cast["room"], user=cast["bob"])
    secret = post(make_room(owner=cast["ann"], slug="secret", private=True), cast["ann"], "secret")
    cases = [(message.pk, cast["bob"], protocol.MUTED), (secret.pk, cast["cid"], protocol.NOT_FOUND)]
    for message_id, user, code in cases:
        with pytest.raises(ChatError) as refused:
            services.reaction_add(message_id=message_id, user=user, emoji="👍")
        assert refused.value.code == code
    Room.objects.filter(pk=cast["room"].pk).update(locked=True)
    with pytest.raises(ChatError) as refused:
        services.reaction_add(message_id=message.pk, user=cast["cid"], emoji="👍")
    assert refused.value.code == protocol.ROOM_LOCKED
    services.reaction_add(message_id=message.pk, user=cast["ann"], emoji="👍")  # the owner moderates
    assert not Reaction.objects.exclude(user=cast["ann"]).exists()


@pytest.mark.django_db
def test_a_moderators_delete_hides_reactions_and_refuses_new_ones(cast):
    message = post(cast["room"], cast["bob"], "hello")
    services.reaction_add(message_id=message.pk, user=cast["cid"], emoji="👍")
    services.message_delete(message_id=message.pk, user=cast["ann"])
    wire = state(message.pk)
    assert (wire["deleted"], wire["body"], wire["html"], wire["reactions"]) == (True, "", "", [])
    with pytest.raises(ChatError) as refused:
        services.reaction_add(message_id=message.pk, user=cast["cid"], emoji="🎉")
    assert refused.value.code == protocol.NOT_FOUND
    replayed = reacted_frames(cast["room"])
    assert replayed[0]["reactions"] == []


@pytest.mark.django_db
def test_reactions_do_not_count_against_the_posting_rate(cast, settings):
    settings.CHAT_POST_RATE = "2/60s"
    message = post(cast["room"], cast["ann"], "hello", client_id="rate-1")
    for emoji in ["😀", "😁", "😂", "🤣"]:
        services.reaction_add(message_id=message.pk, user=cast["ann"], emoji=emoji)
    post(cast["room"], cast["ann"], "second", client_id="rate-2")  # the rate's second post still goes
    with pytest.raises(ChatError) as refused:
        post(cast["room"], cast["ann"], "third", client_id="rate-3")
    assert refused.value.code == protocol.RATE_LIMITED


@pytest.mark.django_db
def test_history_costs_the_same_queries_with_replies_and_reactions(cast, django_assert_max_num_queries):
    root = post(cast["room"], cast["ann"], "root")
    for i in range(30):
        reply = post(cast["room"], cast["bob"], f"reply {i}", client_id=f"h{i}", reply_to=root.pk)
        services.reaction_add(message_id=reply.pk, user=cast["cid"], emoji="👍")
    with django_assert_max_num_queries(4):  # the page, the far-side probe, the attachments, the reactions
        page = selectors.message_history(room=cast["room"], limit=50)
        payloads = [protocol.message_payload(m) for m in page.messages]
    assert all(mismatches(p, MESSAGE) == [] for p in payloads)
    assert payloads[0]["reply_count"] == 30 and payloads[-1]["reactions"][0]["count"] == 1


# --- the socket door --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_socket_reply_react_and_resume(ann_cookie, bob_cookie, user, other, general, settings):
    settings.CHAT_POST_RATE = "0"
    ann, _ = await _joined(ann_cookie)
    bob, _ = await _joined(bob_cookie)
    await ann.send(type="send", room="general", body="root **b**", client_id="r1", ref="a")
    ack = await ann.recv_until("ack")
    root_frame = await bob.recv_until("message")
    assert root_frame["message"]["html"] == "<p>root <strong>b</strong></p>"

    await bob.send(type="send", room="general", body="reply", client_id="r2", reply_to=ack["id"])
    reply = await _next_message(ann, lambda m: m["id"] != ack["id"])
    assert reply["reply_to"]["id"] == ack["id"] and reply["reply_to"]["excerpt"] == "root **b**"

    await bob.send(type="react", id=ack["id"], emoji="👍", ref="x")
    reacted = await ann.recv_until("message.reacted")
    assert mismatches(reacted, FRAMES["message.reacted"]) == []
    assert reacted["reactions"] == [{"emoji": "👍", "count": 1, "users": ["bob"]}]
    assert (await bob.recv_until("message.reacted"))["seq"] == reacted["seq"]  # the sender too, no other reply
    await bob.send(type="react", id=ack["id"], emoji="👍")  # again: nothing at all
    assert await bob.silent() and await ann.silent()

    await bob.send(type="unreact", id=ack["id"], emoji="👍")
    unreacted = await ann.recv_until("message.reacted")
    assert (unreacted["reactions"], unreacted["seq"]) == ([], reacted["seq"] + 1)

    for sock in (ann, bob):
        await sock.close()
    # Resume after a gap: every event in seq order, each with the current state.
    late, joined = await _joined(ann_cookie, since=root_frame["seq"] - 1)
    frames = [await late.recv() for _ in range(joined["seq"] - root_frame["seq"] + 1)]
    assert [f["type"] for f in frames] == ["message", "message", "message.reacted", "message.reacted"]
    assert [f["seq"] for f in frames] == list(range(root_frame["seq"], joined["seq"] + 1))
    assert frames[0]["message"]["reply_count"] == 1
    assert all(f["reactions"] == [] for f in frames[2:])
    await late.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "frame, code",
    [
        ({"type": "react", "id": 1, "emoji": "nope"}, "invalid"),
        ({"type": "react", "id": 1, "emoji": "x" * 60000}, "invalid"),
        ({"type": "react", "id": 1, "emoji": "\ud83d"}, "invalid"),
        ({"type": "react", "id": 1, "emoji": 7}, "bad_frame"),
        ({"type": "unreact", "id": "1", "emoji": "👍"}, "bad_frame"),
        ({"type": "react", "id": 999999, "emoji": "👍"}, "not_found"),
        ({"type": "send", "room": "general", "body": "x", "client_id": "h1", "reply_to": "1"}, "bad_frame"),
        ({"type": "send", "room": "general", "body": "x", "client_id": "h2", "reply_to": True}, "bad_frame"),
        ({"type": "send", "room": "general", "body": "x", "client_id": "h3", "reply_to": [1]}, "bad_frame"),
        ({"type": "send", "room": "general", "body": "x", "client_id": "h4", "reply_to": 999999}, "not_found"),
    ],
)
async def test_socket_hostile_react_and_reply_frames_get_a_clear_error(ann_cookie, user, general, frame, code):
    message = await database_sync_to_async(post)(general, user, "target", "t1")
    sock, _ = await _joined(ann_cookie)
    if frame.get("id") == 1:
        frame = {**frame, "id": message.pk}
    await sock.send(**frame, ref="h")
    error = await sock.recv_until("error")
    assert (error["code"], error["ref"]) == (code, "h")
    assert await database_sync_to_async(Reaction.objects.count)() == 0
    assert await database_sync_to_async(Message.objects.count)() == 1
    await sock.close()


async def _next_message(sock, wanted) -> dict:
    while True:
        frame = await sock.recv_until("message")
        if wanted(frame["message"]):
            return frame["message"]


async def _joined(cookie, room="general", **extra):
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected
    joined = await sock.join(room, **extra)
    assert joined["type"] == "joined", joined
    return sock, joined
