"""Latency as an operator sees it: chat_delivery_seconds (commit to socket write, per
delivery) and chat_ack_seconds (send frame to ack) on /metrics (chat/metrics.py)."""

import asyncio
import json
import json

import pytest
from django.test import Client
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from chat import metrics
from tests.conftest import open_socket


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observe_many_equals_as_many_observations():
    registry = CollectorRegistry()
    one_by_one = Histogram("one", "", buckets=(0.001, 0.01, 0.1), registry=registry)
    at_once = Histogram("many", "", buckets=(0.001, 0.01, 0.1), registry=registry)
    for amount, count in ((0.0005, 3), (0.01, 2), (0.05, 64), (7.0, 1)):
        for _ in range(count):
            one_by_one.observe(amount)
        metrics.observe_many(at_once, amount, count)
    for suffix, labels in [("_count", {}), ("_sum", {}), *[("_bucket", {"le": le}) for le in ("0.001", "0.01", "0.1", "+Inf")]]:
        assert registry.get_sample_value("many" + suffix, labels) == pytest.approx(registry.get_sample_value("one" + suffix, labels))


@pytest.mark.django_db(transaction=True)
async def test_a_send_moves_the_ack_histogram_and_one_delivery_per_socket(ann_cookie, bob_cookie):
    before = {name: sample(name) for name in ("chat_ack_seconds_count", "chat_ack_seconds_sum", "chat_delivery_seconds_count")}
    ann, _, _ = await open_socket(cookie=ann_cookie)
    bob, _, _ = await open_socket(cookie=bob_cookie)
    await ann.join("general")
    await bob.join("general")
    await ann.send(type="send", room="general", body="timed", client_id="t1")
    seen = set()
    while not {"ack", "message"} <= seen:
        seen.add((await ann.recv())["type"])
    await bob.recv_until("message")
    assert sample("chat_ack_seconds_count") == before["chat_ack_seconds_count"] + 1
    assert sample("chat_ack_seconds_sum") > before["chat_ack_seconds_sum"]
    # Two sockets joined: two deliveries, each counted in a bucket.
    assert sample("chat_delivery_seconds_count") == before["chat_delivery_seconds_count"] + 2
    assert sample("chat_delivery_seconds_bucket", le="+Inf") == sample("chat_delivery_seconds_count")
    # A repeated send is acked again (and timed again), but delivers nothing new.
    await ann.send(type="send", room="general", body="timed", client_id="t1")
    await ann.recv_until("ack")
    assert sample("chat_ack_seconds_count") == before["chat_ack_seconds_count"] + 2
    assert sample("chat_delivery_seconds_count") == before["chat_delivery_seconds_count"] + 2
    text = await asyncio.to_thread(lambda: Client().get("/metrics").content.decode())
    assert "chat_delivery_seconds_bucket" in text and "chat_ack_seconds_bucket" in text
    await ann.close()
    await bob.close()


# The commit time travelling to another process (the layer message carries it):
# tests/test_processes.py::test_a_message_sent_to_one_process_reaches_a_client_of_the_other.


def test_the_grafana_dashboard_reads_only_metrics_the_server_exports():
    """deploy/grafana/chat.json: a renamed metric would leave a panel silently empty."""
    import re
    from pathlib import Path

    from prometheus_client import generate_latest

    dashboard = json.loads((Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "chat.json").read_text())
    exported = generate_latest().decode()
    used = {name for panel in dashboard["panels"] for target in panel["targets"] for name in re.findall(r"chat_\w+", target["expr"])}
    assert {"chat_delivery_seconds_bucket", "chat_ack_seconds_bucket", "chat_deliveries_total",
            "chat_messages_stored_total", "chat_sockets_open", "chat_errors_total"} <= used
    missing = {name for name in used if f"# TYPE {name.removesuffix('_bucket')} " not in exported}
    assert not missing
