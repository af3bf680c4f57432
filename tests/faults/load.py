"""Clients for the fault tests: members of rooms that send at a steady rate, reconnect after
any disconnect and resume with ``since``, and record everything they receive, so that
verify() can compare it with the database afterwards.

A member sends each message with a fresh ``client_id`` and re-sends it (same ``client_id``)
until it is acked: after a reconnect, after `unavailable`, or when no answer came within
RESEND_AFTER. A `joined` with ``resync`` is answered by reading the missed messages over
REST, as the protocol asks of clients.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import connect

RESEND_AFTER = 3.0  # seconds without an answer before a send is repeated
UNAVAILABLE_RETRY = 1.0  # seconds after `unavailable` before a send is repeated
ROOM_EVENTS = ("message", "message.edited", "message.deleted")
CLOSE_TRY_AGAIN_LATER = 1013  # the server is full (CHAT_MAX_CONNECTIONS): as socket.js, back off more
TRY_AGAIN_FIRST = 2.0
TRY_AGAIN_CAP = 30.0


@dataclass
class Member:
    username: str
    token: str
    room: str
    rate: float = 1.0  # messages per second; 0: does not send
    body_size: int = 40
    small_rcvbuf: bool = False  # a tiny kernel receive buffer (the slow-client fault)
    source: str | None = None  # the loopback address it connects from (nginx limits sockets per address)
    # What happened to it:
    received: list[tuple[int, int]] = field(default_factory=list)  # (seq, message id), in arrival order
    arrived_at: list[float] = field(default_factory=list)  # monotonic time of each of received
    last: int = 0
    sent: list[str] = field(default_factory=list)  # client_ids, in order of first send
    pending: dict[str, float] = field(default_factory=dict)  # client_id -> when last sent (0: not yet)
    sent_at: dict[str, float] = field(default_factory=dict)  # client_id -> when last sent, for latency
    acked: dict[str, tuple[int, int]] = field(default_factory=dict)  # client_id -> (id, seq)
    acked_at: dict[int, float] = field(default_factory=dict)  # seq -> monotonic time of its ack
    replies: list[tuple[float, float, str]] = field(default_factory=list)  # (sent at, seconds to answer, answer)
    errors: Counter = field(default_factory=Counter)
    closes: list[int | None] = field(default_factory=list)
    connects: int = 0
    attempt: int = 0  # failed attempts since the last join (the backoff's exponent)
    resyncs: int = 0
    in_room: bool = False
    ws: object = None
    reading: asyncio.Event = field(default_factory=asyncio.Event)
    counter: int = 0

    def __post_init__(self):
        self.reading.set()


class Load:
    """Runs every member's connection and sender until finish()."""

    def __init__(self, ws_url: str, http_url: str, members: list[Member], *, max_backoff: float = 1.0,
                 first_backoff: float = 0.05, handshakes: int | None = None, open_timeout: float = 5.0):
        """Reconnects back off as the page's do (chat/static/chat/socket.js): a delay in
        [ceiling / 2, ceiling], the ceiling doubling from ``first_backoff`` up to
        ``max_backoff`` (after a 1013, from TRY_AGAIN_FIRST up to TRY_AGAIN_CAP), back to
        the bottom once the room is joined. The page's are 0.5 s and 10 s; the other
        scenarios start lower so as to measure the server rather than the wait.
        ``handshakes``: at most this many handshakes in flight at once (None: no limit);
        ``open_timeout``: how long a connect and handshake may take (the page sets none: the
        browser waits; a client that gives up early only makes the server's work wasted)."""
        self.ws_url = ws_url
        self.http_url = http_url
        self.members = members
        self.first_backoff = first_backoff
        self.open_timeout = open_timeout
        self.max_backoff = max_backoff
        self.handshaking = asyncio.Semaphore(handshakes) if handshakes else None
        self.sending = False
        self.closing = False
        self.tasks: list[asyncio.Task] = []

    # -- running --

    async def start(self, timeout: float = 20) -> None:
        """Connect every member and wait until each has joined its room."""
        loop = asyncio.get_running_loop()
        for member in self.members:
            self.tasks.append(loop.create_task(self._connection(member)))
            self.tasks.append(loop.create_task(self._sender(member)))
        await self.wait_for(lambda: all(m.in_room for m in self.members), timeout, "every member joined")

    def start_sending(self) -> None:
        self.sending = True

    async def finish(self, *, ack_timeout: float = 40, settle_timeout: float = 20, room_seqs=None) -> None:
        """Stop sending, wait for every send to be acked and every member to catch up, close."""
        self.sending = False
        try:
            await self.wait_for(lambda: not any(m.pending for m in self.members), ack_timeout, "every send acked")
            if room_seqs is not None:
                targets = await room_seqs()
                await self.wait_for(
                    lambda: all(m.last >= targets[m.room] for m in self.members), settle_timeout, "every member caught up"
                )
        finally:
            self.closing = True
            for member in self.members:
                member.reading.set()
                if member.ws is not None:
                    await member.ws.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    @staticmethod
    async def wait_for(predicate, timeout: float, what: str) -> float:
        """Wait until ``predicate()``; return the seconds it took, raise TimeoutError after ``timeout``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not predicate():
            if loop.time() - started > timeout:
                raise TimeoutError(f"{what}: not within {timeout} s")
            await asyncio.sleep(0.05)
        return loop.time() - started

    # -- one member --

    def _socket(self, member: Member) -> tuple[socket.socket, tuple[str, int]]:
        host, port = self.ws_url.removeprefix("ws://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if member.small_rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if member.source:
            sock.bind((member.source, 0))
        sock.setblocking(False)
        return sock, (host, int(port))

    def _backoff(self, member: Member) -> float:
        """The wait before the next attempt: socket.js's #backoff (equal jitter)."""
        first, cap = (TRY_AGAIN_FIRST, TRY_AGAIN_CAP) if member.closes[-1:] == [CLOSE_TRY_AGAIN_LATER] else (
            self.first_backoff, self.max_backoff)
        ceiling = min(cap, first * 2**member.attempt)
        member.attempt += 1
        return ceiling / 2 + random.random() * ceiling / 2

    async def _connection(self, member: Member) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            sock, address = self._socket(member)
            slot = self.handshaking
            if slot is not None:
                await slot.acquire()
            try:
                await asyncio.wait_for(loop.sock_connect(sock, address), self.open_timeout)
                async with connect(
                    f"{self.ws_url}/ws/chat/",
                    sock=sock,
                    additional_headers={"Authorization": f"Token {member.token}"},
                    open_timeout=self.open_timeout, ping_interval=None, close_timeout=2, proxy=None, compression=None,
                    max_queue=16,
                ) as ws:
                    if slot is not None:
                        slot.release()
                        slot = None
                    member.ws = ws
                    member.connects += 1
                    await ws.send(json.dumps({"type": "join", "room": member.room, "since": member.last, "ref": "join"}))
                    while True:
                        await member.reading.wait()
                        frame = json.loads(await ws.recv())
                        await self._frame(member, ws, frame)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # closed, refused, reset: reconnect and resume
                if isinstance(exc, websockets.ConnectionClosed):
                    member.closes.append(exc.rcvd.code if exc.rcvd else None)
                else:
                    member.closes.append(None)
            finally:
                if slot is not None:
                    slot.release()
                member.in_room = False
                member.ws = None
                sock.close()
            if not self.closing:
                await asyncio.sleep(self._backoff(member))

    async def _frame(self, member: Member, ws, frame: dict) -> None:
        kind = frame["type"]
        if kind in ROOM_EVENTS:
            self._event(member, frame["seq"], frame["message"]["id"] if "message" in frame else frame["id"])
        elif kind == "joined":
            if frame["resync"]:
                member.resyncs += 1
                await self._read_history(member, upto=frame["seq"])
            member.in_room = True
            member.attempt = 0
            await self._flush(member, force=True)
        elif kind == "ack":
            client_id = frame["client_id"]
            member.acked[client_id] = (frame["id"], frame["seq"])
            member.acked_at.setdefault(frame["seq"], time.monotonic())
            self._answered(member, client_id, "ack")
            member.pending.pop(client_id, None)
        elif kind == "error":
            member.errors[frame["code"]] += 1
            ref = frame.get("ref")
            if ref == "join":
                await asyncio.sleep(0.5)
                await ws.send(json.dumps({"type": "join", "room": member.room, "since": member.last, "ref": "join"}))
            elif ref in member.pending:
                self._answered(member, ref, frame["code"])
                # Retry soon with the same client_id.
                member.pending[ref] = time.monotonic() - RESEND_AFTER + UNAVAILABLE_RETRY

    def _answered(self, member: Member, client_id: str, answer: str) -> None:
        sent = member.sent_at.pop(client_id, None)
        if sent is not None:
            member.replies.append((sent, time.monotonic() - sent, answer))

    def _event(self, member: Member, seq: int, message_id: int) -> None:
        member.received.append((seq, message_id))
        member.arrived_at.append(time.monotonic())
        member.last = max(member.last, seq)

    async def _read_history(self, member: Member, *, upto: int) -> None:
        """After `resync`: read (last, upto] over REST, as a client reloading history would."""
        while member.last < upto:
            url = f"{self.http_url}/api/v1/rooms/{member.room}/messages/?after={member.last}&limit=200"
            request = urllib.request.Request(url, headers={"Authorization": f"Token {member.token}"})
            page = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(request, timeout=10)))
            for message in page["results"]:
                if message["seq"] <= upto:
                    self._event(member, message["seq"], message["id"])
            if not page["has_more_after"] or not page["results"]:
                break

    async def _flush(self, member: Member, *, force: bool = False) -> None:
        """(Re-)send every pending message that is due."""
        ws = member.ws
        if ws is None or not member.in_room:
            return
        now = time.monotonic()
        for client_id, last_sent in list(member.pending.items()):
            if force or now - last_sent >= RESEND_AFTER:
                member.pending[client_id] = now
                member.sent_at[client_id] = now
                body = f"{client_id} " + "x" * member.body_size
                frame = {"type": "send", "room": member.room, "body": body, "client_id": client_id, "ref": client_id}
                try:
                    await ws.send(json.dumps(frame))
                except websockets.ConnectionClosed:
                    return

    async def _sender(self, member: Member) -> None:
        loop = asyncio.get_running_loop()
        interval = 1 / member.rate if member.rate else 0.5
        next_at = loop.time() + random.random() * interval
        while True:
            await asyncio.sleep(max(next_at - loop.time(), 0))
            next_at += interval
            if self.sending and member.rate:
                member.counter += 1
                client_id = f"{member.username}-{member.counter}"
                member.sent.append(client_id)
                member.pending[client_id] = 0.0
            await self._flush(member)


