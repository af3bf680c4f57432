"""Outgoing webhooks (PROTOCOL.md 9): every room event POSTed, signed, in seq order, retried
with backoff, paused when dead; the SSRF guard. A real HTTP receiver on 127.0.0.1
(tests/receivers.py); the delivery task run directly, and end to end by real
``manage.py db_worker`` processes.

No test hands the delivery code a URL outside 127.0.0.0/8 and ::1: the address checks of
other ranges run against a stubbed resolver, and nothing connects there.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from chat import protocol, rules, services
from chat.models import DeliveryAttempt, Membership, OutboxEvent, Room, RoomEvent, Subscription
from chat.outgoing import client, guard
from chat.services.deliveries import backoff
import harness
from harness import wait_for
from tests.factories import make_room, make_user
from tests.receivers import Receiver
from tests.servers import tasks_worker_config

_ids = itertools.count(1)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def webhooks(settings):
    """Loopback receivers allowed; retries a few hundredths of a second apart."""
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    settings.CHAT_WEBHOOK_BACKOFF_START = 0.02
    settings.CHAT_WEBHOOK_TIMEOUT = 2.0
    settings.CHAT_POST_RATE = "0"
    return settings


def post(room, author, body="hi"):
    return services.message_post(room=room, author=author, body=body, client_id=f"w-{next(_ids)}")[0]


def subscribe(room, owner, url) -> Subscription:
    access = rules.room_access(user=owner, room=room, door=rules.Door.API)
    return services.subscription_create(access=access, actor=owner, url=url)


def deliver(subscription) -> int:
    return services.deliveries_run(subscription_id=subscription.pk)


def seqs(requests) -> list[int]:
    return [r.frame["seq"] for r in requests]


# --- delivery ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_room_event_is_posted_as_its_frame_signed(webhooks, receiver):
    ann = make_user("ann", email="ann@example.com")
    room = make_room(owner=ann, slug="hooked")
    post(room, ann, "before the subscription")  # not owed: it starts with the next event
    subscription = subscribe(room, ann, receiver.url + "/hook?x=1")
    message = post(room, ann, "hello **hooks**")
    services.message_edit(message_id=message.pk, user=ann, body="v2")
    services.message_edit(message_id=message.pk, user=ann, body="v3")
    services.reaction_add(message_id=message.pk, user=ann, emoji="👍")
    services.message_delete(message_id=message.pk, user=ann)

    assert deliver(subscription) == 5
    got = receiver.delivered()
    assert [r.frame["type"] for r in got] == [
        protocol.MESSAGE, protocol.MESSAGE_EDITED, protocol.MESSAGE_EDITED, protocol.MESSAGE_REACTED, protocol.MESSAGE_DELETED
    ]
    assert seqs(got) == [2, 3, 4, 5, 6]
    for request in got:
        assert request.path == "/hook?x=1"
        assert request.signed_with(subscription.secret)
        assert not request.signed_with("another secret")
        assert request.headers["X-Chat-Event"] == request.frame["type"]
        assert request.headers["Content-Type"] == "application/json"
        assert request.frame["room"] == "hooked"
    assert len({r.headers["X-Chat-Delivery"] for r in got}) == 5
    # Each event as it was sent, not the message's state now.
    assert got[0].frame["message"]["html"] == "<p>hello <strong>hooks</strong></p>"
    assert [got[1].frame["message"]["body"], got[2].frame["message"]["body"]] == ["v2", "v3"]
    assert got[3].frame["reactions"][0]["emoji"] == "👍"
    assert got[4].frame["id"] == message.pk and got[4].frame["by"] == "author"
    # Delivered and unused: nothing more is owed, the outbox is empty, every attempt recorded.
    assert deliver(subscription) == 0
    assert not OutboxEvent.objects.exists()
    assert list(DeliveryAttempt.objects.filter(ok=True).order_by("pk").values_list("seq", "status_code")) == [
        (s, 200) for s in [2, 3, 4, 5, 6]
    ]


@pytest.mark.django_db
def test_a_failing_event_is_retried_with_backoff_and_later_ones_wait(webhooks, receiver):
    # Retries are made due by the test (retry_at moved to now), not by sleeping: a loaded
    # machine can take longer than any short backoff between two calls.
    webhooks.CHAT_WEBHOOK_BACKOFF_START = 60.0
    receiver.script = [500, 500]
    ann = make_user("ann")
    room = make_room(owner=ann)
    subscription = subscribe(room, ann, receiver.url)
    for i in range(3):
        post(room, ann, f"m{i}")

    def make_due():
        Subscription.objects.filter(pk=subscription.pk).update(retry_at=timezone.now())

    before = timezone.now()
    assert deliver(subscription) == 0  # seq 1 failed: 2 and 3 wait
    subscription.refresh_from_db()
    assert subscription.failures == 1 and subscription.retry_at >= before + timedelta(seconds=60)
    assert deliver(subscription) == 0  # too early: the retry is scheduled, not due
    assert seqs(receiver.all()) == [1]
    make_due()
    before = timezone.now()
    assert deliver(subscription) == 0  # second failure
    subscription.refresh_from_db()
    assert subscription.failures == 2 and subscription.retry_at >= before + timedelta(seconds=120)  # doubled
    make_due()
    assert deliver(subscription) == 3
    assert seqs(receiver.all()) == [1, 1, 1, 2, 3]
    assert [r.answered for r in receiver.all()] == [500, 500, 200, 200, 200]
    # The retries of one event carry its one delivery id.
    assert len({r.headers["X-Chat-Delivery"] for r in receiver.all()[:3]}) == 1
    attempts = list(DeliveryAttempt.objects.order_by("pk"))
    assert [(a.seq, a.ok, a.status_code) for a in attempts] == [
        (1, False, 500), (1, False, 500), (1, True, 200), (2, True, 200), (3, True, 200)
    ]
    assert attempts[0].error == "HTTP 500"
    subscription.refresh_from_db()
    assert (subscription.failures, subscription.failing_since, subscription.delivered_seq) == (0, None, 3)


def test_backoff_starts_within_two_seconds_doubles_and_stops_at_ten_minutes(settings):
    settings.CHAT_WEBHOOK_BACKOFF_START, settings.CHAT_WEBHOOK_BACKOFF_MAX = 1.0, 600.0
    assert [backoff(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff(10) == 512 and backoff(11) == 600 and backoff(1000) == 600


@pytest.mark.django_db(transaction=True)
def test_real_workers_deliver_every_event_in_order_through_retries(receiver, tmp_path, settings):
    """Two `manage.py db_worker` processes; events wake them after commit; seq 1 fails twice."""
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    settings.CHAT_POST_RATE = "0"
    receiver.script = [500, 500]
    env = {"CHAT_WEBHOOK_ALLOW_PRIVATE": "1", "CHAT_WEBHOOK_BACKOFF_START": "0.2"}
    workers = [harness.Process(tasks_worker_config(extra_env=env), tmp_path).start() for _ in range(2)]
    try:
        wait_for(lambda: all("Starting worker" in w.log_text() for w in workers), 30, "two tasks workers")
        ann = make_user("ann")
        room = make_room(owner=ann)
        subscription = subscribe(room, ann, receiver.url)
        for i in range(8):
            post(room, ann, f"m{i}")
        try:
            wait_for(lambda: len(receiver.delivered()) >= 8, 30, "eight deliveries")
        except RuntimeError:
            received = [(r.frame["seq"], r.answered) for r in receiver.all()]
            state = list(Subscription.objects.values())
            tasks = list(DBTaskResult.objects.values("status", "run_after", "return_value", "enqueued_at", "started_at"))
            raise AssertionError(f"{received}\n{state}\n{OutboxEvent.objects.count()} {DeliveryAttempt.objects.count()}\n{tasks}\n"
                                 + "\n".join(w.log_text(5000) for w in workers)) from None
        assert seqs(receiver.delivered()) == list(range(1, 9))
        everything = seqs(receiver.all())
        assert everything[:3] == [1, 1, 1] and everything == sorted(everything)
        assert all(r.signed_with(subscription.secret) for r in receiver.all())
        wait_for(lambda: not OutboxEvent.objects.exists(), 10, "the outbox to empty")
        for worker in workers:
            assert "Traceback" not in worker.log_text(20000)
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.django_db
def test_a_dead_endpoint_is_paused_and_its_creator_emailed(webhooks, receiver, django_capture_on_commit_callbacks):
    webhooks.CHAT_WEBHOOK_GIVE_UP = 0.0  # the first failure is "24 hours of failures"
    receiver.default = 503
    ann = make_user("ann", email="ann@example.com")
    room = make_room(owner=ann, slug="dead")
    subscription = subscribe(room, ann, receiver.url)
    post(room, ann)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(subscription) == 0
    subscription.refresh_from_db()
    assert subscription.paused_at is not None
    assert Room.objects.get(pk=room.pk).subscriptions_active == 0
    (email,) = mail.outbox
    assert email.to == ["ann@example.com"] and "dead" in email.subject + email.body
    assert receiver.url in email.body
    # Paused: nothing is kept or sent for it any more.
    post(room, ann)
    assert not OutboxEvent.objects.exists()
    assert deliver(subscription) == 0
    assert len(receiver.all()) == 1


@pytest.mark.django_db
def test_an_event_the_room_log_pruned_is_still_delivered(webhooks, receiver):
    """RoomEvent keeps the newest EVENTS_KEPT; the outbox keeps what is owed."""
    ann = make_user("ann")
    room = make_room(owner=ann)
    subscription = subscribe(room, ann, receiver.url)
    count = protocol.EVENTS_KEPT + 200
    services.message_post_many(
        [services.Post(room=room, author=ann, body=f"m{i}", client_id=f"p-{i}") for i in range(count)]
    )
    assert not RoomEvent.objects.filter(room=room, seq=1).exists()
    assert deliver(subscription) == count
    assert seqs(receiver.delivered()) == list(range(1, count + 1))


@pytest.mark.django_db
def test_posting_in_a_room_without_subscriptions_touches_no_webhook_table(webhooks, receiver):
    ann = make_user("ann")
    quiet, hooked = make_room(owner=ann), make_room(owner=ann)
    subscribe(hooked, ann, receiver.url)
    with CaptureQueriesContext(connection) as quiet_queries:
        message = post(quiet, ann, "quiet")
        services.message_edit(message_id=message.pk, user=ann, body="still quiet")
    assert not [q for q in quiet_queries if '"chat_subscription"' in q["sql"] or '"chat_outboxevent"' in q["sql"]]
    with CaptureQueriesContext(connection) as hooked_queries:
        post(hooked, ann, "heard")
    assert [q for q in hooked_queries if '"chat_outboxevent"' in q["sql"]]
    assert list(OutboxEvent.objects.values_list("room_id", "seq", "type")) == [(hooked.pk, 1, protocol.MESSAGE)]


@pytest.mark.django_db
def test_a_deleted_subscription_gets_nothing_and_its_outbox_goes(webhooks, receiver):
    ann = make_user("ann")
    room = make_room(owner=ann)
    subscription = subscribe(room, ann, receiver.url)
    post(room, ann)
    access = rules.room_access(user=ann, room=room, door=rules.Door.API)
    services.subscription_delete(access=access, actor=ann, subscription_id=subscription.pk)
    assert not OutboxEvent.objects.exists()
    assert Room.objects.get(pk=room.pk).subscriptions_active == 0
    assert deliver(subscription) == 0 and receiver.all() == []


# --- the HTTP client: redirects, timeouts, the guard at delivery ----------------------------


@pytest.mark.django_db
def test_a_redirect_is_followed_with_the_same_signed_post(webhooks, receiver):
    receiver.script = [("redirect", 307, "/moved")]
    ann = make_user("ann")
    room = make_room(owner=ann)
    subscription = subscribe(room, ann, receiver.url + "/first")
    post(room, ann)
    assert deliver(subscription) == 1
    first, moved = receiver.all()
    assert (first.path, moved.path) == ("/first", "/moved")
    assert moved.body == first.body and moved.signed_with(subscription.secret)


def test_a_redirect_to_a_refused_address_is_not_followed(settings, receiver):
    """Only 127.0.0.1 allowed: a redirect to 127.3.4.5 is refused before any connection."""
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    settings.CHAT_WEBHOOK_ALLOW_NETWORKS = ["127.0.0.1/32"]
    receiver.script = [("redirect", 302, f"http://127.3.4.5:{receiver.port}/elsewhere")]
    answer = client.post(receiver.url, b"{}", {"Content-Type": "application/json"}, timeout=2)
    assert answer.status is None and "loopback" in answer.error and "127.3.4.5" in answer.error
    assert [r.path for r in receiver.all()] == ["/"]


def test_endless_redirects_fail_the_attempt(settings, receiver):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    receiver.default = 308
    receiver.script = [("redirect", 308, "/again")] * 10
    answer = client.post(receiver.url, b"{}", {}, timeout=2)
    assert answer.status is None and "redirects" in answer.error
    assert len(receiver.all()) == client.MAX_REDIRECTS + 1


def test_a_receiver_that_hangs_is_a_timeout(settings, receiver):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    receiver.script = [("sleep", 2)]
    answer = client.post(receiver.url, b"{}", {}, timeout=0.3)
    assert answer.status is None and answer.error.startswith("timeout")


@pytest.mark.django_db
def test_a_url_refused_at_delivery_is_a_failed_attempt_without_a_connection(webhooks, receiver):
    ann = make_user("ann")
    room = make_room(owner=ann)
    subscription = subscribe(room, ann, receiver.url)  # allowed when it was created
    post(room, ann)
    webhooks.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    assert deliver(subscription) == 0
    (attempt,) = DeliveryAttempt.objects.all()
    assert attempt.status_code is None and not attempt.ok
    assert attempt.error.startswith("refused:") and "loopback" in attempt.error
    assert receiver.all() == []


# --- the SSRF guard ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "127.3.4.5", "0.0.0.0", "localhost"])
def test_loopback_and_unspecified_hosts_are_refused(settings, host):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(guard.Refused, match="loopback|unspecified"):
        guard.url_checked(f"http://{host}:9/hook")


@pytest.mark.parametrize(
    "address, problem",
    [
        ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"), ("fd00::1", "private"), ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"), ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"),
        ("::", "unspecified"), ("240.0.0.1", "reserved"), ("100.64.0.1", "not public"),
    ],
)
def test_the_address_check_names_each_unfit_range(address, problem):
    assert problem in guard.address_problem(ipaddress.ip_address(address))


def test_public_addresses_pass_the_address_check():
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"):
        assert guard.address_problem(ipaddress.ip_address(address)) is None


def _resolver(*addresses):
    """A stub getaddrinfo answering ``addresses`` for any host (nothing is connected to)."""
    def resolve(host, port, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
             (a, port, 0, 0) if ":" in a else (a, port))
            for a in addresses
        ]
    return resolve


def test_a_host_is_refused_if_any_of_its_addresses_is(settings):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(guard.Refused, match="private address \\(10.0.0.1\\)"):
        guard.url_checked("https://hooks.example/x", resolver=_resolver("93.184.216.34", "10.0.0.1"))
    with pytest.raises(guard.Refused, match="link-local"):
        guard.url_checked("https://hooks.example/x", resolver=_resolver("fe80::1%eth0"))
    parts, found = guard.url_checked("https://hooks.example/x", resolver=_resolver("93.184.216.34"))
    assert parts.hostname == "hooks.example" and found == [(socket.AF_INET, "93.184.216.34")]


def test_the_settings_open_private_addresses(settings):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    settings.CHAT_WEBHOOK_ALLOW_NETWORKS = ["10.1.0.0/16"]
    assert guard.url_checked("http://ci.internal/", resolver=_resolver("10.1.2.3"))[1] == [(socket.AF_INET, "10.1.2.3")]
    with pytest.raises(guard.Refused):
        guard.url_checked("http://ci.internal/", resolver=_resolver("10.2.0.1"))
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    assert guard.url_checked("http://ci.internal/", resolver=_resolver("192.168.1.1"))


@pytest.mark.parametrize(
    "url, why",
    [
        ("ftp://hooks.example/", "http"), ("javascript:alert(1)", "http"), ("hooks.example/x", "http"),
        ("https://user:pw@hooks.example/", "password"), ("https://user@hooks.example/", "password"),
        ("https:///path", "host"), ("https://hooks.example:99999/", "malformed"),
        ("https://hooks.example/a b", "spaces"), ("https://hooks.example/\x00", "spaces"),
        ("https://hooks.example/" + "a" * 2000, "longer"), ("", "missing"),
    ],
)
def test_malformed_urls_are_refused_before_any_lookup(url, why):
    def no_lookup(*args, **kwargs):
        raise AssertionError("resolved")

    with pytest.raises(guard.Refused, match=why):
        guard.url_checked(url, resolver=no_lookup)


@pytest.mark.django_db
def test_moderators_of_the_room_receive_nothing_private(webhooks, receiver):
    """A subscription is the room's: events of other rooms never reach it."""
    ann = make_user("ann")
    mine, other = make_room(owner=ann), make_room(owner=ann)
    Membership.objects.get_or_create(room=other, user=ann)
    subscription = subscribe(mine, ann, receiver.url)
    post(other, ann, "elsewhere")
    post(mine, ann, "here")
    assert deliver(subscription) == 1
    (got,) = receiver.delivered()
    assert got.frame["message"]["body"] == "here"


