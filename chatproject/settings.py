"""Settings, read once from the environment.

Every knob has an embedded default so ``./run`` works on a bare machine: SQLite in the
project folder and the in-memory channel layer. ``DATABASE_URL`` switches to PostgreSQL,
``REDIS_URL`` to channels-redis. ``DJANGO_ENV=production`` turns on the production checks.
"""

import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from chatproject import redis_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

PRODUCTION = env.str("DJANGO_ENV", default="development") == "production"
DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)


def _secret_key() -> str:
    """Return DJANGO_SECRET_KEY, or in development a key generated once into an ignored file."""
    key = env.str("DJANGO_SECRET_KEY", default="")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_ENV=production.")
    path = BASE_DIR / ".dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production.")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks",
    "django_tasks_db",
    "chat",
]

MIDDLEWARE = [
    # Counts requests in flight, so a graceful shutdown waits for them (chat/serving/drain.py).
    "chat.metrics.in_flight_middleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves static files from the Django process itself (Daphne serves no files).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------

# Seconds the database may take to answer before a call fails with `unavailable`
# (PostgreSQL; PROTOCOL.md 3.4). Also the default of CHAT_DB_POOL_TIMEOUT.
CHAT_DB_TIMEOUT = env.float("CHAT_DB_TIMEOUT", default=5.0)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so
    # two writers queue on busy_timeout instead of failing with "database is locked".
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests use a file too: an in-memory database shares one cache between threads, with
    # table locks that ignore the busy timeout.
    _db.setdefault("TEST", {}).setdefault("NAME", str(BASE_DIR / ".test-db.sqlite3"))
else:
    _db["CONN_HEALTH_CHECKS"] = True
    # A database that accepts connections but does not answer (a stopped backend, a held
    # lock, a network path that swallows packets) is `unavailable` within CHAT_DB_TIMEOUT:
    # the server cancels a statement or lock wait after 80% of it (statement_timeout,
    # lock_timeout), libpq gives up connecting (connect_timeout, whole seconds), and the
    # pool's connections stop waiting for an answer after all of it (chat/pgdeadline.py:
    # a server that cannot even cancel). docs/deployment.md#a-database-that-hangs.
    # CHAT_DB_TIMEOUT=0 turns all of this off (connect_timeout stays at 3 s).
    from chat.pgdeadline import deadline_connection as _deadline_connection
    from chat.pgdeadline import server_timeouts as _server_timeouts

    _options = _db.setdefault("OPTIONS", {})
    _options.setdefault("connect_timeout", max(1, round(CHAT_DB_TIMEOUT)) if CHAT_DB_TIMEOUT > 0 else 3)
    if CHAT_DB_TIMEOUT > 0:
        _options.setdefault("options", _server_timeouts(CHAT_DB_TIMEOUT))
    # Under ASGI every request runs on a thread of its own and Django keeps a connection per
    # thread: persistent connections (CONN_MAX_AGE) pile up until PostgreSQL refuses clients
    # (issue 13). Instead each process borrows from one bounded psycopg pool and returns the
    # connection after every request and every database call (CONN_MAX_AGE=0, which the pool
    # requires). Sizing for six processes under max_connections=100: docs/deployment.md.
    _pool_size = env.int("CHAT_DB_POOL_SIZE", default=10)
    if _pool_size > 0:
        _db["CONN_MAX_AGE"] = 0
        _db["OPTIONS"]["pool"] = {
            "min_size": min(env.int("CHAT_DB_POOL_MIN", default=2), _pool_size),
            "max_size": _pool_size,
            # A request that waits this long for a connection answers 503 `unavailable`
            # (psycopg_pool.PoolTimeout is an OperationalError) instead of hanging.
            "timeout": env.float("CHAT_DB_POOL_TIMEOUT", default=CHAT_DB_TIMEOUT or 5.0),
            "name": "chat",
        }
        if CHAT_DB_TIMEOUT > 0:
            _db["OPTIONS"]["pool"]["connection_class"] = _deadline_connection(CHAT_DB_TIMEOUT)
    else:
        # CHAT_DB_POOL_SIZE=0: no pool in the process, e.g. behind PgBouncer (docs/deployment.md).
        _db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)

