"""ChatConsumer: authenticate → parse → call a service → relay events (PROTOCOL.md 3)."""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError

from . import batching, metrics, protocol, realtime, rules, selectors, serving, services
from .coalesce import coalesced, each
from .db import db_call
from .models import Room
from .commands import CommandReply
from .protocol import ChatError

log = logging.getLogger(__name__)

FLOOD_WINDOW = 10.0  # seconds
FLOOD_LIMIT = 10  # rate_limited replies within the window before closing with 4429


def _join_rooms(joins: Sequence[tuple[Any, str]]) -> list[Room | Exception]:
    """Join each (user, slug), in order: its room, or the ChatError refusing it. The rooms and
    everyone's standing in two queries however many joins (chat/coalesce.py)."""
    ids = dict(Room.objects.filter(slug__in={slug for _user, slug in joins}).values_list("slug", "pk"))
    accesses = rules.room_access_many({(ids[slug], user, rules.Door.SOCKET) for user, slug in joins if slug in ids})
    given: set[int] = set()

    def join(item):
        user, slug = item
        access = accesses.get((ids.get(slug), user.pk, rules.Door.SOCKET))
        services.room_join(access=access, user=user)
        # Two sockets of one user in one batch share an access: each keeps a room of its own.
        room = access.room if id(access) not in given else copy.copy(access.room)
        given.add(id(access))
        return room

    return each(join, joins)


