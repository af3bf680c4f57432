"""Hostile input at every door (PROTOCOL.md 3.4, last paragraph): text that cannot be stored
faithfully (NUL, lone surrogates) is `invalid`, JSON nested deeper than 32 levels is
`bad_json`, a `ref` that could not be echoed is `bad_frame` and is not echoed, integers are
0..2^63-1, bodies over CHAT_MAX_BODY are 413 `too_large` before they are read, a session
cookie with a foreign Origin is refused whatever else the handshake carries, and every login
goes through the site-ban check."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat import services
from chat.models import Message, Room, SiteBan
from tests.conftest import open_socket
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SURROGATE = "\udc00"
NUL = "\x00"
DEEP = "[" * 100_000 + "]" * 100_000


def nested(depth: int) -> str:
    """A JSON value nested ``depth`` arrays deep."""
    return "[" * depth + "]" * depth


async def stored_bodies(user) -> list[str]:
    return await database_sync_to_async(list)(Message.objects.filter(author=user).values_list("body", flat=True))


# --- socket ---------------------------------------------------------------------------


async def joined_socket(cookie):
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected
    assert (await sock.join("general"))["type"] == "joined"
    return sock


async def test_ref_with_a_lone_surrogate_is_bad_frame_and_not_echoed(ann_cookie):
    sock = await joined_socket(ann_cookie)
    await sock.send(type="ping", ref=SURROGATE)
    reply = await sock.recv()
    assert reply["type"] == "error" and reply["code"] == "bad_frame"
    assert "ref" not in reply
    await sock.send(type="ping", ref="ok")
    assert await sock.recv() == {"type": "pong", "ref": "ok"}
    await sock.close()


@pytest.mark.parametrize("ref", [NUL, "x" * 65, 7, ["a"]])
async def test_ref_that_is_not_a_short_clean_string_is_bad_frame(ann_cookie, ref):
    sock = await joined_socket(ann_cookie)
    await sock.send(type="ping", ref=ref)
    reply = await sock.recv()
    assert reply["type"] == "error" and reply["code"] == "bad_frame" and "ref" not in reply
    await sock.close()


async def test_send_with_a_bad_ref_stores_nothing(user, ann_cookie):
    sock = await joined_socket(ann_cookie)
    await sock.send(type="send", room="general", body="hello", client_id="c1", ref=SURROGATE)
    reply = await sock.recv()
    assert reply["code"] == "bad_frame" and "ref" not in reply
    assert await stored_bodies(user) == []
    await sock.close()


async def test_leave_with_a_lone_surrogate_room_is_bad_frame_and_not_echoed(ann_cookie):
    sock = await joined_socket(ann_cookie)
    await sock.send(type="leave", room=SURROGATE, ref="r")
    reply = await sock.recv()
    assert reply["type"] == "error" and reply["code"] == "bad_frame"
    assert SURROGATE not in json.dumps(reply, ensure_ascii=False).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert reply.get("room") is None
    await sock.close()


@pytest.mark.parametrize("body", [SURROGATE, NUL, f"hi{NUL}there", f"a{SURROGATE}b", f" {NUL} "])
async def test_send_with_unstorable_body_is_invalid_and_stores_nothing(user, ann_cookie, body, settings):
    settings.CHAT_POST_RATE = "0"
    sock = await joined_socket(ann_cookie)
    await sock.send(type="send", room="general", body=body, client_id="c1", ref="r")
    reply = await sock.recv()
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "invalid", "r")
    assert await stored_bodies(user) == []
    # The same client_id is still free: nothing half-stored blocks a clean retry.
    await sock.send(type="send", room="general", body="clean", client_id="c1", ref="r2")
    assert (await sock.recv_until("ack"))["ref"] == "r2"
    assert await stored_bodies(user) == ["clean"]
    await sock.close()


@pytest.mark.parametrize("client_id", [NUL, SURROGATE, f"id{SURROGATE}"])
async def test_send_with_unstorable_client_id_is_invalid(user, ann_cookie, client_id):
    sock = await joined_socket(ann_cookie)
    await sock.send(type="send", room="general", body="hi", client_id=client_id, ref="r")
    reply = await sock.recv()
    assert (reply["code"], reply["ref"]) == ("invalid", "r")
    assert await stored_bodies(user) == []
    await sock.close()


@pytest.mark.parametrize("body", [SURROGATE, NUL])
async def test_edit_with_unstorable_body_is_invalid_and_changes_nothing(user, general, ann_cookie, body):
    message, _ = await database_sync_to_async(services.message_post)(room=general, author=user, body="orig", client_id="c1")
    sock = await joined_socket(ann_cookie)
    await sock.send(type="edit", id=message.pk, body=body, ref="e")
    reply = await sock.recv()
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "invalid", "e")
    assert await stored_bodies(user) == ["orig"]
    await sock.close()


async def test_join_with_unstorable_room_is_invalid_without_echo(ann_cookie):
    sock = await joined_socket(ann_cookie)
    reply = await sock.join(f"general{NUL}")
    assert (reply["type"], reply["code"]) == ("error", "invalid")
    assert NUL not in json.dumps(reply, ensure_ascii=False)
    await sock.close()


@pytest.mark.parametrize("since", [-5, -1, 2**63, True, 1.5, "3"])
async def test_since_outside_0_to_2_63_or_not_an_int_is_bad_frame(ann_cookie, since):
    sock = await joined_socket(ann_cookie)
    reply = await sock.join("general", since=since, ref="j")
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "bad_frame", "j")
    await sock.close()


@pytest.mark.parametrize("frame", [
    {"type": "delete", "id": -1},
    {"type": "delete", "id": 2**63},
    {"type": "delete", "id": False},
    {"type": "edit", "id": -3, "body": "x"},
    {"type": "read", "room": "general", "seq": -1},
    {"type": "read", "room": "general", "seq": 2**64},
])
async def test_integers_outside_0_to_2_63_are_bad_frame(ann_cookie, frame):
    sock = await joined_socket(ann_cookie)
    await sock.send(**frame, ref="i")
    reply = await sock.recv()
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "bad_frame", "i")
    await sock.close()


async def test_since_at_the_top_of_the_range_is_accepted(ann_cookie):
    sock = await joined_socket(ann_cookie)
    reply = await sock.join("general", since=2**63 - 1)
    assert reply["type"] == "joined" and reply["resync"] is True
    await sock.close()


async def test_frame_nested_33_deep_is_bad_json_and_32_is_fine(ann_cookie):
    sock = await joined_socket(ann_cookie)
    # The frame object is one level: 31 more arrays make 32 in all.
    await sock.send_raw(json.dumps({"type": "ping", "ref": "ok", "x": json.loads(nested(31))}))
    assert await sock.recv() == {"type": "pong", "ref": "ok"}
    await sock.send_raw(json.dumps({"type": "ping", "ref": "deep", "x": json.loads(nested(32))}))
    reply = await sock.recv()
    assert (reply["type"], reply["code"]) == ("error", "bad_json")
    await sock.close()


async def test_frame_nested_30000_deep_is_bad_json_and_the_socket_stays_open(ann_cookie):
    sock = await joined_socket(ann_cookie)
    await sock.send_raw(nested(30_000))
    assert (await sock.recv())["code"] == "bad_json"
    await sock.send(type="ping", ref="after")
    assert await sock.recv() == {"type": "pong", "ref": "after"}
    await sock.close()


async def test_brackets_inside_strings_do_not_count_as_nesting(user, ann_cookie, settings):
    settings.CHAT_POST_RATE = "0"
    sock = await joined_socket(ann_cookie)
    body = "[[[[" * 20 + "{" * 50 + '"\\'
    await sock.send(type="send", room="general", body=body, client_id="b1", ref="s")
    assert (await sock.recv_until("ack"))["ref"] == "s"
    assert await stored_bodies(user) == [body]
    await sock.close()


async def test_session_cookie_with_foreign_origin_is_refused_even_with_a_valid_token(ann_cookie, ann_token):
    _sock, connected, _ = await open_socket(cookie=ann_cookie, token=ann_token, origin="http://evil.example")
    assert not connected


async def test_session_cookie_without_origin_is_refused_even_with_a_valid_token(ann_cookie, ann_token):
    _sock, connected, _ = await open_socket(cookie=ann_cookie, token=ann_token, origin=None)
    assert not connected


async def test_token_with_a_nul_is_unauthenticated_not_a_crash(general):
    sock, connected, _ = await open_socket(token="abc\x00def")
    assert connected
    assert (await sock.recv())["code"] == "unauthenticated"


# --- REST -----------------------------------------------------------------------------


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def post_json(client, path, text: str, method="post"):
    return getattr(client, method)(path, data=text, content_type="application/json")


@pytest.mark.parametrize("path", ["/api/v1/rooms/general/messages/", "/api/v1/rooms/", "/api/v1/auth/token/"])
def test_rest_body_nested_100000_deep_is_400_bad_json(api, general, path):
    response = post_json(api, path, DEEP)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_json"


def test_rest_body_nested_33_deep_is_bad_json_and_32_is_parsed(api, user, general):
    body32 = '{"body": "hi", "client_id": "n32", "x": ' + nested(31) + "}"
    assert post_json(api, "/api/v1/rooms/general/messages/", body32).status_code == 201
    body33 = '{"body": "hi", "client_id": "n33", "x": ' + nested(32) + "}"
    response = post_json(api, "/api/v1/rooms/general/messages/", body33)
    assert (response.status_code, response.json()["code"]) == (400, "bad_json")
    assert list(Message.objects.filter(author=user).values_list("client_id", flat=True)) == ["n32"]


@pytest.mark.parametrize("body", ["\\u0000", "\\udc00", "a\\ud800b", " \\u0000 "])
def test_rest_unstorable_body_is_400_invalid_and_nothing_stored(api, user, general, body):
    response = post_json(api, "/api/v1/rooms/general/messages/", f'{{"body": "{body}", "client_id": "c1"}}')
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert not Message.objects.filter(author=user).exists()


def test_rest_edit_with_a_lone_surrogate_is_400(api, user, general):
    message, _ = services.message_post(room=general, author=user, body="orig", client_id="c1")
    response = post_json(api, f"/api/v1/messages/{message.pk}/", '{"body": "\\udc00"}', method="patch")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert Message.objects.get(pk=message.pk).body == "orig"


@pytest.mark.parametrize("data", [
    '{"slug": "ok-room", "name": "a\\u0000b"}',
    '{"slug": "ok-room", "name": "\\udc00"}',
    '{"slug": "ok\\u0000room"}',
    '{"slug": "\\ud800"}',
])
def test_rest_room_create_with_unstorable_text_is_400(api, data):
    response = post_json(api, "/api/v1/rooms/", data)
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert not Room.objects.filter(slug__startswith="ok").exists()


def test_service_refuses_unstorable_room_names_whatever_the_door(user):
    for name in (f"a{NUL}", SURROGATE, "   "):
        with pytest.raises(services.ChatError) as refused:
            services.room_create(owner=user, slug="named", name=name)
        assert refused.value.code == "invalid"
    assert not Room.objects.filter(slug="named").exists()


def test_rest_report_reason_with_a_nul_is_400(api, other, general):
    message, _ = services.message_post(room=general, author=other, body="hi", client_id="c1")
    response = post_json(api, f"/api/v1/messages/{message.pk}/report/", '{"reason": "spam\\u0000"}')
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_rest_search_q_with_a_nul_is_400(api, general):
    response = api.get("/api/v1/rooms/general/messages/", {"q": "hi\x00"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_rest_token_with_unstorable_username_is_400(general):
    response = post_json(APIClient(), "/api/v1/auth/token/", '{"username": "\\udc00", "password": "x"}')
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_django_body_cap_is_413_too_large_under_the_test_client(api, general, settings):
    """Past the ASGI cap (a test client, another entry point) Django's own cap answers 413."""
    big = json.dumps({"body": "x" * (django_settings.CHAT_MAX_BODY + 10), "client_id": "big"})
    response = post_json(api, "/api/v1/rooms/general/messages/", big)
    assert (response.status_code, response.json()["code"]) == (413, "too_large")


