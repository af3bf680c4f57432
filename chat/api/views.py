"""REST API v1 (PROTOCOL.md 4). Each view validates its input, calls one service or
selector, and answers with serializers.py's shapes or protocol.message_payload().

Refusals are ChatErrors raised by rules and services; errors.exception_handler turns them
into responses, so views never build an error themselves.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import protocol, realtime, rules, selectors, services
from ..commands import CommandReply
from ..protocol import ChatError, message_payload
from . import serializers as s
from .schema import COMMON, HISTORY_PAGE, MAX_ID, MESSAGE, MESSAGE_OR_COMMAND, RETRY_AFTER, THREAD_PAGE, errors
from .throttling import LoginRateThrottle

SLUG = OpenApiParameter(
    "slug",
    str,
    OpenApiParameter.PATH,
    pattern=services.SLUG_RE.pattern,
    description="The room's slug.",
    examples=[OpenApiExample("general", value="general")],
)
USERNAME = OpenApiParameter("username", str, OpenApiParameter.PATH, description="The member's username.")
MESSAGE_ID = OpenApiParameter(
    "message_id",
    {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
    OpenApiParameter.PATH,
    description="The message's id.",
)


def _access(request: Request, slug: str, check=rules.check_visible) -> rules.RoomAccess:
    """The caller's access to the room ``slug`` after ``check``; not_found for a bad slug."""
    if not services.SLUG_RE.fullmatch(slug):
        raise ChatError(protocol.NOT_FOUND, "No such room.")
    return check(rules.room_access(user=request.user, slug=slug, door=rules.Door.API))


def _with_rights(request: Request, rooms) -> list:
    """``rooms`` with ``can_moderate`` set from the caller's access to each (one query)."""
    rooms = list(rooms)
    keys = {(room.pk, request.user, rules.Door.API) for room in rooms}
    accesses = rules.room_access_many(keys)
    for room in rooms:
        access = accesses.get((room.pk, request.user.pk, rules.Door.API))
        room.can_moderate = access is not None and access.can_moderate
    return rooms


def _room(request: Request, room, *, detail: bool = False) -> dict:
    """The room as the caller sees it (role, can_moderate, unread; ``online`` for the detail)."""
    (room,) = _with_rights(request, [selectors.rooms_for_user(user=request.user).get(pk=room.pk)])
    if not detail:
        return s.RoomSerializer(room).data
    room.online = realtime.room_online(room_id=room.pk)
    return s.RoomDetailSerializer(room).data


def _user(username: str):
    if not protocol.text_storable(username):  # a NUL from the path would break the query
        raise ChatError(protocol.NOT_FOUND, "No such user.")
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ChatError(protocol.NOT_FOUND, "No such user.")
    return user


def _message_id(message_id: int) -> int:
    if not 1 <= message_id <= MAX_ID:
        raise ChatError(protocol.NOT_FOUND, "No such message.")
    return message_id


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- tokens ---------------------------------------------------------------------------


