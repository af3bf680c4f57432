"""Connect tokens (PROTOCOL.md 9): POST /api/v1/auth/connect-token/, then /ws/chat/?token=…
opens one socket as that user, once, with no cookie or Origin."""

import time
from datetime import timedelta
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from django.core import signing
from django.utils import timezone
from rest_framework.test import APIClient

from chat import protocol, services
from chat.models import ConnectTokenUse
from chat.services.connect_tokens import SALT
from tests.conftest import open_socket
from tests.factories import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def issue(user) -> dict:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    response = client.post("/api/v1/auth/connect-token/")
    assert response.status_code == 200, response.content
    return response.json()


async def connect(token: str):
    sock, connected, _ = await open_socket(f"/ws/chat/?token={quote(token)}", origin=None)
    assert connected
    return sock


async def assert_refused(token: str):
    sock = await connect(token)
    frame = await sock.recv()
    assert (frame["type"], frame["code"]) == ("error", protocol.UNAUTHENTICATED)
    assert (await sock.comm.receive_output(2))["code"] == protocol.CLOSE_UNAUTHENTICATED


def test_the_endpoint_answers_a_token_and_its_lifetime_to_a_logged_in_caller_only(user):
    answer = issue(user)
    assert set(answer) == {"token", "expires_in"} and answer["expires_in"] == 300
    session = APIClient(enforce_csrf_checks=False)
    session.force_login(user)
    assert session.post("/api/v1/auth/connect-token/").status_code == 200
    response = APIClient().post("/api/v1/auth/connect-token/")
    assert (response.status_code, response.json()["code"]) == (401, protocol.UNAUTHENTICATED)


async def test_a_token_opens_one_socket_as_its_user_then_is_used(user, other, general):
    ann_token = (await database_sync_to_async(issue)(user))["token"]
    bob_token = (await database_sync_to_async(issue)(other))["token"]
    ann = await connect(ann_token)
    assert (await ann.join("general"))["online"] == ["ann"]
    bob = await connect(bob_token)
    assert sorted((await bob.join("general"))["online"]) == ["ann", "bob"]
    await bob.send(type="send", room="general", body="hi", client_id="b-1")
    assert (await ann.recv_until("message"))["message"]["author"]["username"] == "bob"

    await assert_refused(ann_token)  # a second use, while the first socket is still open
    await ann.close()
    await bob.close()


async def test_an_expired_or_forged_token_is_refused(user, general):
    class OldSigner(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - 301)

    expired = OldSigner(salt=SALT).sign_object({"u": user.pk, "n": "old-nonce"})
    await assert_refused(expired)
    good = (await database_sync_to_async(issue)(user))["token"]
    value, signature = good.rsplit(":", 1)
    await assert_refused(f"{value}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}")
    # Signed with the server's key, but not as a connect token (another salt), or junk.
    await assert_refused(signing.TimestampSigner(salt="other").sign_object({"u": user.pk, "n": "x"}))
    await assert_refused("")
    await assert_refused("\x00" * 10)
    # None of these used the real token up.
    ann = await connect(good)
    assert (await ann.join("general"))["type"] == "joined"
    await ann.close()


async def test_redeeming_prunes_uses_older_than_the_lifetime(user):
    @database_sync_to_async
    def run():
        ConnectTokenUse.objects.create(nonce="stale", user=user, used_at=timezone.now() - timedelta(seconds=301))
        assert services.connect_token_redeem(token=services.connect_token_issue(user=user)) == user
        return list(ConnectTokenUse.objects.values_list("nonce", flat=True))

    (nonce,) = await run()
    assert nonce != "stale"


def test_access_logs_write_connect_tokens_redacted(caplog):
    import io
    import logging

    from daphne.access import AccessLogGenerator

    from chat.serving import redact

    redact.install()
    assert redact.redact("GET /ws/chat/?a=1&token=abc:def&b=2") == "GET /ws/chat/?a=1&token=[redacted]&b=2"
    stream = io.StringIO()
    AccessLogGenerator(stream).write_entry(host="1.2.3.4", date=timezone.now(), request="GET /ws/chat/?token=s3cret")
    assert "s3cret" not in stream.getvalue() and "token=[redacted]" in stream.getvalue()
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", "/ws/chat/?token=s3cret", "1.1", 404)
    assert "s3cret" not in caplog.text and "token=[redacted]" in caplog.text


def test_two_redemptions_at_once_let_one_through(user):
    """The nonce's primary key decides, as between two server processes."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    token = services.connect_token_issue(user=user)

    def redeem():
        try:
            return services.connect_token_redeem(token=token)
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        users = list(pool.map(lambda _: redeem(), range(4)))
    assert users.count(None) == 3 and user in users
