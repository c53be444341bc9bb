"""The API's JSON parser: DRF's, with the nesting depth bounded BEFORE parsing.

Python's json module recurses once per level: a body of 1,000 nested brackets raised
RecursionError, answered as an HTML 500. The depth is counted on the raw bytes first (brackets
outside strings), and a body nested deeper than API_MAX_JSON_DEPTH is refused with the API's
ordinary 400 `malformed_request`. No checkout body needs more than a handful of levels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json

# A JSON string (escapes included) or one bracket: brackets inside strings do not nest.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_OPENERS = frozenset(b"[{")


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """True when `body` opens more than `limit` arrays/objects inside one another. Linear in
    the body; a body with no more openers than `limit` is not scanned at all."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(body):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class DepthLimitedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        body = stream.read() if stream is not None else b""
        limit = settings.API_MAX_JSON_DEPTH
        if json_nesting_exceeds(body, limit):
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels.")
        try:
            text = body.decode(get_encoding(parser_context or {}))
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from exc
