"""Changes to one message that arrive at the same moment (issue 13, "access under the lock").

Each round releases real threads together with a barrier; each thread calls a service on its
own database connection, as two requests or two sockets would. Whatever the interleaving, the
room's events (the rows the room feed replays, in seq order) must tell one consistent story:
one event per actual change, nothing shown live after its deletion, seqs without a gap, and
one moderation-log entry per logged change.

Runs on PostgreSQL (row locks) and on SQLite (IMMEDIATE transactions: one writer at a time).
"""

from __future__ import annotations

import json
import threading

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction

from chat import realtime, rules, services
from chat.models import Membership, Message, ModerationLog, Mute, Reaction, Report, Room, RoomEvent
from chat.protocol import ChatError
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 25
EDITED, DELETED = RoomEvent.Kind.EDITED, RoomEvent.Kind.DELETED


def _site_moderator(username: str):
    user = make_user(username, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="moderate", content_type__app_label="chat"))
    return user


def at_once(*calls) -> list:
    """Run ``calls`` in threads released together; return each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test judges it
            results[i] = exc
        finally:
            connection.close()  # each thread's own connection; the flush after the test needs them gone

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a caller is stuck (deadlock?)"
    return results


@pytest.fixture
def published(monkeypatch) -> list[dict]:
    """Every room-event frame announced after commit, decoded, in the order announced."""
    seen: list[dict] = []
    lock = threading.Lock()
    original = realtime.room_events_publish

    def record(rooms):
        with lock:
            seen.extend(json.loads(f.text) for _room_id, frames in rooms for f in frames)
        original(rooms)

    monkeypatch.setattr(realtime, "room_events_publish", record)
    return seen


@pytest.fixture(autouse=True)
def _no_rate(settings):
    settings.CHAT_POST_RATE = "0"  # every round posts as the same author


@pytest.fixture
def cast(db):
    """A public room with its owner, a room moderator, an author, and two staff moderators."""
    owner = make_user("owner")
    room = make_room(owner=owner, slug="race")
    moderator, author = make_user("mod"), make_user("author")
    Membership.objects.create(room=room, user=moderator, role=Membership.Role.MODERATOR)
    Membership.objects.create(room=room, user=author)
    return {"room": room, "owner": owner, "moderator": moderator, "author": author,
            "staff": _site_moderator("staff"), "staff2": _site_moderator("staff2")}


def kinds(message: Message) -> list[str]:
    return list(RoomEvent.objects.filter(message=message).order_by("seq").values_list("kind", flat=True))


def frames_about(published: list[dict], message: Message) -> list[dict]:
    about = [f for f in published if f.get("id") == message.pk or f.get("message", {}).get("id") == message.pk]
    return sorted(about, key=lambda f: f["seq"])


def assert_gap_free(room: Room) -> None:
    """The room's events are numbered 1..room.seq with no gap (no seq taken by a refusal)."""
    seqs = list(RoomEvent.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, Room.objects.get(pk=room.pk).seq + 1))


def post(cast, i: int) -> Message:
    return services.message_post(room=cast["room"], author=cast["author"], body=f"m{i}", client_id=f"c{i}")[0]


def test_an_edit_racing_a_delete_never_shows_the_message_after_its_deletion(cast, published):
    bad = []
    for i in range(ROUNDS):
        message = post(cast, i)
        edit, delete = at_once(
            lambda: services.message_edit(message_id=message.pk, user=cast["author"], body=f"edited {i}"),
            lambda: services.message_delete(message_id=message.pk, user=cast["moderator"]),
        )
        story = kinds(message)
        frames = frames_about(published, message)
        live_after_delete = any(
            f["type"] == EDITED and not f["message"]["deleted"]
            for f in frames if f["seq"] > min((g["seq"] for g in frames if g["type"] == DELETED), default=1 << 62)
        )
        ok = (
            story in (["message", DELETED], ["message", EDITED, DELETED])
            and Message.objects.get(pk=message.pk).deleted
            and not isinstance(delete, Exception)
            # The edit either came first or was refused as an edit of a deleted message.
            and (EDITED in story) == (not isinstance(edit, Exception))
            and (not isinstance(edit, Exception) or (isinstance(edit, ChatError) and edit.code == "not_found"))
            and not live_after_delete
        )
        if not ok:
            bad.append((i, story, repr(edit), repr(delete)))
    assert bad == [], f"{len(bad)}/{ROUNDS} rounds inconsistent: {bad[:3]}"
    assert_gap_free(cast["room"])


