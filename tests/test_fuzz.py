"""Arbitrary input thrown at every door (socket frames, REST, forms): none crashes a door, nothing
invalid is stored, and text that cannot be stored (NUL, lone surrogates) is refused."""

import json

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from chat import services
from chat.models import Message
from tests.conftest import open_socket, session_cookie
from tests.factories import make_user

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(["general", "", " ", "nowhere", "GENERAL", "x" * 70]),
    st.text(max_size=50),
    st.integers(min_value=-3, max_value=10**12),
)
frames = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["join", "leave", "send", "edit", "delete", "typing", "read", "ping", "nope"])},
        optional={
            "room": field_values,
            "body": field_values,
            "client_id": field_values,
            "id": field_values,
            "seq": field_values,
            "since": field_values,
            "ref": field_values,
        },
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=100),
    st.binary(max_size=50),
)


@pytest.mark.django_db(transaction=True)
@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(frames, min_size=1, max_size=8))
async def test_arbitrary_frames_never_crash_the_consumer_or_store_invalid_messages(batch, general, settings):
    settings.CHAT_POST_RATE = "0"
    user = await database_sync_to_async(make_user)()
    cookie = await database_sync_to_async(session_cookie)(user)

    if True:
        sock, connected, _ = await open_socket(cookie=cookie)
        assert connected
        assert (await sock.join("general"))["type"] == "joined"
        for frame in batch:
            if isinstance(frame, bytes):
                await sock.send_raw(bytes_data=frame)
            else:
                await sock.send_raw(frame)
        # The socket still answers, after whatever the frames caused.
        await sock.send(type="ping", ref="end")
        while True:
            reply = await sock.recv(timeout=5)
            assert reply["type"] != "error" or reply["code"] != "server_error", reply
            if reply == {"type": "pong", "ref": "end"}:
                break
        await sock.close()

    for message in await database_sync_to_async(list)(Message.objects.filter(author=user)):
        assert message.body == message.body.strip() and 0 < len(message.body) <= 4000
        assert 1 <= len(message.client_id) <= 64
        assert services.validate_body(message.body) == message.body


# --- arbitrary Unicode at every door (PROTOCOL.md 3.4) ----------------------------------
#
# `unstorable` always holds a NUL or a lone surrogate: every door must refuse it (4xx or an
# `error` frame) and store nothing. `any_text` is anything at all, surrogates and NUL
# included: no door may answer it with a 500 or a 1011 close, and what is stored is storable.

from urllib.parse import quote  # noqa: E402

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

import re  # noqa: E402
from chat.models import Report, Room  # noqa: E402

every_char = st.characters(codec=None, exclude_categories=())  # Cs (surrogates) and Cc (NUL) too
bad_char = st.just("\x00") | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text(alphabet=every_char, max_size=30)
unstorable = st.builds(lambda a, bad, b: a + bad + b, any_text, bad_char, any_text)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
FUZZ = hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def _storable(text: str) -> bool:
    """No NUL, no lone surrogate (the rule, restated here so the test does not trust the code)."""
    return _UNSTORABLE.search(text) is None


def _json(value) -> str:
    """JSON as a hostile client sends it: lone surrogates escaped (\\udc00), which is valid JSON."""
    return json.dumps(value, ensure_ascii=True)


def _form(data: dict) -> bytes:
    """A form body as a client may send it: UTF-8 with lone surrogates as their raw bytes."""
    return "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in data.items()).encode()


@pytest.fixture
def fuzz_rest(user, other, general, settings):
    settings.CHAT_POST_RATE = "0"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    mine, _ = services.message_post(room=general, author=user, body="mine", client_id="mine")
    theirs, _ = services.message_post(room=general, author=other, body="theirs", client_id="theirs")
    return api, user, mine, theirs