# Two test runs at once (two checkouts, two engineers) each need a test database of their own.
if env.str("CHAT_TEST_DB_NAME", default=""):
    _test_name = env.str("CHAT_TEST_DB_NAME")
    _db.setdefault("TEST", {})["NAME"] = (
        str(BASE_DIR / f".{_test_name}.sqlite3") if _db["ENGINE"].endswith("sqlite3") else _test_name
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer --------------------------------------------------------------------

# One server, shards (comma-separated URLs) or Sentinel (redis+sentinel://…): chatproject/redis_url.py.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    try:
        _redis_hosts = redis_url.parse(REDIS_URL).layer_hosts(socket_timeout=15, socket_connect_timeout=2)
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s, the same as channels-redis'
                # blocking receive: idle receivers then fail (django/channels_redis#422).
                "hosts": _redis_hosts,
                "capacity": 10000,
                # The hub re-adds its groups every 60 s, so memberships need not outlive
                # the sockets (Daphne runs with --websocket_timeout -1); a short expiry
                # drops a killed process's channel from its groups within minutes.
                "group_expiry": env.int("CHAT_GROUP_EXPIRY", default=300),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}
    }

# --- Chat -----------------------------------------------------------------------------

# Per-user posting limit shared by every door: "<count>/<seconds>s", or "0" for none.
CHAT_POST_RATE = env.str("CHAT_POST_RATE", default="10/10s")
# Every HTTP request body is capped (PROTOCOL.md 3.4): over it, 413 before it is read
# (chat/limits.py); Django's own cap is the same number.
CHAT_MAX_BODY = env.int("CHAT_MAX_BODY", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CHAT_MAX_BODY
# Every frame a socket sends spends a token; CHAT_FRAME_RATE tokens per second refill a
# bucket of CHAT_FRAME_BURST. An empty bucket answers rate_limited.
CHAT_FRAME_RATE = env.float("CHAT_FRAME_RATE", default=50.0)
CHAT_FRAME_BURST = env.int("CHAT_FRAME_BURST", default=200)
# Open sockets per user and process; one more is closed with 4429 (docs/deployment.md).
CHAT_MAX_SOCKETS_PER_USER = env.int("CHAT_MAX_SOCKETS_PER_USER", default=20)
# Seconds a connect token (POST /api/v1/auth/connect-token/, PROTOCOL.md 9) can open one socket.
CHAT_CONNECT_TOKEN_TTL = env.int("CHAT_CONNECT_TOKEN_TTL", default=300)
# Open sockets per process (load shedding); one more is accepted and closed with 1013
# "try again later", and the client backs off. 0: no limit.
CHAT_MAX_CONNECTIONS = env.int("CHAT_MAX_CONNECTIONS", default=10000)
# A socket whose unsent output (bytes buffered by Daphne) stays above CHAT_SEND_BACKLOG for
# CHAT_SLOW_SOCKET_SECONDS, or reaches CHAT_SEND_BACKLOG_MAX, is closed with 1011.
CHAT_SEND_BACKLOG = env.int("CHAT_SEND_BACKLOG", default=1024 * 1024)
CHAT_SEND_BACKLOG_MAX = env.int("CHAT_SEND_BACKLOG_MAX", default=16 * 1024 * 1024)
CHAT_SLOW_SOCKET_SECONDS = env.float("CHAT_SLOW_SOCKET_SECONDS", default=5.0)
# Notices (PROTOCOL.md 9): at most CHAT_NOTICE_RATE frames per key and second reach a socket
# (0: no per-key limit, only conflation); a room holds at most CHAT_NOTICE_MAX_KEYS keys; a
# room's values are forgotten CHAT_NOTICE_TTL seconds after its last update.
CHAT_NOTICE_RATE = env.float("CHAT_NOTICE_RATE", default=20.0)
CHAT_NOTICE_MAX_KEYS = env.int("CHAT_NOTICE_MAX_KEYS", default=1000)
CHAT_NOTICE_TTL = env.float("CHAT_NOTICE_TTL", default=86400.0)
# On SIGTERM: seconds to wait for sockets to close (1001) and HTTP requests to finish.
CHAT_SHUTDOWN_TIMEOUT = env.float("CHAT_SHUTDOWN_TIMEOUT", default=10.0)

# --- Attachments (PROTOCOL.md 8) ------------------------------------------------------

# Largest uploaded file; the upload URL's body cap is this plus MULTIPART_SLACK (chat/limits.py).
CHAT_MAX_UPLOAD = env.int("CHAT_MAX_UPLOAD", default=25 * 1024 * 1024)
# Uploads per user: "<count>/<period>" (20/min, 100/h, 5/30s), "0" for none; counted from the
# stored uploads, so every process shares one budget.
CHAT_UPLOAD_RATE = env.str("CHAT_UPLOAD_RATE", default="20/min")
# A deleted message's files stay this many days (staff may restore it), then cleanup_files removes them.
CHAT_DELETED_FILE_DAYS = env.int("CHAT_DELETED_FILE_DAYS", default=30)
# Threads that make thumbnails beside the event loop (bench/thumbnails.py: up to 1.6 s and
# 190 MiB per 48 MP image, so a small pool bounds the memory).
CHAT_THUMBNAIL_THREADS = env.int("CHAT_THUMBNAIL_THREADS", default=2)
# Behind nginx: the `internal` location serving MEDIA_ROOT (deploy/nginx/chat-files.conf),
# e.g. "/_files/"; Django then answers /files/ with X-Accel-Redirect. Empty: Django streams.
CHAT_FILES_ACCEL = env.str("CHAT_FILES_ACCEL", default="")
MEDIA_ROOT = env.str("CHAT_MEDIA_ROOT", default=str(BASE_DIR / "media"))
# Every multipart file goes to a temporary file on disk, capped while it is parsed; the ASGI
# handler spools the body itself to disk past this many bytes, too.
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
FILE_UPLOAD_HANDLERS = ["chat.files.uploadhandler.CappedUploadHandler"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# S3 (or any S3-compatible store) through django-storages: private objects, and /files/
# redirects to a signed URL that expires after CHAT_S3_URL_EXPIRE seconds (docs/deployment.md).
# Credentials come from boto3's usual sources (AWS_ACCESS_KEY_ID …, an instance role).
CHAT_S3_BUCKET = env.str("CHAT_S3_BUCKET", default="")
if CHAT_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": CHAT_S3_BUCKET,
            "region_name": env.str("CHAT_S3_REGION", default="") or None,
            "endpoint_url": env.str("CHAT_S3_ENDPOINT_URL", default="") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": env.int("CHAT_S3_URL_EXPIRE", default=300),
            "file_overwrite": False,
        },
    }

