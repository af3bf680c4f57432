"""What services call once their transaction has committed: the named events that reach
every socket concerned, in every server process.

Safe from any thread (a ``transaction.on_commit`` callback runs in the writer's); nothing
here blocks on the channel layer. In a process that runs a hub the message is handed to the
hub's loop, which delivers it to its own sockets at once and queues it for the layer; in a
process without one (a management command, a plain HTTP worker) it goes straight to the layer.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .. import metrics, protocol
from ..protocol import RoomEventFrame, UserEvent
from .hub import HUBS_GROUP, current_hub, room_group, user_group

log = logging.getLogger(__name__)


def room_events_publish(rooms: list[tuple[int, list[RoomEventFrame]]]) -> None:
    """Announce committed room events to every process: ``rooms`` is [(room id, its frames
    in seq order)] of one transaction (a group commit's rooms).

    One layer message per room carries its frames: a group commit of many posts to one
    room costs each process one message. The rooms are handed to this process's hub in one
    wake-up of its loop.
    """
    at = time.time()  # the commit's time, carried to every delivery (metrics.DELIVERY_SECONDS)
    items, kinds = [], Counter()
    for room_id, frames in rooms:
        frames = [replace(frame, at=at) for frame in frames]
        kinds.update(metrics.event_type(frame.text) for frame in frames)
        items.append((room_group(room_id), protocol.room_events_message(room_id=room_id, frames=frames, at=at),
                      ("room", room_id, frames)))
    for kind, n in kinds.items():
        metrics.ROOM_EVENTS.labels(kind).inc(n)
    metrics.MESSAGES_STORED.inc(kinds[protocol.MESSAGE])
    _publish_many(items)


def room_ephemeral_publish(*, room_id: int, text: str, except_user: int | None = None) -> None:
    """Send an unnumbered frame (encoded: ``text``) to the room's sockets but ``except_user``'s."""
    _publish(room_group(room_id), protocol.room_ephemeral_message(room_id=room_id, text=text, except_user=except_user))


def room_notice_publish(*, room_id: int, notice: protocol.Notice) -> None:
    """Send a notice key's latest value (stored already) to every socket that joined the room.

    One layer message per process, as for room events; each hub conflates per socket.
    """
    metrics.NOTICES_PUBLISHED.inc()
    _publish(room_group(room_id), protocol.room_notice_message(room_id=room_id, notice=notice),
             local=("notice", room_id, notice))


def user_event_publish(*, user_id: int, event: UserEvent) -> None:
    """Send ``event`` (protocol.close_event(), kick_event(), read_event()) to every socket of the user."""
    _publish(user_group(user_id), protocol.user_event_message(user_id=user_id, event=event))


def user_notifications_publish(*, notes: list[protocol.NotificationsOfMessage]) -> None:
    """Send the ``notification`` frames of committed notifications to every socket of each
    notified user (``notes``: one per message, see protocol.NotificationsOfMessage).

    One layer message to every process (HUBS_GROUP), however many users and messages; each
    hub delivers to the users it has sockets of, and this process's hub its own at once.
    """
    hub = current_hub()
    payload = protocol.user_notifications_message(origin=hub.channel if hub is not None else None, notes=notes)
    _publish(HUBS_GROUP, payload, local=("notifications", None, payload) if hub is not None else None)


def _publish(group: str, message: protocol.LayerMessage, local: tuple | None = None) -> None:
    _publish_many([(group, message, local)])


def _publish_many(items: list[tuple[str, protocol.LayerMessage, tuple | None]]) -> None:
    """Hand (group, message, local inbox item) to this process's hub, all in one wake-up of
    its loop; without a hub, send each to the layer from this thread."""
    hub = current_hub()
    if hub is not None:
        hub.loop.call_soon_threadsafe(_hand_over, hub, items)
        return
    for group, message, _local in items:
        try:
            async_to_sync(get_channel_layer().group_send)(group, message)
        except Exception as exc:
            log.warning("channel layer send to %s failed: %r; sockets catch up from the database", group, exc)


def _hand_over(hub, items: list[tuple[str, protocol.LayerMessage, tuple | None]]) -> None:
    for group, message, local in items:
        hub.publish(group, message, local)
