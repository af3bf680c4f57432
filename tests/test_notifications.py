"""chat.services.notifications: who a message notifies (stored with the message), the
`notification` frame on every socket of the user, and read state through every door."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from chat import rules, selectors, services
from chat.models import Membership, Notification
from tests.conftest import open_socket, session_cookie
from tests.factories import make_room, make_user
from tests.test_protocol import check


def kinds(message) -> dict[str, str]:
    return {n.user.username: n.kind for n in Notification.objects.filter(message=message).select_related("user")}


_ids = iter(range(1, 10**6))


def post(room, author, body):
    return services.message_post(room=room, author=author, body=body, client_id=f"c-{next(_ids)}")[0]


@pytest.fixture
def people(db):
    ann, bob, cat = make_user("ann"), make_user("bob"), make_user("cat")
    return ann, bob, cat


@pytest.mark.django_db
class TestWhoIsNotified:
    def test_a_mention_of_a_user_who_can_see_the_public_room(self, people):
        ann, bob, cat = people
        room = make_room(owner=ann, slug="pub")
        message = post(room, ann, "hi @bob and @nobody, @ann too")
        assert kinds(message) == {"bob": "mention"}

    def test_nobody_is_notified_inside_code(self, people):
        ann, bob, _ = people
        room = make_room(owner=ann, slug="pub")
        message = post(room, ann, "see `@bob` and\n\n```\n@bob\n```")
        assert kinds(message) == {}

    def test_a_private_room_notifies_its_members_only(self, people):
        ann, bob, cat = people
        room = make_room(owner=ann, slug="priv", private=True)
        Membership.objects.create(room=room, user=bob)
        message = post(room, ann, "@bob @cat")
        assert kinds(message) == {"bob": "mention"}

    def test_a_user_banned_from_the_room_is_not_notified(self, people):
        ann, bob, _ = people
        room = make_room(owner=ann, slug="pub")
        access = rules.room_access(user=ann, room=room, door=rules.Door.API)
        services.room_ban_set(access=access, actor=ann, user=bob)
        assert kinds(post(room, ann, "@bob")) == {}

    def test_at_room_from_the_owner_notifies_everyone_who_joined(self, people):
        ann, bob, cat = people
        room = make_room(owner=ann, slug="pub")
        Membership.objects.create(room=room, user=bob)
        make_user("dan")  # never joined
        message = post(room, ann, "@room standup, @cat you too")
        assert kinds(message) == {"bob": "room", "cat": "mention"}

    def test_at_room_from_a_member_is_plain_text(self, people):
        ann, bob, cat = people
        room = make_room(owner=ann, slug="pub")
        Membership.objects.create(room=room, user=bob)
        Membership.objects.create(room=room, user=cat)
        assert kinds(post(room, bob, "@room hello")) == {}

    def test_at_room_from_a_moderator(self, people):
        ann, bob, cat = people
        room = make_room(owner=ann, slug="pub")
        Membership.objects.create(room=room, user=bob, role=Membership.Role.MODERATOR)
        Membership.objects.create(room=room, user=cat)
        assert kinds(post(room, bob, "@room hello")) == {"ann": "room", "cat": "room"}

    def test_every_direct_message_notifies_the_other_person_once(self, people):
        ann, bob, _ = people
        dm, _ = services.dm_open(user=ann, username="bob")
        assert kinds(post(dm, ann, "hello")) == {"bob": "dm"}
        assert kinds(post(dm, ann, "hello @bob")) == {"bob": "dm"}

    def test_a_reply_notifies_the_root_author(self, people):
        """The replies' path passes reply_roots (not wired on this branch: see docs/protocol.md)."""
        ann, bob, _ = people
        room = make_room(owner=ann, slug="pub")
        message = post(room, bob, "a reply")
        with transaction.atomic():
            services.notify_for_posted(messages=[message], reply_roots={message.pk: ann.pk})
        assert kinds(message) == {"ann": "reply"}

    def test_an_edit_notifies_only_the_newly_mentioned_and_retracts_nothing(self, people):
        ann, bob, cat = people
        room = make_room(owner=ann, slug="pub")
        message = post(room, ann, "hi @bob")
        first = Notification.objects.get(message=message, user=bob)
        services.message_edit(message_id=message.pk, user=ann, body="hi @cat")
        services.message_edit(message_id=message.pk, user=ann, body="hi @bob @cat")
        assert kinds(message) == {"bob": "mention", "cat": "mention"}
        assert Notification.objects.get(message=message, user=bob).pk == first.pk

    def test_a_message_without_mentions_costs_no_notification_query(self, people):
        ann, _, _ = people
        room = make_room(owner=ann, slug="pub")
        post(room, ann, "warm up")
        with CaptureQueriesContext(connection) as queries:
            post(room, ann, "nothing to see here")
        assert not [q for q in queries.captured_queries if "chat_notification" in q["sql"]]


    def test_the_rule_is_asked_again_when_storing_what_the_rendering_found(self, people):
        """Those banned, removed or deactivated between the rendering and the store are not notified."""
        ann, bob, cat = people
        dan = make_user("dan")
        room = make_room(owner=ann, slug="priv", private=True)
        for user in (bob, cat, dan):
            Membership.objects.create(room=room, user=user)
        rendered = services.render_bodies([(room, "@bob @cat @dan")])[0]
        assert rendered.mention_ids == {"bob": bob.pk, "cat": cat.pk, "dan": dan.pk}
        access = rules.room_access(user=ann, room=room, door=rules.Door.API)
        services.room_ban_set(access=access, actor=ann, user=bob)
        Membership.objects.filter(room=room, user=cat).delete()
        dan.is_active = False
        dan.save(update_fields=["is_active"])
        message = post(room, ann, "hello")
        with transaction.atomic():
            stored = services.notify_for_posted(messages=[message], mentioned={message.pk: rendered.mention_ids})
        assert stored == [] and kinds(message) == {}

    def test_at_room_of_a_room_larger_than_one_insert_notifies_every_member(self, people, monkeypatch):
        """The INSERT is split in chunks (SQLite allows 32,766 parameters a statement)."""
        from chat.services import notifications

        monkeypatch.setattr(notifications, "INSERT_CHUNK", 2)
        ann, bob, cat = people
        room = make_room(owner=ann, slug="pub")
        members = [bob, cat] + [make_user(f"u{i}") for i in range(3)]
        for user in members:
            Membership.objects.create(room=room, user=user)
        assert kinds(post(room, ann, "@room meeting")) == {user.username: "room" for user in members}

    def test_a_batch_mentioning_many_stores_them_in_one_statement(self, people):
        ann, bob, cat = people
        room = make_room(owner=ann, slug="pub")
        posts = [services.Post(room=room, author=ann, body=f"hi @{name} {i}", client_id=f"m-{next(_ids)}")
                 for i, name in enumerate(["bob", "cat", "bob"])]
        with CaptureQueriesContext(connection) as queries:
            results = services.message_post_many(posts)
        assert [kinds(message) for message, _created in results] == [{"bob": "mention"}, {"cat": "mention"},
                                                                       {"bob": "mention"}]
        assert len([q for q in queries.captured_queries if "chat_notification" in q["sql"]]) == 1

