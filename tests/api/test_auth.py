"""Tokens (POST/DELETE /api/v1/auth/token/), authentication and CSRF."""

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.api.conftest import session_client, token_client
from tests.conftest import open_socket
from tests.factories import PASSWORD, make_user

URL = "/api/v1/auth/token/"


def test_token_for_username_and_password_authenticates_later_requests(user, anon):
    response = anon.post(URL, {"username": "ann", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(key=key).user == user

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/rooms/").status_code == 200


def test_token_request_accepts_a_form_and_returns_the_same_token_until_revoked(user, anon):
    first = anon.post(URL, {"username": "ann", "password": PASSWORD}).json()["token"]
    again = anon.post(URL, {"username": "ann", "password": PASSWORD}).json()["token"]
    assert first == again


@pytest.mark.parametrize(
    "data",
    [
        {"username": "ann", "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "ann"},
        {"password": PASSWORD},
        {"username": 7, "password": PASSWORD},
    ],
)
def test_token_request_with_bad_credentials_is_a_400_invalid(user, anon, data):
    response = anon.post(URL, data, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not Token.objects.exists()


def test_inactive_user_gets_no_token(anon, db):
    make_user("gone", is_active=False)
    assert anon.post(URL, {"username": "gone", "password": PASSWORD}, format="json").status_code == 400


def test_token_request_ignores_a_session_without_csrf_token(user):
    """The credentials are in the body, so a logged-in browser needs no CSRF token here."""
    client = session_client(user)
    response = client.post(URL, {"username": "ann", "password": PASSWORD}, format="json")
    assert response.status_code == 200


def test_token_requests_are_throttled_per_client_with_retry_after(user, anon, monkeypatch):
    from chat.api.throttling import LoginRateThrottle

    monkeypatch.setattr(LoginRateThrottle, "rate", "2/min", raising=False)
    for _ in range(2):
        assert anon.post(URL, {"username": "ann", "password": "x"}, format="json").status_code == 400
    response = anon.post(URL, {"username": "ann", "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_revoke_deletes_the_token_so_it_no_longer_authenticates(user):
    client = token_client(user)
    assert client.delete(URL).status_code == 204
    assert not Token.objects.filter(user=user).exists()
    response = client.get("/api/v1/rooms/")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_revoke_with_a_session_and_csrf_token_deletes_the_users_token(user):
    Token.objects.create(user=user)
    client = session_client(user)
    client.get("/api/docs/")  # any page; the CSRF cookie comes from a request
    csrf = _csrf_token(client)
    assert client.delete(URL, HTTP_X_CSRFTOKEN=csrf).status_code == 204
    assert not Token.objects.filter(user=user).exists()


def test_revoke_with_a_session_without_csrf_token_is_refused(user):
    Token.objects.create(user=user)
    response = session_client(user).delete(URL)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert Token.objects.filter(user=user).exists()


def test_revoke_unauthenticated_is_a_401_with_www_authenticate(anon, db):
    response = anon.delete(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Authentication credentials were not provided.", "code": "unauthenticated"}


def test_a_bad_token_is_a_401(anon, db):
    anon.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = anon.get("/api/v1/rooms/")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.django_db(transaction=True)
async def test_revoke_closes_the_sockets_opened_with_that_token_only(user, ann_cookie):
    key = await database_sync_to_async(lambda: Token.objects.create(user=user).key)()
    token_socket, connected, _ = await open_socket(token=key)
    assert connected
    session_socket, _, _ = await open_socket(cookie=ann_cookie)
    assert (await token_socket.join("general"))["type"] == "joined"
    assert (await session_socket.join("general"))["type"] == "joined"

    def revoke():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client.delete(URL).status_code

    assert await database_sync_to_async(revoke)() == 204
    closed = await token_socket.comm.receive_output(2)
    assert closed == {"type": "websocket.close", "code": 4401}
    await session_socket.send(type="ping")
    assert (await session_socket.recv())["type"] == "pong"
    await session_socket.close()


def _csrf_token(client) -> str:
    from django.conf import settings

    return client.cookies[settings.CSRF_COOKIE_NAME].value
