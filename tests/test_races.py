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
from django.db import connection

from chat import realtime, services
from chat.models import Membership, Message, ModerationLog, Reaction, Report, Room, RoomEvent
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

    def record(*, room_id, frames):
        with lock:
            seen.extend(json.loads(f.text) for f in frames)
        original(room_id=room_id, frames=frames)

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
