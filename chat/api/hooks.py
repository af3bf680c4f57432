"""`POST /hooks/<secret>/`: an incoming webhook posts in its room (PROTOCOL.md 9).

The secret in the URL is the credential: no session, no token, no CSRF. The body is
Slack's: JSON `{"text": "…"}`, or a form with `payload=<that JSON>`. Errors have the API's
JSON shape (chat.api.errors).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response

from .. import protocol, services
from ..protocol import ChatError, message_payload
from .schema import MESSAGE, errors


def _text(request: Request) -> str:
    """The message text of a webhook call; raise bad_json or invalid."""
    data = request.data  # a JSON body that is malformed raises ParseError (400 bad_json) here
    if hasattr(data, "getlist"):  # a form (QueryDict): Slack's `payload=<json>`, or plain fields
        if "payload" in data:
            try:
                data = protocol.loads(data["payload"])
            except ValueError:
                raise ChatError(protocol.BAD_JSON, "`payload` is not valid JSON.") from None
        else:
            data = data.dict()
    if not isinstance(data, dict):
        raise ChatError(protocol.BAD_JSON, "The body must be a JSON object.")
    text = data.get("text")
    if not isinstance(text, str):
        raise ChatError(protocol.INVALID, "`text` (a string) is required.")
    return text


@extend_schema(
    operation_id="hooks_post",
    auth=[],
    request={"application/json": {"type": "object", "properties": {"text": {"type": "string"}},
                                  "required": ["text"]}},
    responses={201: MESSAGE, **errors(400, 403, 404, 429, 503)},
    description="Post `text` in the webhook's room as its bot, with the room's rules and CHAT_POST_RATE. "
    "Also a form with `payload=<json>`, as Slack takes. 404 for an unknown or revoked secret.",
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def hook_view(request: Request, secret: str) -> Response:
    """201 with MESSAGE; 404 for an unknown or revoked secret, 400 for a bad body, and the
    posting codes (403 `room_locked`, `muted`; 429 `rate_limited`)."""
    # The secret first: an unknown one is 404 whatever the body.
    webhook = services.webhook_of_secret(secret=secret)
    message = services.webhook_post(webhook=webhook, text=_text(request))
    return Response(message_payload(message), status=status.HTTP_201_CREATED)
