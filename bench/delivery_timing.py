"""What timing deliveries costs the fan-out (chat_delivery_seconds; chat/realtime/feed.py).

    .venv/bin/python bench/delivery_timing.py

One room's feed delivering 200 events to 1,000 sockets that write nothing (the hub's own
per-delivery work only), three ways: without a commit time (nothing observed: the
reference), observed once per 64 writes (what the server does), and once per write (a clock
read and a histogram update per socket). Best of 7; nanoseconds per delivery.
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
from chat.protocol import RoomEventFrame  # noqa: E402
from chat.realtime import feed as feedmod  # noqa: E402
from chat.realtime.feed import RoomFeed, Subscription  # noqa: E402

class Sock:
    async def send_event(self, frame): pass
    async def fail(self): pass

async def run(n_subs, events, at, per_write=False):
    f = RoomFeed(1, "r", fill_delay=1, refill=lambda fr: None, drop=lambda s: None)
    f.start(0)
    for _ in range(n_subs):
        s = Subscription(Sock(), 1); s.buffer = None; f.subs.add(s)
    feedmod.TIME_EVERY = 1 if per_write else 64  # per write: a clock read and an update per socket
    frames = [RoomEventFrame(seq=i + 1, text="{}", at=(time.time() if at else None)) for i in range(events)]
    t = time.perf_counter()
    for fr in frames:
        await f.accept([fr])
    dt = time.perf_counter() - t
    return dt / (n_subs * events) * 1e9

async def main():
    print(f"{'':<36} {'ns per delivery':>15}")
    for label, kw in (("no commit time (nothing observed)", dict(at=False)), ("observed once per 64 writes", dict(at=True)), ("observed per write (naive)", dict(at=True, per_write=True))):
        best = min([await run(1000, 200, **kw) for _ in range(7)])
        print(f"{label:<36} {best:>15,.0f}")
asyncio.run(main())
