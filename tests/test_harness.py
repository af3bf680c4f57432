"""The process harness (harness/): environment, start on free ports, health, stop, kill, logs."""

import signal
import sys
import urllib.request

import pytest

import harness


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def test_the_environment_is_the_callers_with_the_configs_values_over_it(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://worker-gw1/db")
    monkeypatch.setenv("CHAT_TEST_DB_NAME", "x")
    inherited = harness.Config("daphne").environment()
    assert inherited["DATABASE_URL"] == "postgres://worker-gw1/db"  # an xdist worker's database reaches its servers
    config = harness.Config("daphne", redis_url="redis://127.0.0.1:6379/3", env={"CHAT_TEST_DB_NAME": None, "A": "1"})
    env = config.environment()
    assert env["REDIS_URL"] == "redis://127.0.0.1:6379/3" and env["A"] == "1"
    assert "CHAT_TEST_DB_NAME" not in env
    assert harness.Config("daphne", database_url="a", env={"DATABASE_URL": "b"}).environment()["DATABASE_URL"] == "b"


def test_an_unknown_server_is_refused():
    with pytest.raises(ValueError):
        harness.Config("gunicorn")
    with pytest.raises(ValueError):
        harness.Config("command")


def test_processes_start_on_free_ports_answer_and_stop(tmp_path):
    config = harness.Config("command", command=_http_server, health="/", name="web")
    with harness.running(2, config, log_dir=tmp_path) as (a, b):
        assert a.port != b.port
        for p in (a, b):
            with urllib.request.urlopen(p.http + "/", timeout=5) as response:
                assert response.status == 200
        assert a.log == tmp_path / f"web-{a.port}.log" and "GET /" in a.log_text()
    assert not a.alive() and not b.alive()
    assert a.process.returncode == -signal.SIGTERM


def test_a_killed_process_can_start_again_on_its_port(tmp_path):
    process = harness.Process(harness.Config("command", command=_http_server, health=None), tmp_path)
    process.start().wait_healthy()
    port = process.port
    process.kill()
    assert process.process.returncode == -signal.SIGKILL
    process.start().wait_healthy()
    assert process.port == port and process.alive()
    assert process.stop() == -signal.SIGTERM


def test_a_process_that_exits_at_start_raises_with_its_log(tmp_path):
    config = harness.Config("command", command=lambda port: [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="boom"):
        harness.start(1, config, log_dir=tmp_path)


@pytest.mark.skipif(harness.nginx_binary() is None, reason="nginx is not installed")
def test_nginx_per_port_routes_each_extra_port_to_its_own_upstream(tmp_path):
    """bench/scaling.py places each client on the process it chooses through these ports."""
    configs = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        (root / "healthz").write_text("ok")
        (root / "who").write_text(name)
        configs.append(harness.Config("command", health="/healthz", name=name, command=lambda port, root=root: [
            sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]))
    servers = [harness.Process(c, tmp_path).start() for c in configs]
    nginx = None
    try:
        for s in servers:
            s.wait_healthy()
        nginx = harness.Nginx(servers, tmp_path, per_port=True).start()
        assert len(nginx.ports) == 2 and nginx.port not in nginx.ports
        for port, name in zip(nginx.ports, ("a", "b")):
            for _ in range(3):  # not balanced: every request to this port reaches the same server
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/who", timeout=5) as response:
                    assert response.read() == name.encode()
    finally:
        if nginx is not None:
            nginx.stop()
        harness.stop(servers)
