"""REST: outgoing-webhook subscriptions of a room (PROTOCOL.md 9): the owner and moderators
create, list and remove them and read their delivery attempts; URLs the SSRF guard refuses
are a 400 with the reason. Only loopback addresses appear here (and `localhost`)."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Membership, Room, Subscription
from tests.api.conftest import token_client
from tests.factories import make_room, make_user
from tests.receivers import Receiver

URL = "/api/v1/rooms/{slug}/subscriptions/"


@pytest.fixture
def private_ok(settings):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    return settings


@pytest.fixture
def hooked(db, user):
    return make_room(owner=user, slug="hooked")


def test_the_owner_subscribes_and_sees_the_secret_once(ann, hooked, private_ok):
    response = ann.post(URL.format(slug="hooked"), {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["url"] == "http://127.0.0.1:9/hook" and len(created["secret"]) >= 32
    assert created["paused"] is False and created["created_by"] == "ann"
    assert Subscription.objects.get(pk=created["id"]).secret == created["secret"]
    listed = ann.get(URL.format(slug="hooked")).json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert Room.objects.get(pk=hooked.pk).subscriptions_active == 1


def test_a_moderator_may_and_a_member_may_not(db, hooked, other, private_ok):
    moderator = make_user("mod")
    Membership.objects.create(room=hooked, user=moderator, role=Membership.Role.MODERATOR)
    Membership.objects.create(room=hooked, user=other)
    made = token_client(moderator).post(URL.format(slug="hooked"), {"url": "http://127.0.0.1:9/"}, format="json")
    assert made.status_code == 201
    bob = token_client(other)
    assert bob.post(URL.format(slug="hooked"), {"url": "http://127.0.0.1:9/"}, format="json").status_code == 403
    assert bob.get(URL.format(slug="hooked")).status_code == 403
    one = f"{URL.format(slug='hooked')}{made.json()['id']}/"
    assert bob.delete(one).status_code == 403
    assert bob.get(one + "deliveries/").status_code == 403
    assert Subscription.objects.count() == 1


def test_a_private_room_is_404_to_others_and_401_without_credentials(secret, bob, anon):
    assert bob.post(URL.format(slug="secret"), {"url": "http://127.0.0.1:9/"}, format="json").status_code == 404
    assert bob.get(URL.format(slug="secret")).status_code == 404
    assert anon.get(URL.format(slug="secret")).status_code == 401


@pytest.mark.parametrize(
    "url, detail",
    [
        ("http://127.0.0.1:9/", "loopback"), ("http://[::1]:9/", "loopback"), ("http://127.3.4.5/", "loopback"),
        ("http://0.0.0.0:9/", "unspecified"), ("http://localhost:9/", "loopback"),
        ("ftp://127.0.0.1/", "http"), ("http://user:pw@127.0.0.1/", "password"), ("http:///x", "host"),
        ("https://h.example/" + "a" * 2000, "2000"), (42, "valid string"),
    ],
)
def test_refused_urls_are_a_400_with_the_reason(ann, hooked, settings, url, detail):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    response = ann.post(URL.format(slug="hooked"), {"url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and detail in response.json()["detail"]
    assert not Subscription.objects.exists()
    assert Room.objects.get(pk=hooked.pk).subscriptions_active == 0


def test_a_room_has_at_most_ten(ann, hooked, private_ok):
    for i in range(Subscription.MAX_PER_ROOM):
        assert ann.post(URL.format(slug="hooked"), {"url": f"http://127.0.0.1:9/{i}"}, format="json").status_code == 201
    refused = ann.post(URL.format(slug="hooked"), {"url": "http://127.0.0.1:9/x"}, format="json")
    assert refused.status_code == 400 and "at most" in refused.json()["detail"]


def test_delete_removes_it(ann, hooked, private_ok):
    made = ann.post(URL.format(slug="hooked"), {"url": "http://127.0.0.1:9/"}, format="json").json()
    one = f"{URL.format(slug='hooked')}{made['id']}/"
    assert ann.delete(one).status_code == 204
    assert ann.get(URL.format(slug="hooked")).json() == []
    assert Room.objects.get(pk=hooked.pk).subscriptions_active == 0
    assert ann.delete(one).status_code == 404
    # Another room's subscription is not reachable through this room.
    make_room(owner=hooked.owner, slug="elsewhere")
    theirs = ann.post(URL.format(slug="elsewhere"), {"url": "http://127.0.0.1:9/"}, format="json").json()
    assert ann.delete(f"{URL.format(slug='hooked')}{theirs['id']}/").status_code == 404
    assert ann.delete(f"{URL.format(slug='hooked')}999999999999999999999/").status_code == 404


def test_the_deliveries_list_shows_each_attempt(ann, user, hooked, private_ok):
    private_ok.CHAT_WEBHOOK_BACKOFF_START = 0.01
    private_ok.CHAT_POST_RATE = "0"
    receiver = Receiver(script=[500]).start()
    try:
        made = ann.post(URL.format(slug="hooked"), {"url": receiver.url}, format="json").json()
        services.message_post(room=hooked, author=user, body="hi", client_id="s-1")
        services.deliveries_run(subscription_id=made["id"])
        listed = ann.get(URL.format(slug="hooked")).json()[0]
        assert listed["failing_since"] is not None and listed["retry_at"] is not None
        deliveries = ann.get(f"{URL.format(slug='hooked')}{made['id']}/deliveries/").json()
        (attempt,) = deliveries
        assert attempt["seq"] == 1 and attempt["event"] == "message" and attempt["ok"] is False
        assert attempt["status_code"] == 500 and attempt["error"] == "HTTP 500"
        assert attempt["delivery_id"] == receiver.all()[0].headers["X-Chat-Delivery"]
    finally:
        receiver.stop()
