"""Fault tests need PostgreSQL (DATABASE_URL), redis-server and nginx on this machine.

Without nginx they skip, unless CHAT_REQUIRE_NGINX is set (CI installs nginx and sets it).
CHAT_FAULTS selects the scenarios: unset runs the CI subset (all but the slow client,
which spends ~25 s waiting for a ping timeout), "all" every one (the
scripts/faults.py table), or a comma-separated list of names from faults.FAULTS.
"""

import os
import shutil

import pytest
from django.db import connection

from tests.faults.cluster import nginx_binary
from tests.faults.faults import RESULTS, table

CI_SUBSET = {"redis", "database", "hang", "kill", "sigterm", "churn", "shard", "sentinel"}


def selected(name: str) -> bool:
    choice = os.environ.get("CHAT_FAULTS", "")
    if choice == "all":
        return True
    if choice:
        return name in choice.split(",")
    return name in CI_SUBSET


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: fault tests on a cluster of real processes (tests/faults/)")
    config.addinivalue_line("markers", "fault(name): the scenario a fault test runs (faults.FAULTS)")


@pytest.fixture(autouse=True)
def _fault_prerequisites(request):
    name = request.node.get_closest_marker("fault").args[0] if request.node.get_closest_marker("fault") else None
    if name is not None and not selected(name):
        pytest.skip(f"fault {name!r} not selected: it runs with CHAT_FAULTS=all (scripts/faults.py)")
    if connection.vendor != "postgresql":
        pytest.skip("fault tests run on PostgreSQL (DATABASE_URL=postgres://…)")
    missing = [tool for tool in ("redis-server",) if shutil.which(tool) is None]
    if nginx_binary() is None:
        missing.append("nginx")
    if missing:
        if os.environ.get("CHAT_REQUIRE_NGINX"):
            pytest.fail(f"fault tests need {', '.join(missing)}")
        pytest.skip(f"fault tests need {', '.join(missing)}")


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.section("fault table")
        terminalreporter.write_line(table(RESULTS))
        path = os.environ.get("CHAT_FAULTS_REPORT")
        if path:
            from tests.faults.faults import as_json

            with open(path, "w") as f:
                f.write(as_json(RESULTS))
