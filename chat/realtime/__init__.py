"""Room events and presence, from a committed change to every socket concerned, across
server processes. The only package that talks to the channel layer.

- publish.py: what services call after commit (room_events_publish, user_event_publish, …).
- hub.py: the per-process delivery engine: the process's channel, its groups, the sockets.
- feed.py: one room's ordered, gap-free stream, and one socket's place in it.
- presence.py: who is online in which room (and who has any socket open), across processes.
- notices.py: the latest value per notice key (Redis or memory) and each socket's conflated
  delivery of them (PROTOCOL.md 9).

The messages between processes and the frames for sockets are built in chat.protocol.
"""

from .feed import RoomFeed, Subscription
from .hub import Hub, Socket, ahub, current_hub, hub_stop, room_group, user_group
from .notices import NOTICE_BACKLOG, NoticeOutbox, notice_store
from .presence import room_online, users_connected
from .publish import (
    room_ephemeral_publish,
    room_events_publish,
    room_notice_publish,
    user_event_publish,
    user_notifications_publish,
)

__all__ = [
    "NOTICE_BACKLOG",
    "Hub",
    "NoticeOutbox",
    "RoomFeed",
    "Socket",
    "Subscription",
    "ahub",
    "current_hub",
    "notice_store",
    "hub_stop",
    "room_ephemeral_publish",
    "room_events_publish",
    "room_notice_publish",
    "room_group",
    "room_online",
    "user_event_publish",
    "user_group",
    "user_notifications_publish",
    "users_connected",
]