def test_two_deletes_at_once_announce_one_deletion_and_log_it_once(cast, published):
    bad = []
    for i in range(ROUNDS):
        message = post(cast, i)
        first, second = at_once(
            lambda: services.message_delete(message_id=message.pk, user=cast["moderator"], reason="a"),
            lambda: services.message_delete(message_id=message.pk, user=cast["owner"], reason="b"),
        )
        story = kinds(message)
        logged = ModerationLog.objects.filter(message=message, action=ModerationLog.Action.MESSAGE_DELETE).count()
        deleted_frames = [f for f in frames_about(published, message) if f["type"] == DELETED]
        # Deleting a deleted message changes nothing and is not an error (docs/decisions.md).
        ok = (
            story == ["message", DELETED]
            and len(deleted_frames) == 1
            and logged == 1
            and not isinstance(first, Exception)
            and not isinstance(second, Exception)
        )
        if not ok:
            bad.append((i, story, logged, repr(first), repr(second)))
    assert bad == [], f"{len(bad)}/{ROUNDS} rounds inconsistent: {bad[:3]}"
    assert_gap_free(cast["room"])


def _state_story_is_consistent(story: list[str], deleted: bool) -> bool:
    """Deletions and restores alternate (each event is a change) and the last one is the state."""
    changes = story[1:]
    if any(kind not in (EDITED, DELETED) for kind in changes):
        return False
    if any(a == b for a, b in zip(changes, changes[1:])) or (changes and changes[0] != DELETED):
        return False
    return deleted == (bool(changes) and changes[-1] == DELETED)


def test_restores_racing_a_delete_make_one_event_per_change(cast, published):
    """A deleted message; two staff restore it while a moderator deletes it again."""
    bad = []
    for i in range(ROUNDS):
        message = post(cast, i)
        services.message_delete(message_id=message.pk, user=cast["moderator"])
        results = at_once(
            lambda: services.message_restore(message_id=message.pk, actor=cast["staff"]),
            lambda: services.message_restore(message_id=message.pk, actor=cast["staff2"]),
            lambda: services.message_delete(message_id=message.pk, user=cast["moderator"]),
        )
        story = kinds(message)
        deleted = Message.objects.get(pk=message.pk).deleted
        restores = ModerationLog.objects.filter(message=message, action=ModerationLog.Action.MESSAGE_RESTORE).count()
        deletes = ModerationLog.objects.filter(message=message, action=ModerationLog.Action.MESSAGE_DELETE).count()
        ok = (
            _state_story_is_consistent(story, deleted)
            and restores == story.count(EDITED)
            and deletes == story.count(DELETED)
            and not any(isinstance(r, Exception) for r in results)
        )
        if not ok:
            bad.append((i, story, deleted, restores, deletes, [repr(r) for r in results]))
    assert bad == [], f"{len(bad)}/{ROUNDS} rounds inconsistent: {bad[:3]}"
    assert_gap_free(cast["room"])


def test_two_resolves_of_one_report_hide_the_message_once(cast, published):
    bad = []
    for i in range(ROUNDS):
        message = post(cast, i)
        report = Report.objects.create(message=message, reporter=cast["owner"], reason="spam")
        at_once(
            lambda: services.report_resolve(report_id=report.pk, actor=cast["staff"], hide=True),
            lambda: services.report_resolve(report_id=report.pk, actor=cast["staff2"], hide=True),
        )
        story = kinds(message)
        hides = ModerationLog.objects.filter(message=message, action=ModerationLog.Action.REPORT_HIDE).count()
        report.refresh_from_db()
        ok = story == ["message", DELETED] and hides == 1 and report.status == Report.Status.HIDDEN
        if not ok:
            bad.append((i, story, hides, report.status))
    assert bad == [], f"{len(bad)}/{ROUNDS} rounds inconsistent: {bad[:3]}"
    assert_gap_free(cast["room"])


