"""Notification fan-out across two real Daphne processes on the real Redis: a message that
mentions 50 users, each with a socket on both processes, costs each process one
channel-layer message (not 50), and every socket gets its `notification` frame.

Prints the measurement docs/decisions.md quotes (deliveries, p50/p99 from the send, layer
messages per process)."""

import asyncio
import json
import statistics

import pytest
import websockets

from tests.conftest import redis_url
from tests.factories import make_token, make_user
from tests.servers import servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

USERS = 50
MESSAGES = 10


async def _recv(ws, type_, timeout=10):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == type_:
            return frame


def _layer_received(server, kind: str) -> float:
    return sum(v for k, v in server.metrics().items()
               if k.startswith("chat_layer_messages_received_total") and f'type="{kind}"' in k)


@pytest.fixture
def accounts(general):
    names = [f"m{i}" for i in range(USERS)]
    return make_token(make_user("ann")), names, [make_token(make_user(name)) for name in names]


async def test_a_message_mentioning_50_users_costs_one_layer_message_per_process(accounts, tmp_path):
    ann, names, tokens = accounts
    body = " ".join(f"@{n}" for n in names)
    with servers(2, redis_url=redis_url(), log_dir=tmp_path) as (a, b):
        headers = lambda token: {"Authorization": f"Token {token}"}  # noqa: E731
        sockets = [await websockets.connect(f"{server.ws}/ws/chat/", additional_headers=headers(t))
                   for t in tokens for server in (a, b)]
        sender = await websockets.connect(f"{a.ws}/ws/chat/general/", additional_headers=headers(ann))
        await _recv(sender, "joined")
        await asyncio.sleep(0.5)  # every hub has joined its groups
        before = (_layer_received(a, "user.notifications"), _layer_received(b, "user.notifications"))
        loop = asyncio.get_running_loop()
        latencies = []
        for i in range(MESSAGES):
            sent = loop.time()
            await sender.send(json.dumps({"type": "send", "room": "general", "body": f"{body} #{i}", "client_id": f"f{i}"}))

            async def one(ws):
                frame = await _recv(ws, "notification")
                latencies.append(loop.time() - sent)
                return frame

            frames = await asyncio.gather(*(one(ws) for ws in sockets))
            assert {f["notification"]["message"]["body"] for f in frames} == {f"{body} #{i}"}
        await asyncio.sleep(0.3)
        after = (_layer_received(a, "user.notifications"), _layer_received(b, "user.notifications"))
        per_process = [(y - x) / MESSAGES for x, y in zip(before, after)]
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"\nfan-out: {USERS} users x 2 processes, {MESSAGES} messages: {len(latencies)} deliveries, "
              f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms from the send; "
              f"layer messages received per message: A {per_process[0]:.1f}, B {per_process[1]:.1f}")
        for ws in [*sockets, sender]:
            await ws.close()
    assert len(latencies) == USERS * 2 * MESSAGES
    assert per_process == [1.0, 1.0]
    assert p99 < 1.0