# --- Background work and email (docs/deployment.md#the-tasks-worker) ------------------

# Django's Tasks API (the django-tasks backport): tasks are rows in the database, run by
# `manage.py db_worker` (./run starts one beside the server; deploy/worker tasks in production).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
# EMAIL_URL: smtp://user:password@host:port (smtp+tls://, smtps:// …); consolemail:// prints
# every email to the worker's output, the default in development.
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if not PRODUCTION else "smtp://localhost:25"))
EMAIL_TIMEOUT = 10  # seconds: an SMTP server that hangs fails the digest, which is sent later
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="chat@localhost")
# Seconds a notification waits unread before it is emailed (PROTOCOL.md 7's delay); also
# the least time between two digests to one user.
CHAT_NOTIFY_EMAIL_DELAY = env.float("CHAT_NOTIFY_EMAIL_DELAY", default=600.0)
# The address links in emails start with (no request to take it from in a worker).
CHAT_SITE_URL = env.str("CHAT_SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Bots a person may own at once (PROTOCOL.md 9; ended bots and webhooks' bots not counted).
CHAT_BOTS_PER_OWNER = env.int("CHAT_BOTS_PER_OWNER", default=20)

# Outgoing webhooks (PROTOCOL.md 9, docs/decisions.md#outgoing-webhooks), delivered by the
# tasks worker. URLs resolving to loopback, private, link-local … addresses are refused
# unless CHAT_WEBHOOK_ALLOW_PRIVATE (all of them) or CHAT_WEBHOOK_ALLOW_NETWORKS (a comma
# list of networks, e.g. "10.1.2.0/24", allowed for an internal receiver) says otherwise.
CHAT_WEBHOOK_ALLOW_PRIVATE = env.bool("CHAT_WEBHOOK_ALLOW_PRIVATE", default=False)
CHAT_WEBHOOK_ALLOW_NETWORKS = env.list("CHAT_WEBHOOK_ALLOW_NETWORKS", default=[])
CHAT_WEBHOOK_TIMEOUT = env.float("CHAT_WEBHOOK_TIMEOUT", default=10.0)  # seconds per attempt
# Retries of a failing event: the first after BACKOFF_START seconds, doubling up to
# BACKOFF_MAX; after GIVE_UP seconds of failures the subscription is paused.
CHAT_WEBHOOK_BACKOFF_START = env.float("CHAT_WEBHOOK_BACKOFF_START", default=1.0)
CHAT_WEBHOOK_BACKOFF_MAX = env.float("CHAT_WEBHOOK_BACKOFF_MAX", default=600.0)
CHAT_WEBHOOK_GIVE_UP = env.float("CHAT_WEBHOOK_GIVE_UP", default=86400.0)

# --- Auth, sessions -------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Site-banned users cannot log in and their sessions stop authenticating (chat/backends.py).
# The only backend: every login (the form, tokens, signup) goes through the ban check.
AUTHENTICATION_BACKENDS = ["chat.backends.ChatModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

if PRODUCTION:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST framework -------------------------------------------------------------------

def _rate(value: str) -> str | None:
    """A DRF throttle rate ("600/min"); "0" or empty turns the limit off."""
    return None if value.strip() in ("", "0") else value.strip()


REST_FRAMEWORK = {
    # Token first: an unauthenticated request then gets 401 with `WWW-Authenticate: Token`
    # (DRF answers 403 when the first class is SessionAuthentication).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "chat.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "chat.api.errors.exception_handler",
    # JSON nested deeper than 32 levels is a 400 bad_json, never a RecursionError.
    "DEFAULT_PARSER_CLASSES": [
        "chat.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["chat.api.throttling.ReadRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        # Per user, GET requests of the API (posting is CHAT_POST_RATE, shared with the socket).
        "read": _rate(env.str("CHAT_READ_RATE", default="1200/min")),
        # Per client address, POST /api/v1/auth/token/ (password guesses).
        "login": _rate(env.str("CHAT_LOGIN_RATE", default="30/min")),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chat API",
    "VERSION": "1",
    "DESCRIPTION": "REST API v1 of the chat (docs/protocol.md, REST API). Authenticate with the session "
    "(CSRF token on unsafe methods) or `Authorization: Token <key>` from POST /api/v1/auth/token/.",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # PATCH bodies are documented as validated (MessageEdit needs `body`), not as all-optional.
    "COMPONENT_SPLIT_PATCH": False,
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "chat.models.Membership.Role",
        "GrantableRoleEnum": [("member", "Member"), ("moderator", "Moderator")],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chat.api.schema.add_components",
    ],
}

# --- Static, i18n, logging ------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Without collectstatic (development, tests) WhiteNoise finds files the way runserver does.
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
}