def test_a_refused_change_takes_no_seq(cast):
    """An edit by someone else and a delete without the right change nothing, not even the seq."""
    message = post(cast, 0)
    outsider = make_user("outsider")
    for call in (
        lambda: services.message_edit(message_id=message.pk, user=cast["moderator"], body="not mine"),
        lambda: services.message_delete(message_id=message.pk, user=outsider),
        lambda: services.message_edit(message_id=message.pk, user=cast["author"], body="  "),
    ):
        with pytest.raises(ChatError):
            call()
    assert Room.objects.get(pk=cast["room"].pk).seq == 1
    assert kinds(message) == ["message"]


# --- room-level changes: the actor's access is read under the room's lock -------------------


def while_room_locked(room, change, act) -> list:
    """Run ``act`` while another thread holds the room's lock in a transaction that makes
    ``change`` (a callable) and commits it only once ``act`` has had time to wait on the lock
    (PostgreSQL's row lock, SQLite's write lock); return [act's result or exception]."""
    hold, release, outcome = threading.Event(), threading.Event(), []

    def holder():
        try:
            with transaction.atomic():
                rules.room_access(user=room.owner, room_id=room.pk, door=rules.Door.API, lock=True)
                change()
                hold.set()
                release.wait(10)
        finally:
            connection.close()

    def acting():
        try:
            outcome.append(act())
        except Exception as exc:  # noqa: BLE001 - the test judges it
            outcome.append(exc)
        finally:
            connection.close()

    holding = threading.Thread(target=holder)
    holding.start()
    assert hold.wait(10)
    waiting = threading.Thread(target=acting)
    waiting.start()
    waiting.join(0.5)  # it waits on the room's lock
    release.set()
    holding.join(10)
    waiting.join(10)
    return outcome


@pytest.mark.parametrize("change", ["mute", "ban", "lock", "add member", "remove member"])
def test_moderator_demoted_meanwhile_is_refused(change):
    """A moderator's change that waits on the lock of a demotion is judged on the demotion.

    The view loaded the moderator's access before the owner's demotion committed; the change
    must not be decided on that stale access (it was, before: the mute was stored and logged).
    """
    owner, moderator, target = make_user("owner"), make_user("mod"), make_user("target")
    room = make_room(slug="den", owner=owner, private=True)
    Membership.objects.create(room=room, user=moderator, role=Membership.Role.MODERATOR)
    Membership.objects.create(room=room, user=target, role=Membership.Role.MEMBER)
    stale = rules.room_access(user=moderator, room_id=room.pk, door=rules.Door.API)
    assert stale.can_moderate
    newcomer = make_user("newcomer")
    act = {
        "mute": lambda: services.mute_set(access=stale, actor=moderator, user=target),
        "ban": lambda: services.room_ban_set(access=stale, actor=moderator, user=target),
        "lock": lambda: services.room_update(access=stale, actor=moderator, locked=True),
        "add member": lambda: services.member_set(access=stale, actor=moderator, user=newcomer),
        "remove member": lambda: services.member_remove(access=stale, actor=moderator, user=target),
    }[change]
    demote = Membership.objects.filter(room=room, user=moderator).update
    outcome = while_room_locked(room, lambda: demote(role=Membership.Role.MEMBER), act)
    assert len(outcome) == 1 and isinstance(outcome[0], ChatError) and outcome[0].code == "forbidden", outcome
    room.refresh_from_db()
    assert not room.locked
    assert ModerationLog.objects.filter(room=room).count() == 0
    assert set(Membership.objects.filter(room=room).values_list("user__username", flat=True)) == {"owner", "mod", "target"}


