"""Bots and incoming webhooks (PROTOCOL.md 9).

A bot is a user with a ``Bot`` row, owned by a person, that authenticates with its own API
token. Ending a bot deactivates its user (so every socket of it closes with 4401: see
chat.signals) and deletes its token; its messages stay, still a bot's, and its username
stays taken. An incoming webhook posts into one room as a bot of its own, made with it.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from .. import protocol, rules
from ..models import Bot, IncomingWebhook, Membership, Message
from ..protocol import ChatError
from .messages import message_post

WEBHOOK_NAME_MAX = 100  # IncomingWebhook.name's max_length
HOOKS_URL = "/hooks/"  # where a webhook's secret is posted to (chatproject/urls.py)


def _bots_limit() -> int:
    return settings.CHAT_BOTS_PER_OWNER


def _check_person(user) -> None:
    if protocol.is_bot(user):
        raise ChatError(protocol.FORBIDDEN, "A bot cannot create bots or webhooks.")


def validate_username(username: str) -> str:
    """Return ``username`` if it is valid and free, as signing up asks (Django's username
    rules, taken whatever the case); raise invalid otherwise."""
    protocol.validate_text(username, field="username")
    username = unicodedata.normalize("NFKC", username)  # as signing up does (UsernameField)
    field = get_user_model()._meta.get_field("username")
    try:
        field.clean(username, None)
    except ValidationError as error:
        raise ChatError(protocol.INVALID, f"username: {' '.join(error.messages)}") from None
    if get_user_model()._default_manager.filter(username__iexact=username).exists():
        raise ChatError(protocol.INVALID, "That username is taken.")
    return username


def _bot_user_create(*, username: str, owner, name: str = ""):
    """The user of a new bot, its Bot row and its token. Call inside transaction.atomic()."""
    from rest_framework.authtoken.models import Token

    user = get_user_model()(username=username, first_name=name)
    user.set_unusable_password()  # no login form, no token for a password: its token only
    user.save()
    Bot.objects.create(user=user, owner=owner)
    token = Token.objects.create(user=user)
    return user, token.key


# --- bots -------------------------------------------------------------------------------


def bot_create(*, owner, username: str) -> tuple[object, str]:
    """Create a bot owned by ``owner``; return (its user, its token key).

    Refused for a bot (bots do not make bots), past CHAT_BOTS_PER_OWNER bots of the owner
    that are not ended (forbidden), and for a bad or taken username (invalid).
    """
    _check_person(owner)
    username = validate_username(username)
    limit = _bots_limit()
    try:
        with transaction.atomic():
            # The owner's row locked: two concurrent creations cannot both pass the limit.
            get_user_model()._default_manager.select_for_update().filter(pk=owner.pk).first()
            if bots_of(owner=owner).count() >= limit:
                raise ChatError(protocol.FORBIDDEN, f"You have {limit} bots, the most allowed; end one first.")
            user, key = _bot_user_create(username=username, owner=owner)
    except IntegrityError:  # the same name, created meanwhile
        raise ChatError(protocol.INVALID, "That username is taken.") from None
    return user, key


def bots_of(*, owner):
    """The owner's bots that are not ended, oldest first (webhooks' bots are not listed:
    they come and go with their webhook), with their users and tokens."""
    return (
        Bot.objects.filter(owner=owner, ended_at__isnull=True, user__incoming_webhook__isnull=True)
        .select_related("user__auth_token")
        .order_by("created_at", "pk")
    )


def _end(bot: Bot) -> None:
    """End ``bot`` (its row locked): deactivated, its token gone. Deactivating closes its sockets (4401)."""
    from rest_framework.authtoken.models import Token

    bot.ended_at = timezone.now()
    bot.save(update_fields=["ended_at"])
    user = bot.user
    user.is_active = False
    user.save(update_fields=["is_active"])  # chat.signals closes every socket of it with 4401
    Token.objects.filter(user=user).delete()


def bot_end(*, actor, username: str) -> None:
    """End the bot ``username``: its owner, or a staff moderator (the admin). Raise not_found
    for no such bot of the actor's (or one ended already, or a webhook's: revoke the webhook)."""
    if not protocol.text_storable(username):
        raise ChatError(protocol.NOT_FOUND, "No such bot.")
    with transaction.atomic():
        found = Bot.objects.select_for_update(of=("self",)).select_related("user").filter(
            user__username=username, ended_at__isnull=True, user__incoming_webhook__isnull=True
        )
        if not rules.is_site_moderator(actor):
            found = found.filter(owner=actor)
        bot = found.first()
        if bot is None:
            raise ChatError(protocol.NOT_FOUND, "No such bot.")
        _end(bot)


# --- incoming webhooks ------------------------------------------------------------------


def secret_digest(secret: str) -> str:
    """How a webhook's secret is stored and looked up: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def webhook_url(secret: str) -> str:
    return f"{HOOKS_URL}{secret}/"


