"""Prometheus metrics of this server process, served at ``/metrics`` (prometheus-client).

Every Daphne worker keeps its own numbers: scrape each worker's own address
(``127.0.0.1:8001`` …), not the proxy, which would answer from a different worker each
time. The default registry also carries prometheus-client's process collector
(``process_resident_memory_bytes``, open file descriptors, CPU).

Access (PROTOCOL.md leaves it open; docs/deployment.md): a request straight from the
loopback interface, with no ``X-Forwarded-For`` (a scraper on the host), or a logged-in
staff user. Behind the proxy Daphne runs with ``--proxy-headers`` and the proxy
overwrites ``X-Forwarded-For``, so a remote client never counts as local.
"""

from __future__ import annotations

import ipaddress
import time
from bisect import bisect_left
from contextlib import contextmanager

from asgiref.sync import iscoroutinefunction
from django.http import HttpResponse, HttpResponseForbidden
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

# Seconds: from a few milliseconds (same process) to the 10 s PROTOCOL.md allows after an outage.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SOCKETS_OPEN = Gauge("chat_sockets_open", "Authenticated WebSockets open in this process.")
SOCKETS_REFUSED = Counter(
    "chat_sockets_refused_total", "WebSockets closed right after the handshake.", ["reason"]
)
SOCKETS_CLOSED = Counter("chat_sockets_closed_total", "WebSockets the server closed, by close code.", ["code"])
JOINS = Counter("chat_joins_total", "Rooms joined, by kind: live (no since), resume, resync.", ["kind"])
ROOM_EVENTS = Counter("chat_room_events_total", "Room events committed by this process, by type.", ["type"])
MESSAGES_STORED = Counter("chat_messages_stored_total", "New messages committed by this process (any door).")
DELIVERIES = Counter(
    "chat_deliveries_total",
    "Room events sent to sockets, by path: live (layer or local), fill (gap read from the database), replay (join with since).",
    ["path"],
)
DELIVERIES_LIVE = DELIVERIES.labels("live")  # the hot path: looked up once
GAP_FILLS = Counter(
    "chat_gap_fills_total",
    "Database reads that filled a gap in a room feed, by reason: order (an event arrived early), "
    "poll (the layer lost a broadcast), socket (one socket's catch-up).",
    ["reason"],
)
GAP_FILLED_EVENTS = Counter("chat_gap_filled_events_total", "Room events read from the database by gap fills.")
ERRORS = Counter("chat_errors_total", "`error` frames sent to sockets, by code.", ["code"])
LAYER_ERRORS = Counter("chat_channel_layer_errors_total", "Channel-layer operations that failed.")
LAYER_SENT = Counter(
    "chat_layer_messages_sent_total", "group_send calls this process made, by message type.", ["type"]
)
LAYER_RECEIVED = Counter(
    "chat_layer_messages_received_total",
    "Channel-layer messages this process's hub received, by type: one per room event and process, "
    "however many of the room's sockets the process has.",
    ["type"],
)
BROADCAST_SECONDS = Histogram(
    "chat_broadcast_seconds",
    "From a room event's commit to its arrival from the channel layer in this process.",
    buckets=_LATENCY_BUCKETS,
)
STORE_SECONDS = Histogram(
    "chat_store_seconds",
    "Time to validate and store a `send` (the socket door), successful or not.",
    buckets=_LATENCY_BUCKETS,
)
DELIVERY_SECONDS = Histogram(
    "chat_delivery_seconds",
    "From a room event's commit to its write to a socket, per live delivery (any process; "
    "gap fills and replays are not timed).",
    buckets=_LATENCY_BUCKETS,
)
ACK_SECONDS = Histogram(
    "chat_ack_seconds",
    "From a `send` frame's arrival to the write of its `ack` (the socket door).",
    buckets=_LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("chat_http_requests_in_flight", "HTTP requests being handled by this process.")


def observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """``count`` observations of ``amount`` at the cost of one (one event's writes to many
    sockets). Uses prometheus-client's internals: Histogram.observe() takes no count."""
    histogram._sum.inc(amount * count)
    histogram._buckets[bisect_left(histogram._upper_bounds, amount)].inc(count)


def http_in_flight() -> float:
    """The current value of HTTP_IN_FLIGHT."""
    return HTTP_IN_FLIGHT.collect()[0].samples[0].value


@contextmanager
def timed(histogram: Histogram):
    """Observe the time the ``with`` block takes, also when it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - start)


def event_type(text: str) -> str:
    """The ``type`` of an encoded room-event frame (protocol.encode puts it first)."""
    prefix = '{"type":"'
    if text.startswith(prefix):
        end = text.find('"', len(prefix))
        if end > 0:
            return text[len(prefix) : end]
    return "unknown"


@sync_and_async_middleware
def in_flight_middleware(get_response):
    """Count HTTP requests in progress, so a graceful shutdown can wait for them."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            HTTP_IN_FLIGHT.inc()
            try:
                return await get_response(request)
            finally:
                HTTP_IN_FLIGHT.dec()

    else:

        def middleware(request):
            HTTP_IN_FLIGHT.inc()
            try:
                return get_response(request)
            finally:
                HTTP_IN_FLIGHT.dec()

    return middleware


def is_local(request) -> bool:
    """True for a request from this host's loopback that did not come through the proxy."""
    if "HTTP_X_FORWARDED_FOR" in request.META:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "").is_loopback
    except ValueError:
        return False


def metrics_view(request):
    """The process's metrics in Prometheus' text format; local or staff access only."""
    user = getattr(request, "user", None)
    if not (is_local(request) or (user is not None and user.is_authenticated and user.is_staff)):
        return HttpResponseForbidden("Metrics are available to local scrapers and staff only.\n")
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
NOTICES_PUBLISHED = Counter("chat_notices_published_total", "Notices stored and announced by this process (PROTOCOL.md 9).")
NOTICES_SENT = Counter("chat_notices_sent_total", "`notice` frames sent to sockets (after conflation and the per-key rate).")
NOTICES_CONFLATED = Counter(
    "chat_notices_conflated_total",
    "Notice values a socket never got because a newer value of the key replaced them while they waited.",
)
