"""Minimal settings for the tutorial's chat (what `startproject` gives, less templates and admin).

DEBUG is off, as for the project under test. The channel layer is the in-memory one with its
defaults, or channels-redis when TUTORIAL_REDIS_URL is set (bench/scaleout.py); no database is
touched on the WebSocket path (no session cookie is sent).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "chat",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "mysite.urls"
ASGI_APPLICATION = "mysite.asgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TUTORIAL_DB", "/tmp/bench-tutorial.sqlite3"),
    }
}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# bench/scaleout.py runs several processes on one Redis: the tutorial's part 2 layer,
# channels-redis at its defaults (capacity 100, expiry 60 s). socket_timeout is the one
# change: redis-py 8 defaults it to 5 s, the same as channels-redis' blocking receive, so an
# idle receiver would fail (django/channels_redis#422; the project's settings do the same).
if os.environ.get("TUTORIAL_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": os.environ["TUTORIAL_REDIS_URL"], "socket_timeout": 15}]},
        }
    }
USE_TZ = True