@pytest.mark.parametrize("change", ["post", "edit"])
def test_mute_committed_while_waiting_is_seen(change):
    """A post or edit that waits on the lock of a mute is judged muted.

    On PostgreSQL a locking statement that waited still reads other tables as of its start:
    the access must be read after the lock, not in the statement that takes it.
    """
    owner, poster = make_user("owner"), make_user("poster")
    room = make_room(slug="den", owner=owner)
    message, _ = services.message_post(room=room, author=poster, body="first", client_id="c0")
    act = {
        "post": lambda: services.message_post(room=room, author=poster, body="hi", client_id="c1"),
        "edit": lambda: services.message_edit(message_id=message.pk, user=poster, body="changed"),
    }[change]
    mute = lambda: Mute.objects.create(room=room, user=poster, created_by=owner)  # noqa: E731
    outcome = while_room_locked(room, mute, act)
    assert len(outcome) == 1 and isinstance(outcome[0], ChatError) and outcome[0].code == "muted", outcome
    assert list(Message.objects.filter(room=room).values_list("body", flat=True)) == ["first"]


# --- replies and reactions (PROTOCOL.md 6) -----------------------------------------------------

REACTED = RoomEvent.Kind.REACTED


def test_two_identical_reacts_at_once_count_once_and_announce_once(cast, published):
    """Two sockets (or a double click) of one user send the same reaction at the same moment."""
    bad = []
    for i in range(ROUNDS):
        message = post(cast, i)
        results = at_once(
            lambda: services.reaction_add(message_id=message.pk, user=cast["author"], emoji="👍"),
            lambda: services.reaction_add(message_id=message.pk, user=cast["author"], emoji="👍"),
        )
        frames = [f for f in frames_about(published, message) if f["type"] == REACTED]
        stored = Reaction.objects.filter(message=message).count()
        ok = (
            kinds(message) == ["message", REACTED]
            and stored == 1
            and len(frames) == 1
            and frames[0]["reactions"] == [{"emoji": "👍", "count": 1, "users": ["author"]}]
            and not any(isinstance(r, Exception) for r in results)
        )
        if not ok:
            bad.append((i, kinds(message), stored, [repr(r) for r in results]))
    assert bad == [], f"{len(bad)}/{ROUNDS} rounds inconsistent: {bad[:3]}"
    assert_gap_free(cast["room"])


def test_a_react_racing_a_delete_never_lands_after_the_deletion(cast, published):
    bad = []
    for i in range(ROUNDS):
        message = post(cast, i)
        react, delete = at_once(
            lambda: services.reaction_add(message_id=message.pk, user=cast["owner"], emoji="🎉"),
            lambda: services.message_delete(message_id=message.pk, user=cast["moderator"]),
        )
        story = kinds(message)
        ok = (
            story in (["message", DELETED], ["message", REACTED, DELETED])
            and not isinstance(delete, Exception)
            and (REACTED in story) == (not isinstance(react, Exception))
            and (not isinstance(react, Exception) or (isinstance(react, ChatError) and react.code == "not_found"))
        )
        if not ok:
            bad.append((i, story, repr(react), repr(delete)))
    assert bad == [], f"{len(bad)}/{ROUNDS} rounds inconsistent: {bad[:3]}"
    assert_gap_free(cast["room"])


def test_replies_racing_the_deletion_of_another_reply_keep_the_count_exact(cast):
    root = post(cast, 0)
    first = services.message_post(room=cast["room"], author=cast["owner"], body="r", client_id="first",
                                  reply_to=root.pk)[0]
    results = at_once(
        *(lambda n=n: services.message_post(room=cast["room"], author=cast["author"], body=f"reply {n}",
                                            client_id=f"reply-{n}", reply_to=root.pk) for n in range(4)),
        lambda: services.message_delete(message_id=first.pk, user=cast["owner"]),
    )
    assert not any(isinstance(r, Exception) for r in results)
    root.refresh_from_db()
    live = Message.objects.filter(reply_to=root, deleted=False)
    assert root.reply_count == live.count() == 4
    assert root.last_reply_at == max(m.created_at for m in live)
    assert_gap_free(cast["room"])
