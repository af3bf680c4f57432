"""REST views of notifications and the caller's preferences (PROTOCOL.md 7).

GET /api/v1/notifications/, POST /api/v1/notifications/read/, GET and PATCH /api/v1/me/.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import protocol, selectors, services
from ..models import UserPreferences
from . import serializers as s
from .parsers import JSONParser
from .schema import MAX_ID, NOTIFICATIONS_PAGE, RETRY_AFTER, errors
from .views import _valid


@extend_schema_field({"type": "string", "enum": ["1", "0", "true", "false"]})
class FlagField(serializers.Field):
    """A query-string flag: 1, 0, true or false."""

    default_error_messages = {"invalid": "Must be 1, 0, true or false."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and data.lower() in ("1", "true", "0", "false"):
            return data.lower() in ("1", "true")
        self.fail("invalid")

    def to_representation(self, value):
        return bool(value)


class NotificationsQuerySerializer(serializers.Serializer):
    unread = FlagField(required=False, default=False, help_text="`1`: only the unread ones.")
    before = s.StrictIntegerField(required=False, min_value=1, max_value=MAX_ID,
                                  help_text="Only notifications with id < before (the next page).")
    limit = s.StrictIntegerField(required=False, min_value=1, max_value=selectors.NOTIFICATIONS_LIMIT_MAX,
                                 default=selectors.NOTIFICATIONS_LIMIT_DEFAULT)


class NotificationsReadSerializer(serializers.Serializer):
    ids = serializers.ListField(child=s.StrictIntegerField(min_value=1, max_value=MAX_ID), required=False,
                                max_length=1000, help_text="The notifications to mark read (others' are ignored).")
    all = s.StrictBooleanField(required=False, default=False, help_text="`true`: mark every notification read.")

    def validate(self, attrs):
        if not attrs.get("all") and "ids" not in attrs:
            raise serializers.ValidationError("Give `ids`, or `all` true.")
        return attrs


class NotificationsReadResultSerializer(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many turned read.")


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.CharField(read_only=True)
    email_notifications = s.StrictBooleanField(
        required=False, help_text="Email digests of unread notifications while away (default on)."
    )
    timezone = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=64,
        help_text='The IANA name of the user\'s time zone ("Europe/Paris"; "" for unknown); the page sets it '
                  "from the browser. User cards show the local time.",
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give `email_notifications` or `timezone`.")
        return attrs


def _me(user) -> dict:
    preferences = UserPreferences.objects.filter(user_id=user.pk).first()
    return {
        "id": user.pk, "username": user.username, "email": user.email,
        "email_notifications": preferences.email_notifications if preferences else True,
        "timezone": preferences.timezone if preferences else "",
    }


class NotificationsView(APIView):
    @extend_schema(
        operation_id="notifications_list",
        parameters=[NotificationsQuerySerializer, RETRY_AFTER],
        responses={200: NOTIFICATIONS_PAGE, **errors(400, 401, 429, 503)},
        description="The caller's notifications, newest first; `before` (an id) pages back.",
    )
    def get(self, request: Request) -> Response:
        params = _valid(NotificationsQuerySerializer, request.query_params.dict())
        page, has_more = selectors.notifications_page(user=request.user, **params)
        return Response({"results": [protocol.notification_shape(n) for n in page], "has_more": has_more})


class NotificationsReadView(APIView):
    parser_classes = [JSONParser]  # a list of ids: JSON only (a form would spell it field by field)
    @extend_schema(
        operation_id="notifications_read",
        request=NotificationsReadSerializer,
        examples=[OpenApiExample("ids", value={"ids": [9, 10]}, request_only=True),
                  OpenApiExample("all", value={"all": True}, request_only=True)],
        responses={200: NotificationsReadResultSerializer, **errors(400, 401, 403, 503)},
        description="Mark notifications read: `ids`, or `all`.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(NotificationsReadSerializer, request.data)
        marked = services.notifications_mark_read(user=request.user, ids=data.get("ids"), all=data["all"])
        return Response({"marked": marked})


class MeView(APIView):
    # JSON only: a form without the field would read as false (HTML checkbox semantics).
    parser_classes = [JSONParser]

    @extend_schema(operation_id="me_get", responses={200: MeSerializer, **errors(401, 429, 503)})
    def get(self, request: Request) -> Response:
        return Response(_me(request.user))

    @extend_schema(
        operation_id="me_update",
        request=MeSerializer,
        examples=[OpenApiExample("email off", value={"email_notifications": False}, request_only=True),
                  OpenApiExample("time zone", value={"timezone": "Europe/Paris"}, request_only=True)],
        responses={200: MeSerializer, **errors(400, 401, 403, 503)},
        description="Change the caller's preferences: `email_notifications`, `timezone` (an IANA name).",
    )
    def patch(self, request: Request) -> Response:
        data = _valid(MeSerializer, request.data)
        services.preferences_update(
            user_id=request.user.pk, email_notifications=data.get("email_notifications"), timezone=data.get("timezone")
        )
        return Response(_me(request.user))
