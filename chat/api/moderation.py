"""Moderation over REST (PROTOCOL.md 4 and 5): mutes and room bans by the room's owner and
moderators (and staff), reports by anyone who can read the message.

Each view calls one service of chat.services.moderation; refusals come from chat.rules.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import rules, services
from ..models import Mute, RoomBan, active_until_q
from ..services.moderation import REASON_MAX
from .schema import RETRY_AFTER, errors
from .serializers import StrictCharField
from .views import MESSAGE_ID, SLUG, USERNAME, _access, _message_id, _user, _valid

# --- shapes -----------------------------------------------------------------------------


class RestrictionSerializer(serializers.Serializer):
    """A mute or a room ban in force."""

    username = serializers.CharField(source="user.username", read_only=True)
    until = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Null: until lifted.")
    reason = serializers.CharField(read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None,
        help_text="Who muted or banned (null if that account is gone).",
    )
    created_at = serializers.DateTimeField(read_only=True)


class RestrictionSetSerializer(serializers.Serializer):
    username = StrictCharField(trim_whitespace=False, max_length=150)
    until = serializers.DateTimeField(
        required=False, allow_null=True, default=None,
        help_text="When it ends (ISO 8601, in the future); null or absent: until lifted.",
    )
    reason = StrictCharField(required=False, allow_blank=True, max_length=REASON_MAX, default="")


class ReportCreateSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=REASON_MAX, default="",
                             help_text="Why the message should be looked at.")


class ReportCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True, help_text="The report's id.")


# --- mutes and bans ---------------------------------------------------------------------


class _RestrictionsView(APIView):
    """GET: the restrictions in force in the room. POST: add one (or replace its time and reason)."""

    model = None
    set_service = None

    def get(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_moderate)
        rows = (
            self.model.objects.filter(active_until_q(timezone.now()), room=access.room)
            .select_related("user", "created_by")
            .order_by("created_at", "pk")
        )
        return Response(RestrictionSerializer(rows, many=True).data)

    def post(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_moderate)
        data = _valid(RestrictionSetSerializer, request.data)
        restriction, created = self.set_service(
            access=access, actor=request.user, user=_user(data["username"]), until=data["until"], reason=data["reason"]
        )
        return Response(
            RestrictionSerializer(restriction).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class _RestrictionView(APIView):
    lift_service = None

    def delete(self, request: Request, slug: str, username: str) -> Response:
        access = _access(request, slug, rules.check_moderate)
        self.lift_service(access=access, actor=request.user, user=_user(username))
        return Response(status=status.HTTP_204_NO_CONTENT)


_SET_EXAMPLE = OpenApiExample(
    "an hour", value={"username": "bob", "until": "2026-11-26T10:00:00Z", "reason": "flooding"}, request_only=True
)


class RoomMutesView(_RestrictionsView):
    model = Mute
    set_service = staticmethod(services.mute_set)

    @extend_schema(
        operation_id="rooms_mutes_list",
        parameters=[SLUG, RETRY_AFTER],
        responses={200: RestrictionSerializer(many=True), **errors(401, 403, 404, 429, 503)},
        description="The room's mutes in force. The owner, moderators and staff.",
    )
    def get(self, request: Request, slug: str) -> Response:
        return super().get(request, slug)

    @extend_schema(
        operation_id="rooms_mutes_create",
        parameters=[SLUG],
        request=RestrictionSetSerializer,
        examples=[_SET_EXAMPLE],
        responses={201: RestrictionSerializer, 200: RestrictionSerializer, **errors(400, 401, 403, 404, 503)},
        description="Mute a user: their `send` and `edit` answer `muted`. Muting again replaces `until` "
        "and `reason` (200). Nobody mutes the owner, staff or themselves; only the owner mutes a moderator.",
    )
    def post(self, request: Request, slug: str) -> Response:
        return super().post(request, slug)


class RoomMuteView(_RestrictionView):
    lift_service = staticmethod(services.mute_lift)

    @extend_schema(
        operation_id="rooms_mutes_destroy",
        parameters=[SLUG, USERNAME],
        request=None,
        responses={204: None, **errors(401, 403, 404, 503)},
        description="Unmute a user (404 if not muted).",
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        return super().delete(request, slug, username)


class RoomBansView(_RestrictionsView):
    model = RoomBan
    set_service = staticmethod(services.room_ban_set)

    @extend_schema(
        operation_id="rooms_bans_list",
        parameters=[SLUG, RETRY_AFTER],
        responses={200: RestrictionSerializer(many=True), **errors(401, 403, 404, 429, 503)},
        description="The room's bans in force. The owner, moderators and staff.",
    )
    def get(self, request: Request, slug: str) -> Response:
        return super().get(request, slug)

    @extend_schema(
        operation_id="rooms_bans_create",
        parameters=[SLUG],
        request=RestrictionSetSerializer,
        examples=[_SET_EXAMPLE],
        responses={201: RestrictionSerializer, 200: RestrictionSerializer, **errors(400, 401, 403, 404, 503)},
        description="Ban a user from the room: their sockets get `kicked` at once; `join`, history and "
        "members answer `forbidden`. Banning again replaces `until` and `reason` (200).",
    )
    def post(self, request: Request, slug: str) -> Response:
        return super().post(request, slug)


class RoomBanView(_RestrictionView):
    lift_service = staticmethod(services.room_ban_lift)

    @extend_schema(
        operation_id="rooms_bans_destroy",
        parameters=[SLUG, USERNAME],
        request=None,
        responses={204: None, **errors(401, 403, 404, 503)},
        description="Unban a user from the room (404 if not banned).",
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        return super().delete(request, slug, username)


# --- reports ----------------------------------------------------------------------------


class MessageReportView(APIView):
    @extend_schema(
        operation_id="messages_report",
        parameters=[MESSAGE_ID],
        request=ReportCreateSerializer,
        examples=[OpenApiExample("spam", value={"reason": "spam"}, request_only=True)],
        responses={201: ReportCreatedSerializer, 200: ReportCreatedSerializer, **errors(400, 401, 403, 404, 503)},
        description="Report a message to the moderators (201). Reporting it again while that report is "
        "open returns it (200). Not your own messages (400), not deleted ones (404).",
    )
    def post(self, request: Request, message_id: int) -> Response:
        message_id = _message_id(message_id)
        data = _valid(ReportCreateSerializer, request.data)
        report, created = services.message_report(message_id=message_id, reporter=request.user, reason=data["reason"])
        return Response({"id": report.pk}, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