def _rest_doors(api, user, mine, theirs, text):
    """Throw ``text`` at each REST and form door; yield (door, response, stored_something)."""
    def post(path, data, method="post"):
        return getattr(api, method)(path, data=_json(data), content_type="application/json")

    r = post("/api/v1/rooms/general/messages/", {"body": text, "client_id": "fz"})
    yield "post body", r, Message.objects.filter(author=user, client_id="fz").exists()
    r = post("/api/v1/rooms/general/messages/", {"body": "hi", "client_id": text})
    yield "post client_id", r, Message.objects.filter(author=user).exclude(client_id__in=["mine", "fz"]).exists()
    r = post(f"/api/v1/messages/{mine.pk}/", {"body": text}, method="patch")
    yield "edit body", r, Message.objects.get(pk=mine.pk).body != "mine"
    r = api.get("/api/v1/rooms/general/messages/?q=" + quote(text.encode("utf-8", "surrogatepass")))
    yield "search q", r, False
    r = post("/api/v1/rooms/", {"slug": text, "name": "x"})
    yield "room slug", r, Room.objects.exclude(slug="general").exists()
    r = post("/api/v1/rooms/", {"slug": "fuzzed", "name": text})
    yield "room name", r, Room.objects.filter(slug="fuzzed").exists()
    r = post(f"/api/v1/messages/{theirs.pk}/report/", {"reason": text})
    yield "report reason", r, Report.objects.exists()
    r = APIClient().post("/api/v1/auth/token/", data=_json({"username": text, "password": text}), content_type="application/json")
    yield "token", r, False
    for field in ("username", "password1"):
        data = {"username": "fuzzer", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"}
        data[field] = text
        if field == "password1":
            data["password2"] = text
        r = Client().post("/accounts/signup/", data=_form(data), content_type="application/x-www-form-urlencoded")
        yield f"signup {field}", r, get_user_model().objects.filter(username__startswith="fuzz").exists() or (
            get_user_model().objects.count() > 2
        )


def _cleanup(user, mine):
    Message.objects.filter(author=user).exclude(pk=mine.pk).delete()
    Message.objects.filter(pk=mine.pk).update(body="mine")
    Room.objects.exclude(slug="general").delete()
    Report.objects.all().delete()
    get_user_model().objects.exclude(pk__in=[user.pk, mine.author_id]).exclude(username="bob").delete()


@pytest.mark.django_db
@FUZZ
@given(text=unstorable)
def test_unstorable_text_is_refused_at_every_rest_and_form_door(fuzz_rest, text):
    api, user, mine, theirs = fuzz_rest
    cache.clear()  # the token door's login throttle
    for door, response, stored in _rest_doors(api, user, mine, theirs, text):
        assert response.status_code < 500, (door, response.status_code)
        if door == "search q" or door.startswith("signup"):
            # A query string or a form carries no lone surrogate (its bytes decode as U+FFFD);
            # a NUL is refused.
            if "\x00" in text:
                assert response.status_code == 400 or (door.startswith("signup") and response.status_code == 200), door
                assert not stored, door
        else:
            assert 400 <= response.status_code < 500, (door, response.status_code)
            assert not stored, door
    _cleanup(user, mine)


@pytest.mark.django_db
@FUZZ
@given(text=any_text)
def test_any_text_at_every_rest_and_form_door_is_never_a_500(fuzz_rest, text):
    api, user, mine, theirs = fuzz_rest
    cache.clear()
    for door, response, _stored in _rest_doors(api, user, mine, theirs, text):
        assert response.status_code < 500, (door, response.status_code)
    for message in Message.objects.all():
        assert _storable(message.body) and _storable(message.client_id)
    for room in Room.objects.all():
        assert _storable(room.name) and _storable(room.slug)
    _cleanup(user, mine)


def _socket_frames(text, mine_id):
    """(door, frame) pairs putting ``text`` in each text field of a client frame."""
    return [
        ("send body", {"type": "send", "room": "general", "body": text, "client_id": "fz1"}),
        ("send client_id", {"type": "send", "room": "general", "body": "hi", "client_id": text}),
        ("edit body", {"type": "edit", "id": mine_id, "body": text}),
        ("join room", {"type": "join", "room": text}),
        ("leave room", {"type": "leave", "room": text}),
        ("ping ref", {"type": "ping", "ref": text}),
        ("send ref", {"type": "send", "room": "general", "body": "by ref", "client_id": "fz2", "ref": text}),
    ]


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(texts=st.lists(st.one_of(unstorable, any_text), min_size=1, max_size=3))
async def test_any_text_in_every_socket_field_gets_an_answer_and_unstorable_text_is_refused(texts, general, settings):
    settings.CHAT_POST_RATE = "0"
    user = await database_sync_to_async(make_user)()
    mine, _ = await database_sync_to_async(services.message_post)(room=general, author=user, body="mine", client_id="mine")
    cookie = await database_sync_to_async(session_cookie)(user)
    sock, connected, _ = await open_socket(cookie=cookie)
    assert connected
    assert (await sock.join("general"))["type"] == "joined"
    for text in texts:
        bad = not _storable(text)
        for door, frame in _socket_frames(text, mine.pk):
            if "ref" not in frame:
                frame["ref"] = "r"
            await sock.send_raw(_json(frame))
            # Every one of these frames has a direct reply, except a successful edit.
            while True:
                reply = await sock.recv(timeout=5)
                if reply["type"] not in ("message", "message.edited"):
                    break
                if door == "edit body" and reply["type"] == "message.edited":
                    break
            assert not (reply["type"] == "error" and reply["code"] == "server_error"), (door, reply)
            if bad:
                if door.endswith("ref"):
                    assert (reply["type"], reply["code"]) == ("error", "bad_frame") and "ref" not in reply, (door, reply)
                else:
                    assert reply["type"] == "error" and reply["code"] in ("invalid", "bad_frame"), (door, reply)
                    assert reply.get("ref") == "r", (door, reply)
            if door == "join room" and reply["type"] == "joined":
                # Joined some other room by that name: back to general for the next frames.
                await sock.send_raw(_json({"type": "leave", "room": reply["room"]}))
                await sock.recv_until("left")
            if door == "leave room" and reply["type"] == "left" and text == "general":
                assert (await sock.join("general"))["type"] == "joined"
        # The socket is still open and answering.
        await sock.send(type="ping", ref="alive")
        assert await sock.recv_until("pong") == {"type": "pong", "ref": "alive"}
        await database_sync_to_async(Message.objects.filter(author=user).exclude(pk=mine.pk).delete)()
    await sock.close()

    for message in await database_sync_to_async(list)(Message.objects.filter(author=user)):
        assert _storable(message.body) and _storable(message.client_id)
