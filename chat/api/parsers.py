"""Request parsers (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])."""

from __future__ import annotations

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

from .. import protocol


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser, refusing JSON nested deeper than protocol.MAX_JSON_DEPTH.

    Malformed or too deeply nested JSON raises ParseError (400 ``bad_json``); the depth is
    checked before decoding, so no body reaches RecursionError.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            if not protocol.json_depth_ok(text):
                raise ParseError(f"JSON parse error - nested deeper than {protocol.MAX_JSON_DEPTH} levels.")
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise ParseError(f"JSON parse error - {exc}") from None
