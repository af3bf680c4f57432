"""Arbitrary frames thrown at the consumer: none crashes it, nothing invalid is stored."""

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
