"""Email digests end to end: notifications stored here, the digest task run by real
``manage.py db_worker`` processes, the email received by a real SMTP server (aiosmtpd).

Also: two workers at once email each notification once, and a worker killed with SIGKILL in
the middle of a digest loses nothing and emails nothing twice.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from asgiref.sync import sync_to_async
from django.test import Client
from django_tasks_db.models import DBTaskResult

from chat import services
from chat.models import Membership, Notification, UserPreferences
from harness import free_port, wait_for
from tests.conftest import open_socket, session_cookie
from tests.factories import make_room, make_user
from tests.servers import start_tasks_worker

DELAY = 1.0


class Inbox:
    """An aiosmtpd handler keeping what it accepted; ``hold`` makes DATA wait (never answered)
    while set, so a worker can be killed in the middle of sending."""

    def __init__(self):
        self.accepted: list[email.message.EmailMessage] = []
        self.held = threading.Event()
        self.hold = False
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.hold:
            self.held.set()
            while self.hold:
                await asyncio.sleep(0.05)
            return "451 try again later"  # the sender is gone by then
        with self.lock:
            self.accepted.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m for m in self.accepted if m["To"] == address]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    inbox.hold = False
    controller.stop()


@pytest.fixture
def digests(settings, smtp, tmp_path):
    """The worker environment: the SMTP server above, a delay of DELAY seconds."""
    settings.CHAT_NOTIFY_EMAIL_DELAY = DELAY
    controller, inbox = smtp
    env = {
        "EMAIL_URL": f"smtp://127.0.0.1:{controller.port}",
        "CHAT_NOTIFY_EMAIL_DELAY": str(DELAY),
        "CHAT_SITE_URL": "http://chat.example",
    }
    workers = []

    def start():
        workers.append(start_tasks_worker(log_dir=tmp_path, extra_env=env))
        return workers[-1]

    yield inbox, start
    for worker in workers:
        worker.stop()


_ids = iter(range(1, 10**6))


def post(room, author, body):
    return services.message_post(room=room, author=author, body=body, client_id=f"d-{next(_ids)}")[0]


def people(count: int = 1):
    ann = make_user("ann")
    room = make_room(owner=ann, slug="pub")
    users = [make_user(f"u{i}", email=f"u{i}@example.com") for i in range(count)]
    for user in users:
        Membership.objects.create(room=room, user=user)
    return ann, room, users


def all_emailed(user) -> bool:
    return not Notification.objects.filter(user=user, emailed_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_one_digest_with_both_parts_links_and_a_working_unsubscribe(digests):
    inbox, start = digests
    ann, room, (bob,) = people()
    first, second = post(room, ann, "@u0 can you look?"), post(room, ann, "@u0 **still** there?")
    start()
    wait_for(lambda: inbox.to("u0@example.com"), 30, "the digest")
    time.sleep(DELAY + 1)  # nothing more comes in the window
    (mail,) = inbox.to("u0@example.com")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for message in (first, second):
        assert f"http://chat.example/rooms/pub/#message-{message.pk}" in text
        assert f'href="http://chat.example/rooms/pub/#message-{message.pk}"' in html
    assert "ann mentioned you in pub" in text and "**still** there?" in text
    assert str(mail["List-Unsubscribe"]).strip().startswith("<http://chat.example/notifications/unsubscribe/")
    assert Notification.objects.filter(user=bob, emailed_at__isnull=False).count() == 2
    link = re.search(r"http://chat.example(/notifications/unsubscribe/\S+/)", text)[1]
    assert Client().post(link).status_code == 200
    assert UserPreferences.objects.get(user=bob).email_notifications is False


@pytest.mark.django_db(transaction=True)
def test_nothing_is_emailed_to_who_read_it_opted_out_or_has_no_address(digests):
    inbox, start = digests
    ann, room, (reader, opted_out) = people(2)
    no_address = make_user("noaddr")
    Membership.objects.create(room=room, user=no_address)
    services.preferences_update(user_id=opted_out.pk, email_notifications=False)
    message = post(room, ann, "@u0 @u1 @noaddr hello")
    services.read_mark(room=room, user=reader, seq=message.seq)
    worker = start()
    later = post(room, ann, "@u1 and a later one")  # a digest for u1 would have been due by now
    time.sleep(DELAY + 3)
    assert inbox.accepted == []
    assert "Traceback" not in worker.log_text(20000)
    assert later.pk


@pytest.mark.django_db(transaction=True)
async def test_a_user_with_an_open_socket_gets_no_digest(settings):
    """Decided when the notification is stored: the user's hub records every socket
    (presence), so no digest is even scheduled."""
    settings.CHAT_NOTIFY_EMAIL_DELAY = DELAY
    ann, room, (bob,) = await sync_to_async(people)()
    socket, connected, _ = await open_socket(cookie=await sync_to_async(session_cookie)(bob))
    assert connected
    await asyncio.sleep(0.3)  # the hub records the socket in the presence store first
    await sync_to_async(post)(room, ann, "@u0 are you there?")
    frame = await socket.recv_until("notification")
    assert frame["notification"]["kind"] == "mention"
    assert not await sync_to_async(DBTaskResult.objects.exists)()
    await socket.close()
    await asyncio.sleep(0.3)
    # Once the socket is gone, the next mention schedules one.
    await sync_to_async(post)(room, ann, "@u0 gone?")
    assert await sync_to_async(DBTaskResult.objects.count)() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_email_each_notification_once(digests):
    inbox, start = digests
    ann, room, users = people(8)
    for i in range(3):
        post(room, ann, " ".join(f"@{u.username}" for u in users) + f" round {i}")
    for user in users:  # a duplicate task for each user: the claim, not luck, keeps it to one
        services.digest_send.enqueue(user.pk)
    start(), start()
    wait_for(lambda: all(all_emailed(u) for u in users), 60, "every digest")
    time.sleep(DELAY + 2)
    for user in users:
        (mail,) = inbox.to(user.email)
        assert mail.get_body(("plain",)).get_content().count("http://chat.example/rooms/pub/#message-") == 3
    assert len(inbox.accepted) == len(users)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_digest_loses_nothing_and_sends_nothing_twice(digests):
    inbox, start = digests
    ann, room, (bob, carol) = people(2)
    post(room, ann, "@u0 first")
    post(room, ann, "@u0 second")
    inbox.hold = True
    doomed = start()
    wait_for(inbox.held.is_set, 30, "the worker to be in the middle of sending")
    doomed.kill()  # SIGKILL: no clean-up, the transaction dies with its connection
    inbox.hold = False
    assert Notification.objects.filter(user=bob, emailed_at__isnull=False).count() == 0
    start()
    # Any digest task recovers the lost one (bob's due time is long past): carol's, here.
    time.sleep(2 * DELAY + 0.5)
    post(room, ann, "@u1 hello")
    wait_for(lambda: all_emailed(bob) and all_emailed(carol), 60, "bob's digest, recovered")
    time.sleep(DELAY + 2)
    (mail,) = inbox.to("u0@example.com")
    assert mail.get_body(("plain",)).get_content().count("#message-") == 2
    assert len(inbox.to("u1@example.com")) == 1
