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
