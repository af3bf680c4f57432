"""The hub on the real Redis channel layer, whatever the configured layer is."""

import asyncio
import time

import pytest
from channels.layers import get_channel_layer

from chat import protocol, realtime
from tests.conftest import open_socket, redis_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": settings.CHANNEL_LAYERS["default"]["CONFIG"]
            if "redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]
            else {"hosts": [{"address": redis_url(), "socket_timeout": 15, "socket_connect_timeout": 2}]},
        }
    }
    return get_channel_layer()


async def test_an_idle_socket_survives_10_s_and_still_receives_over_redis(redis_layer, ann_cookie, general):
    """redis-py 8's default 5 s socket timeout broke channels-redis' blocking receive
    (django/channels_redis#422); settings pass an explicit socket_timeout."""
    sock, connected, _ = await open_socket(cookie=ann_cookie)
    assert connected
    assert (await sock.join("general"))["type"] == "joined"
    await asyncio.sleep(10.5)
    # Sent straight to the group, so only the layer's receive path can deliver it.
    text = protocol.encode({"type": "message", "room": "general", "seq": 1, "message": {"body": "via redis"}})
    message = protocol.room_events_message(room_id=general.pk, frames=[protocol.RoomEventFrame(seq=1, text=text)], at=time.time())
    await redis_layer.group_send(realtime.room_group(general.pk), message)
    assert (await sock.recv(timeout=3))["message"]["body"] == "via redis"
    await sock.send(type="ping")
    assert (await sock.recv())["type"] == "pong"
    assert realtime.current_hub().layer_errors == 0


async def test_a_redis_that_comes_back_empty_gets_the_groups_back_without_any_error(redis_layer, ann_cookie, general, monkeypatch):
    """A restarted (or flushed) shard drops the hub's groups silently when the hub neither
    sends nor receives on it meanwhile; the hub's marker finds that and re-joins at once,
    not at the next 60 s refresh."""
    import redis as redis_py

    from chat.realtime import hub as hub_module

    monkeypatch.setattr(hub_module, "WATCH_INTERVAL", 0.2)
    monkeypatch.setattr(hub_module, "REFRESH_UNHEALTHY", 0.2)
    sock, connected, _ = await open_socket(cookie=ann_cookie)
    assert connected
    assert (await sock.join("general"))["type"] == "joined"
    group_key = f"asgi:group:{realtime.room_group(general.pk)}"
    client = redis_py.Redis.from_url(redis_url())
    await asyncio.sleep(0.5)  # the marker is set
    assert client.exists(group_key)
    client.flushdb()
    assert not client.exists(group_key)
    deadline = time.monotonic() + 5
    while not client.exists(group_key):
        assert time.monotonic() < deadline, "the hub did not re-join its group within 5 s"
        await asyncio.sleep(0.1)
    text = protocol.encode({"type": "message", "room": "general", "seq": 1, "message": {"body": "after the flush"}})
    message = protocol.room_events_message(room_id=general.pk, frames=[protocol.RoomEventFrame(seq=1, text=text)], at=time.time())
    await redis_layer.group_send(realtime.room_group(general.pk), message)
    assert (await sock.recv(timeout=3))["message"]["body"] == "after the flush"
