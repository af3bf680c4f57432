"""REST views of the live state: read positions and direct messages (PROTOCOL.md 4)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import rules, services
from . import serializers as s
from .schema import errors
from .views import SLUG, _access, _room, _valid


class ReadSerializer(serializers.Serializer):
    seq = s.StrictIntegerField(min_value=0, help_text="Everything up to this seq is read.")


class ReadPositionSerializer(serializers.Serializer):
    room = serializers.CharField()
    seq = serializers.IntegerField(help_text="The read position after the call (never lower than before).")


class DirectMessageSerializer(serializers.Serializer):
    username = s.StrictCharField(help_text="The other person.")


class RoomReadView(APIView):
    @extend_schema(
        operation_id="rooms_read",
        parameters=[SLUG],
        request=ReadSerializer,
        responses={200: ReadPositionSerializer, **errors(400, 401, 403, 404, 503)},
        description="Mark the room read up to `seq` (clamped to the room; a lower seq than the "
        "current position changes nothing). The caller's sockets get a `read` frame.",
    )
    def post(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_join)
        data = _valid(ReadSerializer, request.data)
        position = services.read_mark(room=access.room, user=request.user, seq=data["seq"])
        return Response({"room": access.room.slug, "seq": position})


class DirectMessagesView(APIView):
    @extend_schema(
        operation_id="dms_open",
        request=DirectMessageSerializer,
        responses={201: s.RoomSerializer, 200: s.RoomSerializer, **errors(400, 401, 404, 503)},
        description="The private two-person room of the caller and `username`: created once "
        "(201), then returned (200), whichever side asks first.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(DirectMessageSerializer, request.data)
        room, created = services.dm_open(user=request.user, username=data["username"])
        return Response(_room(request, room), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
