"""Give each pytest-xdist worker a Redis database of its own, before Django reads its settings.

Loaded with ``-p tests.workers`` (pytest.ini), so it runs when pytest starts, before
pytest-django loads chatproject.settings, which reads REDIS_URL once. Worker ``gwN`` moves
two URLs to database ``base + N``:

- ``REDIS_URL``, when set (the channel layer and presence of this worker, and of every
  server process its tests start: tests/servers.py passes the environment on);
- ``CHAT_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``): the Redis that tests
  needing one use on the in-memory configuration (``tests.conftest.redis_url``).

So two workers never flush each other's ``chat:*`` keys or channel groups. A run that
uses databases ``base`` to ``base + workers - 1`` must not share them with another run
(.ci/run gives its two configurations bases far enough apart).

The test database needs nothing here: pytest-django appends the worker's name to it
(``test_chat_gw0``, ``.test-db.sqlite3_gw0``) and tests/servers.py hands that name to
the servers it starts.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def worker_index() -> int | None:
    """The xdist worker's number (``gw3`` is 3), or None outside a worker."""
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return int(match.group(1)) if match else None


def shifted(url: str, offset: int) -> str:
    """``url`` with its Redis database number (0 when absent) increased by ``offset``."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    base = int(path) if path.isdigit() else 0
    return urlunsplit(parts._replace(path=f"/{base + offset}"))


def _isolate() -> None:
    index = worker_index()
    if index is None:
        return
    if os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = shifted(os.environ["REDIS_URL"], index)
    os.environ["CHAT_TEST_REDIS_URL"] = shifted(os.environ.get("CHAT_TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL, index)


# At import, not in a hook: pytest-django reads the settings in pytest_load_initial_conftests,
# before any conftest or later hook of this plugin would run.
_isolate()
