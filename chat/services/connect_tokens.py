"""Connect tokens (PROTOCOL.md 9): a short-lived, single-use credential that opens one
socket (``/ws/chat/?token=…``) for a page on another site, with no cookie or Origin.

A token is django.core.signing's TimestampSigner over ``{"u": user id, "n": nonce}`` with
its own salt: forging one needs SECRET_KEY, and its age is checked against
CHAT_CONNECT_TOKEN_TTL. "Once" holds across server processes because redeeming inserts the
nonce into ConnectTokenUse, whose primary key refuses a second insert; the same write
deletes rows older than the lifetime (their tokens are expired), so the table stays small.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import ConnectTokenUse

SALT = "chat.connect-token"
MAX_TOKEN = 512  # longer is not one of ours: refused before any decoding


def connect_token_issue(*, user) -> str:
    """Return a new connect token for ``user`` (valid for CHAT_CONNECT_TOKEN_TTL seconds, once)."""
    signer = signing.TimestampSigner(salt=SALT)
    return signer.sign_object({"u": user.pk, "n": secrets.token_urlsafe(18)}, compress=False)


def connect_token_redeem(*, token: str):
    """Return the active user ``token`` was issued to and mark it used; None if it is
    forged, malformed, expired or used already (then nothing is written)."""
    if not 0 < len(token) <= MAX_TOKEN or not token.isascii() or not token.isprintable():
        return None
    ttl = settings.CHAT_CONNECT_TOKEN_TTL
    try:
        data = signing.TimestampSigner(salt=SALT).unsign_object(token, max_age=ttl)
    except (signing.BadSignature, ValueError):  # SignatureExpired is a BadSignature
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), int) or not isinstance(data.get("n"), str):
        return None
    user = get_user_model().objects.filter(pk=data["u"], is_active=True).first()
    if user is None:
        return None
    now = timezone.now()
    try:
        with transaction.atomic():
            ConnectTokenUse.objects.filter(used_at__lt=now - timedelta(seconds=ttl)).delete()
            ConnectTokenUse.objects.create(nonce=data["n"][:64], user=user, used_at=now)
    except IntegrityError:  # used before, by this process or another
        return None
    return user
