"""WebSocket handshake authentication (PROTOCOL.md 3).

- A handshake carrying a session cookie with a missing, ``null`` or foreign Origin (one
  whose host is not in ALLOWED_HOSTS) is refused with HTTP 403, even when it also carries a
  token: that stops cross-site WebSocket hijacking. Channels' AllowedHostsOriginValidator is
  not used because it would also refuse token clients and handshakes without credentials.
- ``Authorization: Token <key>``: programs; no Origin needed.
- ``?token=<connect token>`` in the URL (PROTOCOL.md 9, services.connect_tokens): once,
  for the user it was issued to; no cookie or Origin needed.
- Otherwise the Django session cookie.
- Neither: the socket is let through as anonymous; the consumer then closes it with 4401.

Offering only unknown subprotocols is refused at the handshake too.
"""

from __future__ import annotations

from collections.abc import Sequence
from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from django.utils.module_loading import import_string

from . import protocol, rules, services
from .coalesce import coalesced, each
from .db import db_call


def origin_allowed(origin: str | None) -> bool:
    """True if ``origin`` names a host in ALLOWED_HOSTS."""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    domain, _port = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def _plausible_key(key: str) -> bool:
    """True if ``key`` could be a session key or token (ASCII letters and digits), so that a
    NUL or other junk never reaches a database query."""
    return 0 < len(key) <= 64 and key.isascii() and key.isalnum()


def _session_user(session_key: str):
    if not _plausible_key(session_key):
        return AnonymousUser()
    engine = import_string(settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(session_key))
    # auth.get_user verifies the session's password hash, so a changed password logs out.
    return auth.get_user(request)


def _token_handshakes(keys: Sequence[str]) -> list[tuple[Any, bool]]:
    """For each token key, in order: its active user (else anonymous) and whether the
    handshake is site-banned; two queries for them all (chat/coalesce.py)."""
    from rest_framework.authtoken.models import Token

    plausible = {key for key in keys if _plausible_key(key)}
    found = Token.objects.select_related("user__chat_bot").filter(key__in=plausible) if plausible else []
    tokens = {token.key: token for token in found}
    users = []
    for key in keys:
        token = tokens.pop(key, None)  # a key given twice: the second socket loads its own user
        if token is None and key in plausible:
            token = Token.objects.select_related("user__chat_bot").filter(key=key).first()
        users.append(token.user if token is not None and token.user.is_active else AnonymousUser())
    banned = rules.handshake_banned_many([(user, None, key) for user, key in zip(users, keys)])
    return list(zip(users, banned))


def _session_handshakes(session_keys: Sequence[str]) -> list[tuple[Any, bool] | Exception]:
    """For each session key, in order: its user and whether the handshake is site-banned
    (the bans in one query)."""
    users = each(_session_user, session_keys)
    ok = [(user, key) for user, key in zip(users, session_keys) if not isinstance(user, Exception)]
    banned = iter(rules.handshake_banned_many([(user, key, None) for user, key in ok]))
    return [user if isinstance(user, Exception) else (user, next(banned)) for user in users]


def _connect_token(scope) -> str | None:
    """The ``token`` of the handshake's query string, if any (the last one given)."""
    query = scope.get("query_string", b"")
    if b"token=" not in query:
        return None
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("token")
    return values[-1] if values else None


async def _deny(receive, send) -> None:
    """Refuse the handshake: Daphne answers HTTP 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


class ChatAuthMiddleware:
    """Sets ``scope["user"]``, and ``scope["session_key"]`` or ``scope["auth_token"]``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        # This frame lives as long as the socket (it awaits the app): what the handshake
        # needed (headers, cookies) lives in _authenticated's frame, gone once it returns.
        scope = await self._authenticated(scope)
        if scope is None:
            return await _deny(receive, send)
        return await self.app(scope, receive, send)

    async def _authenticated(self, scope) -> dict | None:
        """The scope with the socket's user, or None to refuse the handshake (403)."""
        offered = scope.get("subprotocols") or []
        if offered and protocol.SUBPROTOCOL not in offered:
            return None

        headers = {name.lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get(b"cookie", ""))
        except Exception:
            cookies = SimpleCookie()
        session_key = cookies[settings.SESSION_COOKIE_NAME].value if settings.SESSION_COOKIE_NAME in cookies else None
        authorization = headers.get(b"authorization", "")

        if session_key is not None and not origin_allowed(headers.get(b"origin")):
            # Whatever else the handshake carries, a token included: a page on another site
            # must not reach the socket with the browser's cookie (PROTOCOL.md 3).
            return None
        scope = dict(scope, user=AnonymousUser(), session_key=None, auth_token=None)
        connect_token = _connect_token(scope)
        # A token's or a session's user and site ban come in one database call shared with
        # the other handshakes waiting meanwhile (a reconnect storm: chat/coalesce.py).
        if authorization.startswith("Token "):
            key = authorization[len("Token ") :].strip()
            scope["user"], scope["site_banned"] = await coalesced(_token_handshakes, key)
            scope["auth_token"] = key
        elif connect_token is not None:
            # A used, expired or forged one leaves the socket anonymous: 4401, as for any failure.
            scope["user"] = await db_call(services.connect_token_redeem)(token=connect_token) or AnonymousUser()
        elif session_key is not None:
            scope["user"], scope["site_banned"] = await coalesced(_session_handshakes, session_key)
            scope["session_key"] = session_key
        if "site_banned" not in scope and scope["user"].is_authenticated:
            # A site-banned user's handshake is accepted, then closed with 4403 (PROTOCOL.md 5).
            scope["site_banned"] = await db_call(rules.handshake_banned)(
                user=scope["user"], session_key=scope["session_key"], token=scope["auth_token"]
            )
        return scope