# --- the ASGI body cap (chat/limits.py) -------------------------------------------------


async def asgi_post(path: str, body: bytes, *, content_length: bool, content_type=b"application/json"):
    from chatproject.asgi import application

    headers = [(b"content-type", content_type), (b"host", b"localhost")]
    if content_length:
        headers.append((b"content-length", str(len(body)).encode()))
    communicator = HttpCommunicator(application, "POST", path, body=body, headers=headers)
    return await communicator.get_response(timeout=10)


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
@pytest.mark.parametrize("path, content_type", [
    ("/api/v1/auth/token/", b"application/json"),
    ("/accounts/signup/", b"application/x-www-form-urlencoded"),
    ("/accounts/login/", b"application/x-www-form-urlencoded"),
])
async def test_body_over_chat_max_body_is_413_too_large(path, content_type, content_length):
    body = b"a=" + b"x" * (10 * 1024 * 1024)
    response = await asgi_post(path, body, content_length=content_length, content_type=content_type)
    assert response["status"] == 413
    assert json.loads(response["body"]) == {"detail": "The request body is too large.", "code": "too_large"}


async def test_body_just_under_the_cap_reaches_the_app(settings, general):
    settings.CHAT_MAX_BODY = 4096
    ok = await asgi_post("/api/v1/auth/token/", b'{"username": "' + b"x" * 3000 + b'"}', content_length=True)
    assert ok["status"] == 400  # the view answered: the body was read
    over = await asgi_post("/api/v1/auth/token/", b'{"username": "' + b"x" * 5000 + b'"}', content_length=True)
    assert over["status"] == 413


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
async def test_the_upload_url_alone_has_the_larger_cap_of_chat_max_upload(settings, general, content_length):
    settings.CHAT_MAX_UPLOAD = 3 * 1024 * 1024
    body = b"x" * (2 * 1024 * 1024)  # over CHAT_MAX_BODY, under CHAT_MAX_UPLOAD
    upload = await asgi_post("/api/v1/rooms/general/uploads/", body, content_length=content_length,
                             content_type=b"multipart/form-data; boundary=b")
    assert upload["status"] == 401  # the view answered (no credentials): the cap let it through
    other = await asgi_post("/api/v1/rooms/general/messages/", body, content_length=content_length)
    assert other["status"] == 413
    over = await asgi_post("/api/v1/rooms/general/uploads/", b"x" * (3 * 1024 * 1024 + 65 * 1024),
                           content_length=content_length, content_type=b"multipart/form-data; boundary=b")
    assert (over["status"], json.loads(over["body"])["code"]) == (413, "too_large")


