"""Bots and the management of incoming webhooks over REST (PROTOCOL.md 9).

Each view calls one service of chat.services.bots; the webhook's own URL (`POST /hooks/…`)
is chat.api.hooks.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import protocol, rules, services
from ..protocol import ChatError
from ..services.bots import WEBHOOK_NAME_MAX, webhook_url
from .schema import RETRY_AFTER, errors
from .serializers import StrictCharField
from .views import SLUG, _access, _valid

BOT_USERNAME = OpenApiParameter("username", str, OpenApiParameter.PATH, description="The bot's username.")
WEBHOOK_ID = OpenApiParameter(
    "webhook_id", {"type": "integer", "format": "int64", "minimum": 1}, OpenApiParameter.PATH,
    description="The webhook's id.",
)

# --- shapes -----------------------------------------------------------------------------


class BotCreateSerializer(serializers.Serializer):
    username = StrictCharField(trim_whitespace=False, max_length=150,
                               help_text="As for people: letters, digits and @.+-_, at most 150; not taken.")


class BotSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username", read_only=True)
    token = serializers.CharField(
        source="user.auth_token.key", read_only=True, default=None,
        help_text="The bot's API token: `Authorization: Token <token>` at the REST API and the WebSocket.",
    )
    created_at = serializers.DateTimeField(read_only=True)


class WebhookCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=WEBHOOK_NAME_MAX, help_text="Shown as the name of the webhook's bot.")


class WebhookSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    bot = serializers.CharField(source="bot.username", read_only=True, help_text="The username it posts as.")
    created_at = serializers.DateTimeField(read_only=True)


class WebhookCreatedSerializer(WebhookSerializer):
    url = serializers.CharField(
        read_only=True, help_text="`/hooks/<secret>/`: POST `{\"text\": …}` there. Shown once; only a digest is kept."
    )


# --- bots -------------------------------------------------------------------------------


class BotsView(APIView):
    @extend_schema(
        operation_id="bots_list",
        parameters=[RETRY_AFTER],
        responses={200: BotSerializer(many=True), **errors(401, 403, 429, 503)},
        description="The caller's bots (not ended), oldest first, with their tokens.",
    )
    def get(self, request: Request) -> Response:
        return Response(BotSerializer(services.bots_of(owner=request.user), many=True).data)

    @extend_schema(
        operation_id="bots_create",
        request=BotCreateSerializer,
        examples=[OpenApiExample("bot", value={"username": "deploybot"}, request_only=True)],
        responses={201: BotSerializer, **errors(400, 401, 403, 503)},
        description="Create a bot owned by the caller: 201 with its token. 400 for a bad or taken "
        "username; 403 for a bot, or past CHAT_BOTS_PER_OWNER bots.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(BotCreateSerializer, request.data)
        user, token = services.bot_create(owner=request.user, username=data["username"])
        return Response({"username": user.username, "token": token, "created_at": user.chat_bot.created_at},
                        status=status.HTTP_201_CREATED)


class BotView(APIView):
    @extend_schema(
        operation_id="bots_end",
        parameters=[BOT_USERNAME],
        request=None,
        responses={204: None, **errors(401, 403, 404, 503)},
        description="End the bot: its token stops working and its sockets close with 4401. Its "
        "messages stay; its username stays taken.",
    )
    def delete(self, request: Request, username: str) -> Response:
        services.bot_end(actor=request.user, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- incoming webhooks --------------------------------------------------------------------


class RoomWebhooksView(APIView):
    @extend_schema(
        operation_id="rooms_webhooks_list",
        parameters=[SLUG, RETRY_AFTER],
        responses={200: WebhookSerializer(many=True), **errors(401, 403, 404, 429, 503)},
        description="The room's incoming webhooks (owner, moderators), without their secrets.",
    )
    def get(self, request: Request, slug: str) -> Response:
        access = _access(request, slug)
        return Response(WebhookSerializer(services.webhooks_of(access=access), many=True).data)

    @extend_schema(
        operation_id="rooms_webhooks_create",
        parameters=[SLUG],
        request=WebhookCreateSerializer,
        examples=[OpenApiExample("CI", value={"name": "CI"}, request_only=True)],
        responses={201: WebhookCreatedSerializer, **errors(400, 401, 403, 404, 503)},
        description="Create an incoming webhook (owner, moderators): it posts as a bot of its own. "
        "The answer's `url` holds the secret, shown this once.",
    )
    def post(self, request: Request, slug: str) -> Response:
        access = _access(request, slug)
        data = _valid(WebhookCreateSerializer, request.data)
        webhook, secret = services.webhook_create(access=access, actor=request.user, name=data["name"])
        body = {**WebhookSerializer(webhook).data, "url": webhook_url(secret)}
        return Response(body, status=status.HTTP_201_CREATED)


class RoomWebhookView(APIView):
    @extend_schema(
        operation_id="rooms_webhooks_revoke",
        parameters=[SLUG, WEBHOOK_ID],
        request=None,
        responses={204: None, **errors(401, 403, 404, 503)},
        description="Revoke the webhook: its URL answers 404 from now on.",
    )
    def delete(self, request: Request, slug: str, webhook_id: int) -> Response:
        access = _access(request, slug)
        if not 1 <= webhook_id <= 2**63 - 1:
            raise ChatError(protocol.NOT_FOUND, "No such webhook.")
        # The webhook must be this room's: another room's id is not found here.
        if not services.webhooks_of(access=access).filter(pk=webhook_id).exists():
            raise ChatError(protocol.NOT_FOUND, "No such webhook.")
        services.webhook_revoke(webhook_id=webhook_id, actor=request.user, door=rules.Door.API)
        return Response(status=status.HTTP_204_NO_CONTENT)