def delivery_delays(members: list[Member], start: float, end: float) -> list[float]:
    """Seconds from the ack of a message sent in [start, end) (monotonic) to its arrival at
    each other member of its room: how late the fault made deliveries."""
    acks: dict[tuple[str, int], float] = {}
    for m in members:
        for seq, at in m.acked_at.items():
            if start <= at < end:
                acks[(m.room, seq)] = at
    delays = []
    for m in members:
        for (seq, _), arrived in zip(m.received, m.arrived_at):
            acked = acks.get((m.room, seq))
            if acked is not None:
                delays.append(max(arrived - acked, 0.0))
    return sorted(delays)


@dataclass
class Outcome:
    """What verify() found: the fault table's row and the details behind it."""

    sent: int
    acked: int
    stored: int
    delivered: int
    expected: int
    lost: int
    duplicated: int
    extra: int
    out_of_order: int
    problems: list[str]


def verify(members: list[Member]) -> Outcome:
    """Compare what every member received with the database (run in a thread: it uses the ORM).

    Every member joined before the first send, so it must have received every event of its
    room exactly once, in seq order, and nothing that is not in the database.
    """
    from chat.models import Message, Room

    problems: list[str] = []
    rooms = {m.room for m in members}
    stored: dict[str, list[tuple[int, int]]] = {}
    by_client_id: dict[str, tuple[int, int]] = {}
    for slug in rooms:
        room = Room.objects.get(slug=slug)
        rows = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", "id", "client_id"))
        stored[slug] = [(seq, pk) for seq, pk, _ in rows]
        if [seq for seq, _ in stored[slug]] != list(range(1, room.seq + 1)):
            problems.append(f"room {slug}: seqs are not 1..{room.seq}")
        for seq, pk, client_id in rows:
            by_client_id[client_id] = (pk, seq)
    sent = {cid for m in members for cid in m.sent}
    acked = {cid: ack for m in members for cid, ack in m.acked.items()}
    for client_id, ack in acked.items():
        if by_client_id.get(client_id) != ack:
            problems.append(f"acked {client_id} {ack} but stored as {by_client_id.get(client_id)}")
    unacked = sent - set(acked)
    if unacked:
        problems.append(f"{len(unacked)} sends never acked, e.g. {sorted(unacked)[:3]}")
    lost = duplicated = extra = out_of_order = delivered = expected = 0
    for m in members:
        want = stored[m.room]
        got = m.received
        expected += len(want)
        unique = set(got)
        delivered += len(unique & set(want))
        lost += len(set(want) - unique)
        duplicated += len(got) - len(unique)
        extra += len(unique - set(want))
        out_of_order += sum(1 for a, b in zip(got, got[1:]) if b[0] <= a[0])
        if got != want:
            problems.append(f"{m.username} in {m.room}: received {len(got)} events, expected {len(want)}")
    return Outcome(
        sent=len(sent), acked=len(acked), stored=sum(len(v) for v in stored.values()), delivered=delivered,
        expected=expected, lost=lost, duplicated=duplicated, extra=extra, out_of_order=out_of_order,
        problems=problems[:20],
    )
