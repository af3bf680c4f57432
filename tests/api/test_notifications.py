"""REST: GET /api/v1/notifications/, POST /api/v1/notifications/read/, GET/PATCH /api/v1/me/,
`mentions` in GET /api/v1/rooms/, and the unsubscribe link of the digest emails."""

from __future__ import annotations

import pytest
from django.test import Client

from chat import services
from chat.models import Membership, Notification, UserPreferences
from tests.api.conftest import session_client, token_client
from tests.factories import make_room, make_user
from tests.test_protocol import NOTIFICATION, mismatches

pytestmark = pytest.mark.django_db

_ids = iter(range(1, 10**6))


def post(room, author, body):
    return services.message_post(room=room, author=author, body=body, client_id=f"n-{next(_ids)}")[0]


@pytest.fixture
def setup(db):
    ann, bob = make_user("ann"), make_user("bob", email="bob@example.com")
    room = make_room(owner=ann, slug="pub")
    Membership.objects.create(room=room, user=bob)
    messages = [post(room, ann, f"@bob number {i}") for i in range(3)]
    return ann, bob, room, messages


def test_the_list_is_newest_first_in_the_notification_shape(setup):
    ann, bob, room, messages = setup
    body = token_client(bob).get("/api/v1/notifications/").json()
    assert [n["message"]["id"] for n in body["results"]] == [m.pk for m in reversed(messages)]
    assert body["has_more"] is False
    for notification in body["results"]:
        assert mismatches(notification, NOTIFICATION) == []
    assert token_client(ann).get("/api/v1/notifications/").json()["results"] == []


def test_pages_go_back_with_before_and_limit(setup):
    _, bob, _, messages = setup
    client = token_client(bob)
    first = client.get("/api/v1/notifications/?limit=2").json()
    assert (len(first["results"]), first["has_more"]) == (2, True)
    rest = client.get(f"/api/v1/notifications/?limit=2&before={first['results'][-1]['id']}").json()
    assert [n["message"]["id"] for n in rest["results"]] == [messages[0].pk]
    assert rest["has_more"] is False


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "before=-1", "unread=maybe"])
def test_bad_parameters_are_a_400(setup, query):
    response = token_client(setup[1]).get(f"/api/v1/notifications/?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_marking_read_by_ids_and_all_and_unread_filter(setup):
    ann, bob, _, messages = setup
    client = token_client(bob)
    ids = [n["id"] for n in client.get("/api/v1/notifications/").json()["results"]]
    annes = post(make_room(owner=bob, slug="bobs"), bob, "@ann hi")
    others = Notification.objects.get(message=annes).pk
    response = client.post("/api/v1/notifications/read/", {"ids": [ids[0], others]}, format="json")
    assert response.json() == {"marked": 1}
    assert Notification.objects.get(pk=others).read_at is None  # not bob's
    unread = client.get("/api/v1/notifications/?unread=1").json()["results"]
    assert [n["id"] for n in unread] == ids[1:]
    assert all(n["read"] is False for n in unread)
    assert client.post("/api/v1/notifications/read/", {"all": True}, format="json").json() == {"marked": 2}
    assert client.get("/api/v1/notifications/?unread=1").json()["results"] == []
    assert client.post("/api/v1/notifications/read/", {}, format="json").status_code == 400
    assert client.post("/api/v1/notifications/read/", {"ids": ["x"]}, format="json").status_code == 400


def test_the_room_list_has_mentions_and_the_read_endpoint_clears_them(setup):
    _, bob, room, messages = setup
    client = token_client(bob)
    rooms = {r["slug"]: r for r in client.get("/api/v1/rooms/").json()}
    assert rooms["pub"]["mentions"] == 3
    client.post("/api/v1/rooms/pub/read/", {"seq": messages[1].seq}, format="json")
    rooms = {r["slug"]: r for r in client.get("/api/v1/rooms/").json()}
    assert rooms["pub"]["mentions"] == 1


def test_me_shows_and_turns_off_email_notifications(setup):
    _, bob, _, _ = setup
    client = session_client(bob, csrf=False)
    assert client.get("/api/v1/me/").json() == {
        "id": bob.pk, "username": "bob", "email": "bob@example.com", "email_notifications": True, "timezone": "",
    }
    response = client.patch("/api/v1/me/", {"email_notifications": False}, format="json")
    assert response.json()["email_notifications"] is False
    assert UserPreferences.objects.get(user=bob).email_notifications is False
    assert client.patch("/api/v1/me/", {"email_notifications": "nope"}, format="json").status_code == 400
    assert Client().get("/api/v1/me/").status_code in (401, 403)


@pytest.mark.parametrize("bad", [
    "Mars/Olympus_Mons", "europe/paris", " Europe/Paris", "../../../etc/passwd", "/usr/share/zoneinfo/UTC",
    "Europe/Paris\x00", "x" * 65, 7, None,
])
def test_me_refuses_a_time_zone_that_is_not_an_iana_name(setup, bad):
    _, bob, _, _ = setup
    client = session_client(bob, csrf=False)
    client.patch("/api/v1/me/", {"timezone": "Asia/Tokyo"}, format="json")
    response = client.patch("/api/v1/me/", {"timezone": bad}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert UserPreferences.objects.get(user=bob).timezone == "Asia/Tokyo"


def test_me_keeps_the_time_zone_the_page_reports_and_clears_it(setup):
    _, bob, _, _ = setup
    client = session_client(bob, csrf=False)
    response = client.patch("/api/v1/me/", {"timezone": "America/Argentina/Buenos_Aires"}, format="json")
    assert response.status_code == 200 and response.json()["timezone"] == "America/Argentina/Buenos_Aires"
    assert response.json()["email_notifications"] is True  # untouched
    assert UserPreferences.objects.get(user=bob).timezone == "America/Argentina/Buenos_Aires"
    assert client.patch("/api/v1/me/", {"timezone": ""}, format="json").json()["timezone"] == ""
    assert client.patch("/api/v1/me/", {}, format="json").status_code == 400  # nothing to change


def test_the_unsubscribe_link_works_without_logging_in(setup):
    _, bob, _, _ = setup
    url = f"/notifications/unsubscribe/{services.unsubscribe_token(bob.pk)}/"
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.get(url).status_code == 200
    assert UserPreferences.objects.filter(user=bob, email_notifications=False).count() == 0  # GET only asks
    response = anonymous.post(url)
    assert response.status_code == 200 and b"are off" in response.content
    assert UserPreferences.objects.get(user=bob).email_notifications is False


def test_a_forged_unsubscribe_token_changes_nothing(setup):
    _, bob, _, _ = setup
    token = services.unsubscribe_token(bob.pk)
    response = Client().post(f"/notifications/unsubscribe/{token[:-2]}xx/")
    assert response.status_code == 400
    assert not UserPreferences.objects.filter(user=bob, email_notifications=False).exists()
