import json
import os
import time
from pathlib import Path

import pytest
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from chat import realtime
from chat.db import fail_fast_reset
from chat.models import Room
from tests.factories import make_room, make_token, make_user
from tests.workers import DEFAULT_TEST_REDIS_URL

ORIGIN = "http://localhost"


def redis_url() -> str:
    """The Redis for tests that need one: REDIS_URL, else CHAT_TEST_REDIS_URL (the machine's
    local Redis by default); each xdist worker's own database (tests/workers.py)."""
    return os.environ.get("REDIS_URL") or os.environ.get("CHAT_TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL


# Tests whose node id starts with one of these run one after another in one xdist worker
# (./test runs --dist loadgroup), beside the other workers' tests. The fault tests each
# start a cluster (nginx, workers, a Redis, 20 clients) and time its recovery; the slow
# socket tests push megabytes through a server until it drops a socket that does not read,
# within a time limit. Two of either kind at once on two cores measure each other.
SERIAL_GROUPS = {
    "tests/faults/": "faults",
    "tests/test_operations.py::test_a_socket_that_stops_reading": "firehose",
    "tests/test_uvicorn.py::test_a_socket_that_stops_reading": "firehose",
    "tests/test_notices.py::test_a_socket_that_stops_reading": "firehose",
}


def _cancel_all_tasks_bounded(loop) -> None:
    """asyncio.runners._cancel_all_tasks with a limit. Now and then (about once per CI run of
    2,400 tests, a different async test each time) one task at a loop's teardown never
    finishes cancelling, with every thread idle and no timer scheduled, and the test hung
    until pytest-timeout failed it at 120 s. Not found yet (issue 18's note). Here the
    teardown waits 10 s, then prints the stuck tasks' stacks and warns, and the loop closes."""
    import asyncio
    import sys
    import warnings

    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=10))
    if pending:
        # Also to a file: stderr of a passing test is not shown (CI keeps artifacts/).
        log = Path(__file__).resolve().parent.parent / "artifacts" / "stuck-tasks.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("a") as out:
            for task in pending:
                for stream in (sys.stderr, out):
                    print(f"\nloop teardown ({os.environ.get('PYTEST_CURRENT_TEST', '?')}): task still running "
                          f"10 s after cancel(): {task!r}", file=stream)
                    task.print_stack(file=stream)
        warnings.warn(f"{len(pending)} task(s) did not finish cancelling at loop teardown (stacks in {log})")
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "unhandled exception during loop teardown", "exception": task.exception(), "task": task}
            )


def pytest_configure(config):
    import asyncio.runners

    asyncio.runners._cancel_all_tasks = _cancel_all_tasks_bounded


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(items):
    """Mark the serial groups; then, after every plugin's ordering, the fault clusters last (a
    stable sort keeps the rest in order): they time real servers under load, and .ci/run's
    other run starts with the browser tests, its heaviest part. Early, the churn scenario's
    1,000 connects took 95 s instead of 18 s and missed its catch-up window."""
    for item in items:
        for prefix, group in SERIAL_GROUPS.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
    yield
    items.sort(key=lambda item: item.nodeid.startswith("tests/faults/"))


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's default hasher at one iteration. Its hashes keep the default's algorithm
    name and carry their iteration count, so the server processes tests start (on the
    default settings) verify them too."""

    iterations = 1


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """The real hasher costs 0.5 s of CPU per user on this machine; that cost is for attackers."""
    settings.PASSWORD_HASHERS = ["tests.conftest.FastPBKDF2PasswordHasher"]


@pytest.fixture(autouse=True)
def _database_answering():
    """A test that made the database look stalled (chat/db.py's fail-fast) does not leave the
    next one failing fast, nor a probe task on its finished loop."""
    fail_fast_reset()
    yield
    fail_fast_reset()


@pytest.fixture(autouse=True)
async def _fresh_hub():
    """Each test gets its own event loop, hence its own hub and an empty channel layer."""
    realtime.hub_stop()
    yield
    realtime.hub_stop()
    try:
        await get_channel_layer().flush()
    except Exception:
        pass
    # And a layer of its own: channels-redis binds its receive lock to the loop of the test
    # that first received, and a later test's loop then fails on it ("bound to a different
    # event loop"), depending on which tests ran before in the same worker.
    channel_layers.backends.clear()
    # Presence entries of this test's hub, or of the server processes it started (which use
    # the tests' Redis even when the suite runs on the in-memory layer), would otherwise
    # linger for their TTL and show ghosts to the next test.
    import redis.asyncio as redis

    # A Redis that is not there refuses at once; one that is there may be slow to accept on
    # a loaded machine (two CI runs at once), and a skipped clean-up would leave ghosts.
    client = redis.Redis.from_url(settings.REDIS_URL or redis_url(), socket_connect_timeout=10)
    try:
        keys = [k async for k in client.scan_iter("chat:*")]
        if keys:
            await client.delete(*keys)
    except redis.ConnectionError:
        pass  # no Redis here: nothing was written to it either
    finally:
        await client.aclose()


@pytest.fixture
def user(db):
    return make_user("ann")


@pytest.fixture
def other(db):
    return make_user("bob")


@pytest.fixture
def general(db) -> Room:
    """The migration's room (transactional tests flush it away, so make it again)."""
    return Room.objects.get_or_create(slug="general", defaults={"name": "General"})[0]


@pytest.fixture
def room(db, user) -> Room:
    return make_room(owner=user, slug="lobby")


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class Socket:
    """A WebsocketCommunicator that speaks JSON frames."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.comm = communicator

    async def send(self, **frame):
        await self.comm.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text=None, bytes_data=None):
        """Send a text or binary frame as it is (empty ones too)."""
        message = {"type": "websocket.receive"}
        message["bytes" if text is None else "text"] = bytes_data if text is None else text
        await self.comm.send_input(message)

    async def recv_any(self, timeout: float = 3) -> dict:
        """The next frame, whatever it is."""
        return json.loads(await self.comm.receive_from(timeout))

    async def recv(self, timeout: float = 3) -> dict:
        """The next frame that is not a `presence` frame (most tests are about other things)."""
        while True:
            frame = await self.recv_any(timeout)
            if frame["type"] != "presence":
                return frame

    async def recv_until(self, type_: str, timeout: float = 3) -> dict:
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == type_:
                return frame

    async def silent(self, timeout: float = 0.3) -> bool:
        """True if nothing but presence frames arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if await self.comm.receive_nothing(left):
                return True
            if (await self.recv_any())["type"] != "presence":
                return False
        return True

    async def join(self, room: str, **extra) -> dict:
        """Send join; return its answer (`joined` or `error`)."""
        await self.send(type="join", room=room, **extra)
        while True:
            frame = await self.recv()
            if frame["type"] in ("joined", "error"):
                return frame

    async def close(self):
        await self.comm.disconnect()


async def open_socket(path="/ws/chat/", *, cookie=None, token=None, origin=ORIGIN, subprotocols=None):
    """Connect through the real ASGI application (auth middleware included)."""
    from chatproject.asgi import application

    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    if token is not None:
        headers.append((b"authorization", f"Token {token}".encode()))
    comm = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
    connected, subprotocol = await comm.connect(timeout=5)
    return Socket(comm), connected, subprotocol


@pytest.fixture
def ann_cookie(user, general):
    return session_cookie(user)


@pytest.fixture
def bob_cookie(other):
    return session_cookie(other)


@pytest.fixture
def ann_token(user):
    return make_token(user)
