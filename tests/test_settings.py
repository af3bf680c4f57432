"""Settings read from the environment: production refuses unsafe configurations."""

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT


def _setup(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    environment.update(DJANGO_SETTINGS_MODULE="chatproject.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = _setup(DJANGO_ENV="production")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_debug():
    result = _setup(DJANGO_ENV="production", DJANGO_SECRET_KEY="x" * 50, DJANGO_DEBUG="on")
    assert result.returncode != 0 and "DJANGO_DEBUG must be off" in result.stderr


def test_production_with_a_key_starts_without_debug():
    result = _setup(DJANGO_ENV="production", DJANGO_SECRET_KEY="x" * 50)
    assert result.returncode == 0 and result.stdout.strip() == "False"


@pytest.mark.parametrize("url, engine", [("sqlite:////tmp/x.sqlite3", "sqlite3"), ("postgres://u@h:5432/d", "postgresql")])
def test_database_url_selects_the_engine(url, engine):
    environment = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "chatproject.settings"}
    code = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith(engine), result.stderr


def test_redis_url_takes_one_server_shards_or_sentinel():
    from chatproject.redis_url import parse

    one = parse("redis://127.0.0.1:6379/2")
    assert one.layer_hosts(socket_timeout=15) == [{"address": "redis://127.0.0.1:6379/2", "socket_timeout": 15}]
    shards = parse("redis://a:6379/0, redis://b:6380/0")
    assert [h["address"] for h in shards.layer_hosts()] == ["redis://a:6379/0", "redis://b:6380/0"]
    sentinel = parse("redis+sentinel://s1:26379,[::1]:26380/chat/3")
    assert sentinel.layer_hosts(socket_timeout=15) == [
        {"sentinels": [("s1", 26379), ("::1", 26380)], "master_name": "chat", "db": 3, "socket_timeout": 15}
    ]


@pytest.mark.parametrize("url", ["http://x:1/0", "redis+sentinel://s1:26379", "redis+sentinel://s1/chat/0",
                                 "redis+sentinel://s1:26379/chat/x"])
def test_a_malformed_redis_url_is_refused_with_the_reason(url):
    from chatproject.redis_url import parse

    with pytest.raises(ValueError):
        parse(url)