@pytest.mark.django_db(transaction=True)
def test_a_post_in_progress_does_not_stop_the_delivery(webhooks, receiver):
    """The claim locks the subscription's row alone, never its room's (which a post in the
    room holds until it commits): with the room locked, the worker still delivers."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no row locks: its write lock queues the claim behind any post, by design")
    ann = make_user("ann")
    room = make_room(owner=ann)
    subscription = subscribe(room, ann, receiver.url)
    post(room, ann)
    locked, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                rules.room_access(user=ann, room_id=room.pk, door=rules.Door.API, lock=True)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holding = threading.Thread(target=holder)
    holding.start()
    try:
        assert locked.wait(10)
        assert deliver(subscription) == 1
    finally:
        release.set()
        holding.join(10)
    assert seqs(receiver.delivered()) == [1]


@pytest.mark.django_db
def test_staff_see_subscriptions_and_attempts_in_the_admin_and_remove_them(webhooks, receiver):
    ann = make_user("ann")
    room = make_room(owner=ann, slug="adm")
    subscription = subscribe(room, ann, receiver.url)
    post(room, ann)
    deliver(subscription)
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    page = staff.get(f"/admin/chat/subscription/{subscription.pk}/change/")
    assert page.status_code == 200 and receiver.url in page.text and "1 attempts" in page.text
    assert subscription.secret not in page.text
    attempts = staff.get(f"/admin/chat/deliveryattempt/?subscription__id__exact={subscription.pk}")
    assert attempts.status_code == 200 and "200" in attempts.text
    staff.post("/admin/chat/subscription/", {"action": "remove", "_selected_action": [subscription.pk]})
    assert not Subscription.objects.exists()
    assert Room.objects.get(pk=room.pk).subscriptions_active == 0


@pytest.mark.django_db(transaction=True)
def test_a_subscription_deleted_during_a_delivery_stops_it(webhooks, receiver):
    ann = make_user("ann")
    room = make_room(owner=ann)
    subscription = subscribe(room, ann, receiver.url)
    for i in range(3):
        post(room, ann, f"m{i}")

    def delete_it(_request):
        try:
            access = rules.room_access(user=ann, room=room, door=rules.Door.API)
            services.subscription_delete(access=access, actor=ann, subscription_id=subscription.pk)
        finally:
            connection.close()

    receiver.on_request = delete_it
    assert deliver(subscription) == 0
    assert seqs(receiver.all()) == [1]
    assert not Subscription.objects.exists() and not DeliveryAttempt.objects.exists()
    assert not OutboxEvent.objects.exists()