def _validate_webhook_name(name: str) -> str:
    name = " ".join(protocol.validate_text(name, field="name").split())
    if not 1 <= len(name) <= WEBHOOK_NAME_MAX:
        raise ChatError(protocol.INVALID, f"A webhook's name is 1-{WEBHOOK_NAME_MAX} characters.")
    return name


def webhook_create(*, access: rules.RoomAccess, actor, name: str) -> tuple[IncomingWebhook, str]:
    """A room owner or moderator (or staff) creates an incoming webhook; return (webhook, secret).

    The webhook posts as a bot of its own (owned by ``actor``, a member of the room, its
    display name the webhook's). The secret is returned once; only its digest is stored.
    Decided under the room's lock on ``actor``'s access read there.
    """
    _check_person(actor)
    name = _validate_webhook_name(name)
    secret = secrets.token_urlsafe(32)
    base = slugify(name)[:40].strip("-_") or "webhook"
    with transaction.atomic():
        access = rules.check_moderate(rules.room_access_locked(access, actor))
        if access.room.dm_key is not None:
            raise ChatError(protocol.INVALID, "Direct-message rooms have no webhooks.")
        user, _key = _bot_user_create(username=f"{base}-hook-{secrets.token_hex(4)}", owner=actor, name=name)
        Membership.objects.create(room=access.room, user=user, read_seq=access.room.seq)
        webhook = IncomingWebhook.objects.create(
            room=access.room, bot=user, name=name, secret_hash=secret_digest(secret), created_by=actor
        )
    return webhook, secret


def webhooks_of(*, access: rules.RoomAccess):
    """The room's webhooks that are not revoked, oldest first: owners, moderators and staff."""
    rules.check_moderate(access)
    return IncomingWebhook.objects.filter(room=access.room, revoked_at__isnull=True).select_related("bot").order_by("pk")


def webhook_revoke(*, webhook_id: int, actor, door: rules.Door = rules.Door.API) -> IncomingWebhook:
    """Revoke the webhook: its URL answers 404 from now on and its bot is ended. The room's
    owner, moderators or staff; not_found for no such webhook (or one revoked already)."""
    with transaction.atomic():
        found = IncomingWebhook.objects.filter(pk=webhook_id, revoked_at__isnull=True).values_list("room_id", flat=True).first()
        access = rules.room_access(user=actor, room_id=found, door=door, lock=True) if found is not None else None
        rules.check_moderate(access)
        webhook = (
            IncomingWebhook.objects.select_for_update(of=("self",))
            .filter(pk=webhook_id, room=access.room, revoked_at__isnull=True).first()
        )
        if webhook is None:
            raise ChatError(protocol.NOT_FOUND, "No such webhook.")
        webhook.revoked_at = timezone.now()
        webhook.save(update_fields=["revoked_at"])
        bot = Bot.objects.select_for_update(of=("self",)).select_related("user").filter(user_id=webhook.bot_id).first()
        if bot is not None and bot.ended_at is None:
            _end(bot)
    return webhook


def _plausible_secret(secret: str) -> bool:
    """True if ``secret`` could be one token_urlsafe(32) made (URL-safe base64, 43 characters)."""
    return 20 <= len(secret) <= 64 and secret.isascii() and all(c.isalnum() or c in "-_" for c in secret)


def webhook_of_secret(*, secret: str) -> IncomingWebhook:
    """The webhook whose secret is ``secret``, with its room and bot; raise not_found for an
    unknown or revoked one (looked up by digest: the secret itself is stored nowhere)."""
    webhook = None
    if _plausible_secret(secret):
        webhook = (
            IncomingWebhook.objects.select_related("room", "bot__chat_bot")
            .filter(secret_hash=secret_digest(secret), revoked_at__isnull=True, bot__is_active=True)
            .first()
        )
    if webhook is None:
        raise ChatError(protocol.NOT_FOUND, "No such webhook.")
    return webhook


def webhook_post(*, webhook: IncomingWebhook, text: str) -> Message:
    """Post ``text`` in the webhook's room as its bot (webhook_of_secret loads both), through
    message_post: the room's rules and the posting rate, its codes (invalid, muted …)."""
    # A webhook call carries no id of its own: each one is a new message.
    message, _created = message_post(
        room=webhook.room, author=webhook.bot, body=text, client_id=f"hook-{uuid.uuid4().hex}", door=rules.Door.API
    )
    return message
