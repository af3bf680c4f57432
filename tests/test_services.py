"""Services against the configured database (SQLite by default, PostgreSQL in CI's second run)."""

import threading
import time

import pytest
from django.db import connection, transaction

from chat import protocol, realtime, services
from chat.services import messages
from chat.models import Message, Room, RoomEvent
from chat.protocol import ChatError
from tests.factories import make_room, make_user


@pytest.fixture
def published(monkeypatch):
    """Room events announced to the channel layer, in order."""
    sent = []
    monkeypatch.setattr(realtime, "room_events_publish", lambda rooms: sent.extend((room_id, f.seq) for room_id, frames in rooms for f in frames))
    return sent


@pytest.mark.django_db(transaction=True)
def test_seq_is_gap_free_and_increasing_under_concurrent_posts(settings, published):
    settings.CHAT_POST_RATE = "0"
    room = make_room(slug="busy")
    authors = [make_user() for _ in range(6)]
    errors = []

    def post_many(author):
        try:
            for i in range(15):
                services.message_post(room=room, author=author, body=f"m{i}", client_id=f"{author.pk}-{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post_many, args=(a,)) for a in authors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 91))
    assert list(RoomEvent.objects.filter(room=room).order_by("seq").values_list("seq", flat=True)) == seqs
    assert Room.objects.get(pk=room.pk).seq == 90
    # Every event was announced once, after its commit.
    assert sorted(seq for _, seq in published) == seqs
    # Each author's own messages are in the order that author posted them.
    for author in authors:
        bodies = list(Message.objects.filter(author=author).order_by("seq").values_list("body", flat=True))
        assert bodies == [f"m{i}" for i in range(15)]


@pytest.mark.django_db(transaction=True)
def test_a_failed_transaction_stores_and_broadcasts_nothing(published, monkeypatch):
    room = make_room(slug="fragile")
    author = make_user()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.message_post(room=room, author=author, body="hi", client_id="c1")
            raise RuntimeError("rolled back")
    # After the message's rows are inserted (attach runs next, on both databases' paths).
    monkeypatch.setattr(messages.attachments, "attach", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        services.message_post(room=room, author=author, body="hi", client_id="c2")
    assert published == []
    assert Message.objects.count() == 0
    assert Room.objects.get(pk=room.pk).seq == 0


@pytest.mark.django_db
def test_broadcast_happens_on_commit(published, django_capture_on_commit_callbacks):
    room = make_room()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.message_post(room=room, author=make_user(), body="hi", client_id="c1")
    assert published == [] and len(callbacks) == 1
    callbacks[0]()
    assert published == [(room.pk, 1)]


@pytest.mark.django_db
def test_repeated_client_id_returns_the_original_in_any_room(published, django_capture_on_commit_callbacks):
    author = make_user()
    first_room, second_room = make_room(), make_room()
    with django_capture_on_commit_callbacks(execute=True):
        message, created = services.message_post(room=first_room, author=author, body="hi", client_id="c1")
    with django_capture_on_commit_callbacks(execute=True):
        again, created_again = services.message_post(room=second_room, author=author, body="other", client_id="c1")
    assert created and not created_again
    assert (again.pk, again.room.slug, again.seq) == (message.pk, first_room.slug, 1)
    assert Message.objects.count() == 1 and len(published) == 1
    # The same client_id of another author is another message.
    _, created_other = services.message_post(room=first_room, author=make_user(), body="hi", client_id="c1")
    assert created_other


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, stored",
    [(" \n hi \t", "hi"), ("😀" * 4000, "😀" * 4000), ("a\nb", "a\nb")],
)
def test_body_is_trimmed_and_limited_in_code_points(body, stored, published):
    message, _ = services.message_post(room=make_room(), author=make_user(), body=body, client_id="c")
    assert message.body == stored


@pytest.mark.django_db
@pytest.mark.parametrize("body, client_id", [("", "c"), ("  \n ", "c"), ("x" * 4001, "c"), ("hi", ""), ("hi", "c" * 65)])
def test_invalid_posts_store_nothing(body, client_id, published):
    with pytest.raises(ChatError) as refused:
        services.message_post(room=make_room(), author=make_user(), body=body, client_id=client_id)
    assert refused.value.code == protocol.INVALID
    assert Message.objects.count() == 0 and published == []


@pytest.mark.django_db
def test_posting_rate_is_a_sliding_window_per_user(settings, published):
    settings.CHAT_POST_RATE = "2/10s"
    room, author = make_room(), make_user()
    started = time.monotonic()
    for i in range(2):
        services.message_post(room=room, author=author, body="hi", client_id=f"c{i}")
    with pytest.raises(ChatError) as refused:
        services.message_post(room=make_room(), author=author, body="hi", client_id="c2")
    # Until the first of the two leaves the window.
    assert refused.value.code == protocol.RATE_LIMITED
    assert 10 - (time.monotonic() - started) - 0.1 <= refused.value.retry_after <= 10
    # Another user has a budget of their own.
    services.message_post(room=room, author=make_user(), body="hi", client_id="c0")
    # Once the window has passed, posting works again.
    Message.objects.filter(author=author).update(created_at=Message.objects.get(client_id="c0", author=author).created_at.replace(year=2000))
    services.message_post(room=room, author=author, body="hi", client_id="c3")


@pytest.mark.django_db
def test_old_events_are_pruned_but_the_last_500_are_kept(settings, published):
    settings.CHAT_POST_RATE = "0"
    room, author = make_room(), make_user()
    for i in range(700):
        services.message_post(room=room, author=author, body="hi", client_id=f"c{i}")
    seqs = list(RoomEvent.objects.filter(room=room).values_list("seq", flat=True))
    assert min(seqs) <= 700 - services.EVENTS_KEPT + 1 and max(seqs) == 700
    assert len(seqs) < 700


@pytest.mark.django_db
def test_delete_by_a_room_moderator_says_moderator(published):
    owner, author = make_user(), make_user()
    room = make_room(owner=owner)
    message, _ = services.message_post(room=room, author=author, body="hi", client_id="c")
    services.message_delete(message_id=message.pk, user=owner)
    event = RoomEvent.objects.get(room=room, seq=2)
    assert (event.kind, event.by) == (protocol.MESSAGE_DELETED, "moderator")
    message.refresh_from_db()
    assert message.deleted
