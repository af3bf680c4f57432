"""Outgoing webhooks over REST (PROTOCOL.md 9): a room's owner, moderators and staff
subscribe URLs to the room's events, list and remove them, and read their delivery attempts.

Each view calls one service of chat.services.subscriptions; refusals come from chat.rules
and the SSRF guard (chat.outgoing.guard).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import protocol, rules, services
from ..models import DeliveryAttempt, Subscription
from ..protocol import ChatError
from .schema import MAX_ID, RETRY_AFTER, errors
from .serializers import StrictCharField
from .views import SLUG, _access, _valid

ATTEMPTS_SHOWN = 100

SUBSCRIPTION_ID = OpenApiParameter(
    "subscription_id", {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
    OpenApiParameter.PATH, description="The subscription's id.",
)


class SubscriptionSerializer(serializers.Serializer):
    """A subscription as listed (never its secret)."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.CharField(read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)
    created_at = serializers.DateTimeField(read_only=True)
    delivered_seq = serializers.IntegerField(read_only=True, help_text="The last seq delivered (or skipped).")
    paused = serializers.SerializerMethodField(help_text="True after 24 hours of failed deliveries: nothing more is sent.")
    paused_at = serializers.DateTimeField(read_only=True, allow_null=True)
    failing_since = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the oldest undelivered event first failed (null: not failing)."
    )
    retry_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="When that event is tried next.")

    def get_paused(self, subscription) -> bool:
        return subscription.paused_at is not None


class SubscriptionCreatedSerializer(SubscriptionSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The HMAC-SHA256 key of X-Chat-Signature. Shown here only, once."
    )


class SubscriptionCreateSerializer(serializers.Serializer):
    url = StrictCharField(trim_whitespace=False, max_length=Subscription.MAX_URL,
                          help_text="http:// or https://, no user name or password, a public host.")


class DeliveryAttemptSerializer(serializers.Serializer):
    seq = serializers.IntegerField(read_only=True)
    event = serializers.CharField(source="event_type", read_only=True, help_text="X-Chat-Event: the frame's type.")
    delivery_id = serializers.CharField(read_only=True, help_text="X-Chat-Delivery (the same on each retry).")
    ok = serializers.BooleanField(read_only=True, help_text="A 2xx answer.")
    status_code = serializers.IntegerField(read_only=True, allow_null=True, help_text="The answer's status; null: none.")
    error = serializers.CharField(read_only=True, help_text="What failed (timeout, refused, a connection error).")
    duration_ms = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


def _subscription_id(subscription_id: int) -> int:
    if not 1 <= subscription_id <= MAX_ID:
        raise ChatError(protocol.NOT_FOUND, "No such subscription.")
    return subscription_id


class RoomSubscriptionsView(APIView):
    @extend_schema(
        operation_id="rooms_subscriptions_list",
        parameters=[SLUG, RETRY_AFTER],
        responses={200: SubscriptionSerializer(many=True), **errors(401, 403, 404, 429, 503)},
        description="The room's outgoing webhooks, oldest first, without their secrets. Owner, moderators, staff.",
    )
    def get(self, request: Request, slug: str) -> Response:
        access = _access(request, slug)
        return Response(SubscriptionSerializer(services.subscriptions_of(access=access), many=True).data)

    @extend_schema(
        operation_id="rooms_subscriptions_create",
        parameters=[SLUG],
        request=SubscriptionCreateSerializer,
        # An address literal (TEST-NET-3, refused as not public): the schema's fuzz tests send
        # the examples, and a host name would make them look it up in the DNS.
        examples=[OpenApiExample("CI", value={"url": "https://203.0.113.7/chat-hook"}, request_only=True)],
        responses={201: SubscriptionCreatedSerializer, **errors(400, 401, 403, 404, 503)},
        description="Subscribe a URL to every room event from now on: each is POSTed as the socket frame's "
        "JSON with X-Chat-Event, X-Chat-Delivery and X-Chat-Signature (sha256=HMAC of the body with `secret`, "
        "shown in this answer only). 400 for a URL that is not http(s), holds credentials, or resolves to a "
        "loopback, private or link-local address. Owner, moderators, staff; at most 10 per room.",
    )
    def post(self, request: Request, slug: str) -> Response:
        access = _access(request, slug)
        rules.check_moderate(access)
        data = _valid(SubscriptionCreateSerializer, request.data)
        subscription = services.subscription_create(access=access, actor=request.user, url=data["url"])
        return Response(SubscriptionCreatedSerializer(subscription).data, status=status.HTTP_201_CREATED)


class RoomSubscriptionView(APIView):
    @extend_schema(
        operation_id="rooms_subscriptions_destroy",
        parameters=[SLUG, SUBSCRIPTION_ID],
        request=None,
        responses={204: None, **errors(401, 403, 404, 503)},
        description="Remove the subscription: nothing more is sent to it.",
    )
    def delete(self, request: Request, slug: str, subscription_id: int) -> Response:
        access = _access(request, slug)
        services.subscription_delete(access=access, actor=request.user, subscription_id=_subscription_id(subscription_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomSubscriptionDeliveriesView(APIView):
    @extend_schema(
        operation_id="rooms_subscriptions_deliveries",
        parameters=[SLUG, SUBSCRIPTION_ID, RETRY_AFTER],
        responses={200: DeliveryAttemptSerializer(many=True), **errors(401, 403, 404, 429, 503)},
        description=f"The subscription's last {ATTEMPTS_SHOWN} delivery attempts, newest first.",
    )
    def get(self, request: Request, slug: str, subscription_id: int) -> Response:
        access = _access(request, slug)
        subscription = services.subscription_of(access=access, subscription_id=_subscription_id(subscription_id))
        attempts = DeliveryAttempt.objects.filter(subscription=subscription).order_by("-pk")[:ATTEMPTS_SHOWN]
        return Response(DeliveryAttemptSerializer(attempts, many=True).data)
