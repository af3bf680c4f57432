"""How much Channels' per-event thread hop costs on the relay path.

AsyncConsumer.dispatch awaits aclose_old_connections() (a database_sync_to_async call, i.e. a
hop to the database thread and back) before every handler. ChatConsumer.dispatch skips it.
This times N events through each dispatch on one event loop and prints a table.

    .venv/bin/python bench/dispatch_hop.py [N]
"""

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

import django  # noqa: E402

django.setup()

from channels.consumer import AsyncConsumer  # noqa: E402

from chat.consumers import ChatConsumer  # noqa: E402


class Channels(AsyncConsumer):
    channel_layer_alias = None

    async def relay(self, message):
        pass


class Ours(ChatConsumer):
    async def relay(self, message):
        pass


async def run(consumer_class, n: int) -> float:
    consumer = consumer_class()
    message = {"type": "relay"}
    start = time.perf_counter()
    for _ in range(n):
        await consumer.dispatch(message)
    return time.perf_counter() - start


async def main(n: int) -> None:
    rows = []
    for name, cls in (("channels AsyncConsumer.dispatch", Channels), ("ChatConsumer.dispatch", Ours)):
        await run(cls, min(n, 1000))  # warm up the thread
        elapsed = await run(cls, n)
        rows.append((name, n / elapsed, elapsed / n * 1e6))
    print(f"{'dispatch':<34} {'events/s':>12} {'µs/event':>10}")
    for name, rate, micros in rows:
        print(f"{name:<34} {rate:>12,.0f} {micros:>10.1f}")
    print(f"ratio: {rows[1][1] / rows[0][1]:.0f}x")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