@pytest.mark.django_db
class TestReadState:
    def test_moving_the_read_position_reads_the_notifications_up_to_it(self, people):
        ann, bob, _ = people
        room = make_room(owner=ann, slug="pub")
        Membership.objects.create(room=room, user=bob)
        first, second = post(room, ann, "@bob one"), post(room, ann, "@bob two")
        services.read_mark(room=room, user=bob, seq=first.seq)
        unread = Notification.objects.filter(user=bob, read_at__isnull=True)
        assert list(unread.values_list("message_id", flat=True)) == [second.pk]

    def test_joining_a_public_room_reads_what_notified_one_there(self, people):
        ann, bob, _ = people
        room = make_room(owner=ann, slug="pub")
        post(room, ann, "@bob come over")
        access = rules.room_access(user=bob, room=room, door=rules.Door.SOCKET)
        services.room_join(access=access, user=bob)
        assert not Notification.objects.filter(user=bob, read_at__isnull=True).exists()

    def test_the_room_list_counts_unread_notifications_per_room_in_one_query(self, people):
        ann, bob, _ = people
        rooms = [make_room(owner=ann, slug=f"r{i}") for i in range(3)]
        for room in rooms:
            Membership.objects.create(room=room, user=bob)
        post(rooms[0], ann, "@bob a")
        post(rooms[0], ann, "@bob b")
        post(rooms[2], ann, "@bob c")
        with CaptureQueriesContext(connection) as queries:
            mentions = {r.slug: r.mentions for r in selectors.rooms_for_user(user=bob)}
        assert (mentions["r0"], mentions["r1"], mentions["r2"]) == (2, 0, 1)
        assert len(queries.captured_queries) == 1