# --- HTML forms and the login backend -------------------------------------------------


@pytest.mark.parametrize("field", ["username", "password1"])
def test_signup_refuses_unstorable_text(db, field):
    data = {"username": "newbie", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"}
    data[field] = data[field] + NUL
    response = Client().post("/accounts/signup/", data)
    assert response.status_code == 200  # the form again, with its errors
    assert not get_user_model().objects.exists()


def test_signup_logs_in_and_the_session_is_checked_for_a_site_ban(db, general):
    client = Client()
    response = client.post(
        "/accounts/signup/", {"username": "newbie", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"}
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    # A ban written without the service (which would also end the sessions): the session
    # itself must stop authenticating, as chat.backends promises.
    SiteBan.objects.create(user=get_user_model().objects.get(username="newbie"), reason="spam")
    response = client.get("/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_site_banned_user_cannot_log_in(db):
    user = make_user("carl")
    user.set_password("a-Long-pass-42")
    user.save()
    SiteBan.objects.create(user=user, reason="spam")
    client = Client()
    response = client.post("/accounts/login/", {"username": "carl", "password": "a-Long-pass-42"})
    assert response.status_code == 200  # the form again
    assert client.get("/").status_code == 302
    assert APIClient().post("/api/v1/auth/token/", {"username": "carl", "password": "a-Long-pass-42"}).status_code == 400


def test_only_the_project_backend_authenticates():
    assert django_settings.AUTHENTICATION_BACKENDS == ["chat.backends.ChatModelBackend"]


# --- real servers: limits that only the ASGI server can enforce --------------------------


@pytest.fixture
def ann_server_token(general):
    from tests.factories import make_token

    return make_token(make_user("ann"))


def _raw_http(server, head: bytes, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send ``head`` (and ``body``), read the answer until the server closes or it is complete."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        conn.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


@pytest.mark.processes
@pytest.mark.parametrize("server_name", ["daphne", "uvicorn"])
async def test_real_server_closes_a_10_mb_frame_with_1009_and_answers_too_large_below(ann_server_token, tmp_path, server_name):
    import websockets

    from tests.servers import servers

    with servers(1, redis_url=None, log_dir=tmp_path, server=server_name) as (server,):
        async with websockets.connect(
            f"{server.ws}/ws/chat/", additional_headers={"Authorization": f"Token {ann_server_token}"}, proxy=None
        ) as ws:
            # Over the frame cap (64 KiB) but under the server's: an error, the socket stays.
            await ws.send(json.dumps({"type": "ping", "pad": "x" * 100_000}))
            assert json.loads(await ws.recv())["code"] == "too_large"
            await ws.send(json.dumps({"type": "ping", "ref": "still"}))
            assert json.loads(await ws.recv()) == {"type": "pong", "ref": "still"}
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.send("x" * (10 * 1024 * 1024))
                await ws.recv()
            assert closed.value.rcvd is not None, "the server dropped the connection without a close frame"
            assert closed.value.rcvd.code == 1009


@pytest.mark.processes
@pytest.mark.parametrize("server_name", ["daphne", "uvicorn"])
def test_real_server_answers_413_to_a_10_mb_body_before_reading_it(general, tmp_path, server_name):
    from tests.servers import servers

    with servers(1, redis_url=None, log_dir=tmp_path, server=server_name) as (server,):
        for path, kind in [("/api/v1/auth/token/", b"application/json"), ("/accounts/login/", b"application/x-www-form-urlencoded")]:
            head = (
                b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                % (path.encode(), kind, 10 * 1024 * 1024)
            )
            # Only the headers are sent: the answer must come without the body.
            answer = _raw_http(server, head)
            status_line, _, rest = answer.partition(b"\r\n")
            assert b" 413 " in status_line, answer[:300]
            assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {"detail": "The request body is too large.", "code": "too_large"}
        # A body sent whole but in chunks (no Content-Length) is cut off too.
        head = b"POST /api/v1/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"x" * 65536
        body = (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 40 + b"0\r\n\r\n"
        answer = _raw_http(server, head, body)
        assert b" 413 " in answer.partition(b"\r\n")[0], answer[:300]


@pytest.mark.parametrize("path, method", [
    ("/api/v1/rooms/gen%00eral/", "get"),
    ("/api/v1/rooms/lobby/members/bob%00/", "delete"),
    ("/api/v1/rooms/lobby/mutes/bob%00/", "delete"),
    ("/api/v1/rooms/lobby/bans/bob%00/", "delete"),
])
def test_rest_path_with_a_nul_is_404_not_a_500(api, room, general, path, method):
    """ann owns lobby, so the lookup of the user named in the path is reached."""
    response = getattr(api, method)(path)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_room_page_with_a_nul_in_the_slug_is_404(user, general):
    client = Client()
    client.force_login(user)
    assert client.get("/rooms/gen%00eral/").status_code == 404


@pytest.mark.parametrize("header", ["Token abc\x00def", "Token \x00"])
def test_rest_token_header_with_a_nul_is_401_not_a_500(general, header):
    response = APIClient().get("/api/v1/rooms/", HTTP_AUTHORIZATION=header)
    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


# --- protocol helpers -------------------------------------------------------------------


def test_encoded_frames_always_encode_to_utf8_even_with_a_lone_surrogate():
    from chat import protocol

    text = protocol.encode({"type": "pong", "ref": SURROGATE})
    assert json.loads(text.encode("utf-8").decode()) == {"type": "pong", "ref": SURROGATE}
    assert protocol.encode({"type": "pong", "ref": "é😀"}) == '{"type":"pong","ref":"é😀"}'


@pytest.mark.parametrize("text, ok", [
    (nested(32), True),
    (nested(33), False),
    ('{"a":' * 32 + "1" + "}" * 32, True),
    ('{"a":[' * 16 + '{"b":1}' + "]}" * 16, False),  # 33 levels, alternating
    (json.dumps({"s": "[" * 1000 + "{" * 1000}), True),  # brackets inside a string
    (json.dumps({"s": '\\"[[[' * 100}), True),  # escaped quotes do not end the string
    ('"' + "\\" * 99_999 + "[" * 40, True),  # an unterminated string swallows the rest
    ("[]," * 10_000 + "[" * 33 + "]" * 33, False),
])
def test_json_depth_check(text, ok):
    from chat import protocol

    assert protocol.json_depth_ok(text) is ok
