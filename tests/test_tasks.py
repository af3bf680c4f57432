"""The tasks worker: Django's Tasks API on the database backend, run by a real
``manage.py db_worker`` process on the test database (as ./run and deploy/worker start it)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from django.conf import settings
from django_tasks import TaskResultStatus, task

from harness import wait_for
from tests.servers import start_tasks_worker


@task()
def write_file(path: str, text: str) -> str:
    """A task for the tests: write ``text`` to ``path``."""
    Path(path).write_text(text)
    return text


def test_the_configured_backend_is_the_database():
    assert settings.TASKS["default"]["BACKEND"] == "django_tasks_db.DatabaseBackend"
    assert "django_tasks_db" in settings.INSTALLED_APPS


@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_by_the_server_runs_in_a_db_worker_process(tmp_path):
    worker = start_tasks_worker(log_dir=tmp_path)
    try:
        target = tmp_path / "done.txt"
        result = write_file.enqueue(str(target), "hello")
        wait_for(target.exists, 20, "the task to run")
        assert target.read_text() == "hello"

        def finished() -> bool:
            result.refresh()
            return result.status == TaskResultStatus.SUCCESSFUL

        wait_for(finished, 10, "the result to be stored")
        assert result.return_value == "hello"
    finally:
        worker.stop()


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_an_idle_worker_at_once(tmp_path):
    worker = start_tasks_worker(log_dir=tmp_path)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(10) == 0
    assert time.monotonic() - started < 5
