"""Notices over REST (PROTOCOL.md 9): publish a key's latest value, read the current ones.

Each view calls one service of chat.services.notices; refusals come from chat.rules and
chat.protocol (the key and the data's size).
"""

from __future__ import annotations

import json

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import protocol, rules, services
from .schema import errors
from .serializers import StrictCharField
from .views import SLUG, _access, _valid


class NoticePublishSerializer(serializers.Serializer):
    key = StrictCharField(
        allow_blank=True, trim_whitespace=False,  # judged by protocol.validate_notice_key
        help_text=f"1-{protocol.NOTICE_KEY_MAX} printable characters (no control characters).",
    )
    data = serializers.JSONField(
        allow_null=True, help_text=f"Any JSON value, at most {protocol.NOTICE_DATA_MAX} bytes serialized."
    )


class NoticeSerializer(serializers.Serializer):
    room = serializers.CharField()
    key = serializers.CharField()
    data = serializers.JSONField(allow_null=True)
    at = serializers.DateTimeField(help_text="When the server took this value.")


class NoticeListSerializer(serializers.Serializer):
    results = NoticeSerializer(many=True)


def _shape(notice: protocol.Notice) -> dict:
    """The notice as REST shows it: its socket frame without `type`."""
    frame = json.loads(notice.text)
    del frame["type"]
    return frame


class RoomNoticesView(APIView):
    @extend_schema(
        operation_id="rooms_notices_list",
        parameters=[SLUG],
        responses={200: NoticeListSerializer, **errors(401, 404, 503)},
        description="The room's latest value of every notice key, oldest update first.",
    )
    def get(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_join)
        return Response({"results": [_shape(n) for n in services.notices_current(access=access)]})

    @extend_schema(
        operation_id="rooms_notices_publish",
        parameters=[SLUG],
        request=NoticePublishSerializer,
        responses={200: NoticeSerializer, **errors(400, 401, 403, 404, 413, 503)},
        examples=[OpenApiExample("price", value={"key": "ACME", "data": {"bid": 101.5, "ask": 101.7}}, request_only=True)],
        description="Publish the latest value of `key` (owner, moderators, the room's bots, staff). Every "
        "socket that joined the room gets a `notice` frame, conflated: at most CHAT_NOTICE_RATE per key "
        "and second, the newest always. Not a message: no seq, no history. 400 `invalid` for a bad key "
        "or a new key beyond CHAT_NOTICE_MAX_KEYS; 413 `too_large` for data over 4 KiB of JSON.",
    )
    def post(self, request: Request, slug: str) -> Response:
        access = _access(request, slug)
        data = _valid(NoticePublishSerializer, request.data)
        notice = services.notice_publish(access=access, user=request.user, key=data["key"], data=data["data"])
        return Response(_shape(notice))