class TokenView(APIView):
    """POST: a token for username and password. DELETE: revoke the caller's token."""

    def get_authenticators(self):
        # The credentials are in the body; a session cookie must not demand a CSRF token here.
        if getattr(self, "request", None) is not None and self.request.method == "POST":
            return []
        return super().get_authenticators()

    def get_permissions(self):
        if self.request.method == "POST":
            return [AllowAny()]
        return super().get_permissions()

    def get_throttles(self):
        if self.request.method == "POST":
            return [LoginRateThrottle()]
        return super().get_throttles()

    @extend_schema(
        operation_id="auth_token_obtain",
        description="A token for `username` and `password` (the same token until revoked).",
        auth=[],
        request=s.TokenObtainSerializer,
        responses={200: s.TokenSerializer, **errors(400, 429, 503)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.TokenObtainSerializer, request.data)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            raise ChatError(protocol.INVALID, "Unable to log in with the given credentials.")
        return Response({"token": services.token_obtain(user=user)})

    @extend_schema(
        operation_id="auth_token_revoke",
        description="Revoke the caller's token; sockets opened with it close with 4401.",
        request=None,
        responses={204: None, **errors(401, 403, 503)},
    )
    def delete(self, request: Request) -> Response:
        services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConnectTokenView(APIView):
    """POST: a single-use connect token for the caller's socket (PROTOCOL.md 9)."""

    @extend_schema(
        operation_id="auth_connect_token",
        description="A token that opens one WebSocket as the caller, `/ws/chat/?token=<token>`, "
        "with no cookie or Origin, within `expires_in` seconds (CHAT_CONNECT_TOKEN_TTL). A used, "
        "expired or forged one gets `unauthenticated` and close 4401.",
        request=None,
        responses={200: s.ConnectTokenSerializer, **errors(401, 403, 429, 503)},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        token = services.connect_token_issue(user=request.user)
        return Response({"token": token, "expires_in": settings.CHAT_CONNECT_TOKEN_TTL})


# --- rooms ----------------------------------------------------------------------------


class RoomListView(APIView):
    @extend_schema(
        operation_id="rooms_list",
        responses={200: s.RoomSerializer(many=True), **errors(401, 429, 503)},
        parameters=[RETRY_AFTER],
    )
    def get(self, request: Request) -> Response:
        rooms = _with_rights(request, selectors.rooms_for_user(user=request.user).order_by("slug"))
        return Response(s.RoomSerializer(rooms, many=True).data)

    @extend_schema(
        operation_id="rooms_create",
        request=s.RoomCreateSerializer,
        examples=[OpenApiExample("room", value={"slug": "random", "name": "Random", "private": False}, request_only=True)],
        responses={201: s.RoomSerializer, **errors(400, 401, 403, 503)},
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.RoomCreateSerializer, request.data)
        room = services.room_create(
            owner=request.user, slug=data["slug"], name=data.get("name", "").strip(), private=data["private"]
        )
        return Response(_room(request, room), status=status.HTTP_201_CREATED)


class RoomDetailView(APIView):
    @extend_schema(
        operation_id="rooms_retrieve",
        parameters=[SLUG, RETRY_AFTER],
        responses={200: s.RoomDetailSerializer, **errors(401, 404, 429, 503)},
    )
    def get(self, request: Request, slug: str) -> Response:
        access = _access(request, slug)
        return Response(_room(request, access.room, detail=True))

    @extend_schema(
        operation_id="rooms_update",
        parameters=[SLUG],
        request=s.RoomUpdateSerializer,
        examples=[OpenApiExample("rename", value={"name": "General chat", "locked": False}, request_only=True)],
        responses={200: s.RoomDetailSerializer, **errors(400, 401, 403, 404, 503)},
    )
    def patch(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_moderate)
        data = _valid(s.RoomUpdateSerializer, request.data)
        room = services.room_update(
            access=access, name=data.get("name"), locked=data.get("locked"), topic=data.get("topic"), actor=request.user
        )
        return Response(_room(request, room, detail=True))


# --- members --------------------------------------------------------------------------


class RoomMembersView(APIView):
    @extend_schema(
        operation_id="rooms_members_list",
        parameters=[SLUG, RETRY_AFTER],
        responses={200: s.MemberSerializer(many=True), **errors(401, 403, 404, 429, 503)},
    )
    def get(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_join)
        return Response(s.MemberSerializer(selectors.room_members(room=access.room), many=True).data)

    @extend_schema(
        operation_id="rooms_members_add",
        parameters=[SLUG],
        request=s.MemberAddSerializer,
        examples=[OpenApiExample("member", value={"username": "bob", "role": "member"}, request_only=True)],
        responses={
            201: s.MemberSerializer,
            200: s.MemberSerializer,
            **errors(400, 401, 403, 404, 503),
        },
        description="Add a member, or change a member's role (200). Owners and moderators; "
        "only the owner grants or removes `moderator`.",
    )
    def post(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_moderate)
        data = _valid(s.MemberAddSerializer, request.data)
        membership, created = services.member_set(
            access=access, actor=request.user, user=_user(data["username"]), role=data["role"]
        )
        return Response(
            s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class RoomMemberView(APIView):
    @extend_schema(
        operation_id="rooms_members_remove",
        parameters=[SLUG, USERNAME],
        request=None,
        responses={204: None, **errors(401, 403, 404, 503)},
        description="Remove a member (owner, moderators) or leave the room (yourself). "
        "A private room's removed member is sent `kicked` on every socket.",
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        access = _access(request, slug)
        services.member_remove(access=access, actor=request.user, user=_user(username))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- messages -------------------------------------------------------------------------


class RoomMessagesView(APIView):
    @extend_schema(
        operation_id="rooms_messages_list",
        parameters=[SLUG, s.HistoryQuerySerializer, RETRY_AFTER],
        responses={200: HISTORY_PAGE, **errors(*COMMON)},
        description="History, keyset-paginated on seq; results in ascending seq (docs/protocol.md, REST API).",
    )
    def get(self, request: Request, slug: str) -> Response:
        access = _access(request, slug, rules.check_join)
        # A plain dict: DRF would read an empty `?limit=` of a QueryDict as absent.
        params = _valid(s.HistoryQuerySerializer, request.query_params.dict())
        page = selectors.message_history(room=access.room, **params)
        return Response(
            {
                "results": [message_payload(m) for m in page.messages],
                "has_more_before": page.has_more_before,
                "has_more_after": page.has_more_after,
            }
        )

    @extend_schema(
        operation_id="rooms_messages_create",
        parameters=[SLUG, RETRY_AFTER],
        request=s.MessagePostSerializer,
        examples=[
            OpenApiExample(
                "message", value={"body": "hi", "client_id": "9b2f6c1e-2f1c-4f7e-9a51-0d9c2b7e4a10"}, request_only=True
            ),
            OpenApiExample(
                "reply", value={"body": "agreed", "client_id": "0c3e…", "reply_to": 120}, request_only=True
            ),
        ],
        responses={201: MESSAGE, 200: MESSAGE_OR_COMMAND, **errors(*COMMON)},
        description="Post, as the WebSocket `send`: 201 with the new message, or 200 with the "
        "original for a repeated `client_id`. Posting in a public room joins it. A slash command "
        "that stores nothing (`/help`, `/topic <text>`) answers 200 with the socket's `command` "
        "frame: `{\"type\": \"command\", \"room\": …, \"text\": …, \"client_id\": …}`.",
    )
    def post(self, request: Request, slug: str) -> Response:
        access = _access(request, slug)
        data = _valid(s.MessagePostSerializer, request.data)
        services.room_join(access=access, user=request.user, implicit=True)
        result = services.message_post(
            room=access.room, author=request.user, body=data["body"], client_id=data["client_id"],
            reply_to=data.get("reply_to"), attachments=data["attachments"], interactive=True,
        )
        if isinstance(result, CommandReply):  # /help, /topic: nothing stored; the socket's `command` frame
            return Response(protocol.command_frame(room=result.room, text=result.text, client_id=result.client_id))
        message, created = result
        return Response(message_payload(message), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class MessageView(APIView):
    @extend_schema(
        operation_id="messages_update",
        parameters=[MESSAGE_ID],
        request=s.MessageEditSerializer,
        examples=[OpenApiExample("edit", value={"body": "fixed"}, request_only=True)],
        responses={200: MESSAGE, **errors(400, 401, 403, 404, 503)},
        description="The author edits a message; broadcasts `message.edited`.",
    )
    def patch(self, request: Request, message_id: int) -> Response:
        message_id = _message_id(message_id)
        data = _valid(s.MessageEditSerializer, request.data)
        message = services.message_edit(message_id=message_id, user=request.user, body=data["body"])
        return Response(message_payload(message))

    @extend_schema(
        operation_id="messages_destroy",
        parameters=[MESSAGE_ID],
        request=None,
        responses={204: None, **errors(401, 403, 404, 503)},
        description="The author, a room moderator or staff deletes a message; broadcasts `message.deleted`.",
    )
    def delete(self, request: Request, message_id: int) -> Response:
        services.message_delete(message_id=_message_id(message_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- threads and reactions (PROTOCOL.md 6) --------------------------------------------

EMOJI = OpenApiParameter("emoji", str, OpenApiParameter.PATH, description="The emoji, URL-encoded.")


class MessageThreadView(APIView):
    @extend_schema(
        operation_id="messages_thread",
        parameters=[MESSAGE_ID, s.ThreadQuerySerializer, RETRY_AFTER],
        responses={200: THREAD_PAGE, **errors(*COMMON)},
        description="The thread of a message: its root (the message itself, or the root it replies to) "
        "and its replies in ascending seq, deleted ones included as deleted; 404 where the room is "
        "not visible.",
    )
    def get(self, request: Request, message_id: int) -> Response:
        params = _valid(s.ThreadQuerySerializer, request.query_params.dict())
        message = selectors.message_with_room(message_id=_message_id(message_id))
        access = rules.room_access(user=request.user, room=message.room, door=rules.Door.API) if message else None
        if message is None or access is None or not access.visible:
            raise ChatError(protocol.NOT_FOUND, "No such message.")
        rules.check_join(access)
        root = message.reply_to if message.reply_to_id is not None else message
        root.room = access.room
        page = selectors.message_thread(root=root, **params)
        return Response(
            {
                "root": message_payload(page.root),
                "results": [message_payload(m) for m in page.replies],
                "has_more_after": page.has_more_after,
            }
        )


class MessageReactionsView(APIView):
    @extend_schema(
        operation_id="messages_reactions_add",
        parameters=[MESSAGE_ID],
        request=s.ReactionSerializer,
        examples=[OpenApiExample("react", value={"emoji": "👍"}, request_only=True)],
        responses={200: MESSAGE, **errors(400, 401, 403, 404, 503)},
        description="Add the caller's reaction; broadcasts `message.reacted` unless they had it already. "
        "Not counted against the posting rate.",
    )
    def post(self, request: Request, message_id: int) -> Response:
        message_id = _message_id(message_id)
        data = _valid(s.ReactionSerializer, request.data)
        message = services.reaction_add(message_id=message_id, user=request.user, emoji=data["emoji"])
        return Response(message_payload(message))


class MessageReactionView(APIView):
    @extend_schema(
        operation_id="messages_reactions_remove",
        parameters=[MESSAGE_ID, EMOJI],
        request=None,
        responses={200: MESSAGE, **errors(400, 401, 403, 404, 503)},
        description="Remove the caller's reaction; broadcasts `message.reacted` if they had it.",
    )
    def delete(self, request: Request, message_id: int, emoji: str) -> Response:
        message = services.reaction_remove(message_id=_message_id(message_id), user=request.user, emoji=emoji)
        return Response(message_payload(message))