def _setup_sockets_case():
    ann, bob = make_user("ann"), make_user("bob")
    room = make_room(owner=ann, slug="pub")
    other = make_room(owner=bob, slug="elsewhere")
    return ann, bob, room, other, session_cookie(ann), session_cookie(bob)


@pytest.mark.django_db(transaction=True)
async def test_every_socket_of_the_mentioned_user_gets_the_frame_whatever_it_joined():
    ann, bob, room, other, ann_cookie, bob_cookie = await sync_to_async(_setup_sockets_case)()
    in_other, ok1, _ = await open_socket("/ws/chat/elsewhere/", cookie=bob_cookie)
    bare, ok2, _ = await open_socket(cookie=bob_cookie)  # joined nothing
    sender, ok3, _ = await open_socket("/ws/chat/pub/", cookie=ann_cookie)
    assert ok1 and ok2 and ok3
    assert (await in_other.recv())["type"] == "joined"
    assert (await sender.recv())["type"] == "joined"
    await sender.send(type="send", room="pub", body="ping @bob", client_id="m-1")
    frames = [await in_other.recv_until("notification"), await bare.recv_until("notification")]
    stored = await sync_to_async(lambda: Notification.objects.get(user=bob))()
    for frame in frames:
        wire = check("notification", frame)
        assert wire["notification"]["id"] == stored.pk
        assert (wire["notification"]["kind"], wire["notification"]["room"]) == ("mention", "pub")
        assert wire["notification"]["message"]["body"] == "ping @bob"
    # The author is not notified of their own message.
    assert (await sender.recv_until("ack"))["client_id"] == "m-1"
    assert await sender.silent(0.3)
    for socket in (in_other, bare, sender):
        await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_a_read_frame_reads_the_notifications_of_the_room():
    ann, bob, room, other, ann_cookie, bob_cookie = await sync_to_async(_setup_sockets_case)()
    message = await sync_to_async(post)(room, ann, "@bob look")
    reader, ok, _ = await open_socket("/ws/chat/pub/", cookie=bob_cookie)
    assert ok and (await reader.recv())["type"] == "joined"
    # The first join read the mention made before it; one made after waits for a `read`.
    second = await sync_to_async(post)(room, ann, "@bob again")
    await reader.recv_until("notification")
    unread = sync_to_async(lambda: list(Notification.objects.filter(user=bob, read_at__isnull=True).values_list("message_id", flat=True)))
    assert await unread() == [second.pk]
    await reader.send(type="read", room="pub", seq=second.seq)
    for _ in range(30):
        if not await unread():
            break
        await reader.comm.receive_nothing(0.1)
    assert await unread() == []
    assert message.pk != second.pk
    await reader.close()
