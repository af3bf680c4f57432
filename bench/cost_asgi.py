"""The project's ASGI application with its timed background work slowed to once an hour, for
bench/delivery_cost.py's callgrind runs only.

Under callgrind a load of a few seconds takes minutes, and the hub's database poll (every
0.5 s) and presence heartbeat (every 4 s) would add a cost per wall-clock second to a count
meant per delivery. They are per-second costs of a server, not per-delivery ones, so they are
kept out of the count; nothing else changes (the poll only fills what the layer lost, and
nothing is lost in one process).
"""

from chatproject.asgi import application  # noqa: F401  (what Daphne / uvicorn serve)
from chat.realtime import hub, presence

hub.POLL_INTERVAL = hub.HEARTBEAT = presence.HEARTBEAT = 3600.0
