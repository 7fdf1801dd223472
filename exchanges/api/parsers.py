"""JSON bodies with numbers read as ``Decimal`` (never ``float``): ``{"quantity": 1000.5}`` stays exact."""

from __future__ import annotations

import json
from decimal import Decimal

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class DecimalJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            raw = stream.read() if stream is not None else b""
            if not raw:
                return {}
            return json.loads(raw.decode(encoding), parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError(f"malformed JSON body: {exc}") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")