class ChatConsumer(AsyncConsumer):
    """One WebSocket. Room events reach it from the process's realtime.Hub, not from a
    channel of its own, so the consumer has no channel-layer channel."""

    channel_layer_alias = None

    async def dispatch(self, message):
        # AsyncConsumer.dispatch hops to a thread for close_old_connections() before every
        # event; database_sync_to_async already does that around each query, so the hop
        # is pure cost on every frame.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is not None:
            await handler(message)

    # -- lifecycle --

    async def websocket_connect(self, message):
        self.user = self.scope["user"]
        self.user_id = self.user.pk
        self.username = getattr(self.user, "username", "")
        self.session_key = self.scope.get("session_key")
        self.auth_token = self.scope.get("auth_token")
        self.rooms: dict[str, tuple[Room, realtime.Subscription]] = {}
        # While a `join` is in flight (frames are handled one at a time): room id → reason of
        # each kick that arrived meanwhile, which the room's entry in `rooms` would have missed.
        self.join_kicks: dict[int, str] | None = None
        self.closed = False
        self.socket_id = uuid.uuid4().hex
        self.hub: realtime.Hub | None = None
        self.rate_limited_at: deque[float] | None = None  # made on the first refusal (memory per socket)
        self.frame_tokens = float(settings.CHAT_FRAME_BURST)
        self.frame_time = time.monotonic()
        backlog = serving.send_backlog(self.base_send)
        self.backlog = backlog
        self.slow = serving.SlowSocketCheck(backlog) if backlog is not None else None

        accept = {"type": "websocket.accept"}
        if protocol.SUBPROTOCOL in (self.scope.get("subprotocols") or []):
            accept["subprotocol"] = protocol.SUBPROTOCOL
        await self.base_send(accept)
        self.write_frame = serving.frame_writer(self.base_send)
        if self.scope.get("site_banned"):
            await self.send_frame(protocol.error_frame(protocol.FORBIDDEN, "This account is banned."))
            await self.close(protocol.CLOSE_BANNED)
            return
        if not self.user.is_authenticated:
            await self.send_frame(protocol.error_frame(protocol.UNAUTHENTICATED, "Log in or send a token."))
            await self.close(protocol.CLOSE_UNAUTHENTICATED)
            return
        hub = await realtime.ahub()
        if 0 < settings.CHAT_MAX_CONNECTIONS <= hub.sockets_open:
            # Load shedding: the client reconnects later, with backoff (docs/protocol.md).
            metrics.SOCKETS_REFUSED.labels("max_connections").inc()
            await self.close(protocol.CLOSE_TRY_AGAIN_LATER)
            return
        if len(hub.users.get(self.user_id, ())) >= settings.CHAT_MAX_SOCKETS_PER_USER:
            metrics.SOCKETS_REFUSED.labels("per_user_limit").inc()
            await self.reply_error(ChatError(protocol.RATE_LIMITED, "Too many open sockets.", retry_after=5.0))
            await self.close(protocol.CLOSE_FLOODING)
            return
        self.hub = hub
        await self.hub.user_attach(self)
        metrics.SOCKETS_OPEN.inc()
        slug = self.scope["url_route"]["kwargs"].get("slug")
        if slug:
            await self.handle_frame({"type": protocol.JOIN, "room": slug})

    async def websocket_disconnect(self, message):
        self.closed = True
        if self.hub is not None:
            for _room, sub in self.rooms.values():
                self.hub.unsubscribe(sub)
            self.rooms.clear()
            self.hub.user_detach(self)
            metrics.SOCKETS_OPEN.dec()
        raise StopConsumer()

    async def websocket_receive(self, message):
        if self.closed or self.hub is None:
            return
        if not self._frame_budget():
            await self.reply_error(ChatError(protocol.RATE_LIMITED, "Too many frames.", retry_after=1.0))
            return
        try:
            frame = protocol.parse_frame(message.get("text"))
        except ChatError as error:
            await self.reply_error(error)
            return
        await self.handle_frame(frame)

    # -- sending --

    async def send_text(self, text: str) -> None:
        if not self.closed:
            try:
                await self.base_send({"type": "websocket.send", "text": text})
            except (OSError, RuntimeError):  # uvicorn: the connection is gone or closing
                self.closed = True
                return
            await self._check_backlog()

    async def send_event(self, frame: protocol.RoomEventFrame | protocol.Notice) -> None:
        """Send a room event (or a notice): its ready-made frame where the server allows (serving.frame_writer)."""
        if self.write_frame is None:
            await self.send_text(frame.text)
        elif not self.write_now(frame.wire):
            await self.close_slow()

    def write_now(self, wire: bytes) -> bool:
        """Write ready-made frames (one, or several joined) now, without awaiting: the hub's
        fast path (realtime.feed), only when ``write_frame`` is not None. False if the socket
        has fallen too far behind and must be closed now (close_slow())."""
        if self.closed:
            return True
        if not self.write_frame(wire):
            self.closed = True  # closing or gone: websocket.disconnect follows
            return True
        return self.slow is None or not self.slow.too_slow()

    def notice_busy(self) -> bool:
        """True while the server holds more unsent bytes than a notice may wait behind
        (realtime.NoticeOutbox holds the newest value of each key meanwhile)."""
        return self.backlog is not None and self.backlog() > realtime.NOTICE_BACKLOG

    async def send_notice(self, notice: protocol.Notice) -> None:
        """Send a notice: ready-made bytes like a room event (it has ``text`` and ``wire``)."""
        await self.send_event(notice)
        metrics.NOTICES_SENT.inc()

    async def _check_backlog(self) -> None:
        if self.slow is not None and self.slow.too_slow():
            await self.close_slow()

    async def close_slow(self) -> None:
        # The server buffers what the client does not read; a reconnect resumes with `since`.
        log.warning("closing a socket of %s that stopped reading (%d bytes unsent)", self.username, self.slow.backlog())
        await self.close(protocol.CLOSE_INTERNAL_ERROR)

    async def send_frame(self, frame: protocol.ServerFrame) -> None:
        await self.send_text(protocol.encode(frame))

    async def close(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            metrics.SOCKETS_CLOSED.labels(str(code)).inc()
            # Daphne refuses 1001 and 1011 through ASGI (see serving.close_directly).
            if not serving.close_directly(self.base_send, code):
                try:
                    await self.base_send({"type": "websocket.close", "code": code})
                except (OSError, RuntimeError):  # uvicorn: the connection is gone already
                    pass

    async def fail(self) -> None:
        """Close with 1011: the client reconnects and resumes with `since`."""
        await self.close(protocol.CLOSE_INTERNAL_ERROR)

    async def reply_error(self, error: ChatError) -> None:
        metrics.ERRORS.labels(error.code).inc()
        await self.send_frame(protocol.error_frame(error.code, error.detail, ref=error.ref, retry_after=error.retry_after))
        if error.code == protocol.RATE_LIMITED:
            now = time.monotonic()
            if self.rate_limited_at is None:
                self.rate_limited_at = deque()
            self.rate_limited_at.append(now)
            while self.rate_limited_at and self.rate_limited_at[0] < now - FLOOD_WINDOW:
                self.rate_limited_at.popleft()
            if len(self.rate_limited_at) > FLOOD_LIMIT:
                await self.close(protocol.CLOSE_FLOODING)

    def _frame_budget(self) -> bool:
        """Token bucket on all frames, so one client cannot keep the process busy."""
        now = time.monotonic()
        rate = settings.CHAT_FRAME_RATE
        self.frame_tokens = min(settings.CHAT_FRAME_BURST, self.frame_tokens + (now - self.frame_time) * rate)
        self.frame_time = now
        if self.frame_tokens < 1:
            return False
        self.frame_tokens -= 1
        return True

    # -- frames --

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        received = time.perf_counter()
        ref = frame.get("ref")
        handler = getattr(self, "frame_" + frame["type"])
        try:
            reply = await handler(frame)
        except ChatError as error:
            error.ref = ref
            await self.reply_error(error)
            return
        except (OperationalError, InterfaceError) as exc:
            log.warning("database unavailable: %r", exc)
            await self.reply_error(ChatError(protocol.UNAVAILABLE, "The database is unavailable; retry later.", ref=ref))
            return
        except Exception:
            log.exception("frame %s failed", frame["type"])
            await self.reply_error(ChatError(protocol.SERVER_ERROR, "Something went wrong; retry.", ref=ref))
            return
        if reply is not None:
            if ref is not None:
                reply["ref"] = ref
            await self.send_frame(reply)
            if reply["type"] == protocol.ACK:
                metrics.ACK_SECONDS.observe(time.perf_counter() - received)

    def _joined(self, slug: str) -> Room:
        if slug not in self.rooms:
            raise ChatError(protocol.NOT_JOINED, "Join the room first.")
        return self.rooms[slug][0]

    def _leave(self, slug: str) -> None:
        room_sub = self.rooms.pop(slug, None)
        if room_sub is not None:
            self.hub.unsubscribe(room_sub[1])

    async def frame_join(self, frame):
        slug = services.validate_slug(frame["room"])
        self._leave(slug)
        self.join_kicks = {}
        try:
            # Coalesced with the other joins waiting meanwhile (a reconnect storm: chat/coalesce.py).
            room = await coalesced(_join_rooms, (self.user, slug))
            sub = await self.hub.subscribe(self, room.pk, room.slug)
            try:
                resume = await coalesced(selectors.room_resume_many, (room.pk, frame.get("since")))
                online = await self.hub.online(room.pk, including=self.username)
            except BaseException:
                self.hub.unsubscribe(sub)
                raise
            self.rooms[slug] = (room, sub)  # from here on a kick finds the room in `rooms`
        finally:
            kicks, self.join_kicks = self.join_kicks, None
        joined = protocol.joined_frame(room=slug, seq=resume.seq, online=online, resync=resume.resync, ref=frame.get("ref"))
        if room.pk in kicks:
            # Removed or banned after the access check passed: the kick must not be lost, so
            # the socket is told as if it had come a moment after the join.
            self._leave(slug)
            await self.send_frame(joined)
            await self.send_frame(protocol.kicked_frame(room=slug, reason=kicks[room.pk]))
            return
        await self.send_frame(joined)
        if self.rooms.get(slug, (None, None))[1] is not sub:
            return  # kicked (or closed) while `joined` went out: no notices, no replay
        # The room's current notices follow `joined` (PROTOCOL.md 9), then any replay.
        await sub.outbox.start(self.hub.notices(room.pk))
        metrics.JOINS.labels("resync" if resume.resync else "live" if frame.get("since") is None else "resume").inc()
        for replay in resume.frames:
            await self.send_event(replay)
        metrics.DELIVERIES.labels("replay").inc(len(resume.frames))
        await sub.start(last=resume.seq)

    async def frame_leave(self, frame):
        self._leave(frame["room"])
        return protocol.left_frame(room=frame["room"])

    async def frame_send(self, frame):
        room = self._joined(frame["room"])
        # A client_id that cannot be stored is refused before the batch looks it up (PostgreSQL
        # refuses NUL in a query); the body is judged by the service, after the permissions.
        protocol.validate_text(frame["client_id"], field="client_id")
        with metrics.timed(metrics.STORE_SECONDS):
            result = await batching.post(
                services.Post(
                    room=room, author=self.user, body=frame["body"], client_id=frame["client_id"],
                    reply_to=frame.get("reply_to"), attachments=tuple(frame.get("attachments") or ()),
                    interactive=True,
                )
            )
        if isinstance(result, CommandReply):  # /help, /topic: nothing stored, so no ack
            return protocol.command_frame(room=result.room, text=result.text, client_id=result.client_id)
        message, _created = result
        return protocol.ack_frame(room=message.room.slug, client_id=message.client_id, id=message.pk, seq=message.seq)

    async def frame_edit(self, frame):
        await db_call(services.message_edit)(
            message_id=frame["id"], user=self.user, body=frame["body"], door=rules.Door.SOCKET
        )

    async def frame_delete(self, frame):
        await db_call(services.message_delete)(message_id=frame["id"], user=self.user, door=rules.Door.SOCKET)

    async def frame_react(self, frame):
        # Counted by the frame budget like every frame, never by CHAT_POST_RATE.
        await db_call(services.reaction_add)(
            message_id=frame["id"], user=self.user, emoji=frame["emoji"], door=rules.Door.SOCKET
        )

    async def frame_unreact(self, frame):
        await db_call(services.reaction_remove)(
            message_id=frame["id"], user=self.user, emoji=frame["emoji"], door=rules.Door.SOCKET
        )

    async def frame_typing(self, frame):
        room = self._joined(frame["room"])
        if await self.hub.typing_allowed(self.user_id, room.pk):
            text = protocol.encode(protocol.typing_frame(room=room.slug, user=self.username))
            realtime.room_ephemeral_publish(room_id=room.pk, text=text, except_user=self.user_id)

    async def frame_read(self, frame):
        room = self._joined(frame["room"])
        await db_call(services.read_mark)(
            room=room, user=self.user, seq=frame["seq"], origin=self.socket_id, door=rules.Door.SOCKET
        )

    async def frame_ping(self, frame):
        return protocol.pong_frame()

    # -- events for this user (from realtime.user_event_publish) --

    async def user_event(self, event: protocol.UserEvent) -> None:
        """Act on a user-level event: close matching sockets, or kick from a room."""
        if "close" in event:
            if event.get("session_key") not in (None, self.session_key):
                return
            if event.get("token") not in (None, self.auth_token):
                return
            await self.close(event["close"])
        elif "read" in event:
            if event.get("origin") != self.socket_id:
                await self.send_frame(event["read"])
        elif "kick" in event:
            if self.join_kicks is not None:
                self.join_kicks[event["kick"]] = event.get("reason", "")
            for slug, (room, _sub) in list(self.rooms.items()):
                if room.pk == event["kick"]:
                    self._leave(slug)
                    await self.send_frame(protocol.kicked_frame(room=slug, reason=event.get("reason", "")))
