"""The API's JSON parser: DRF's, with the nesting depth bounded BEFORE parsing.

Python's json module recurses once per level: a body of 1,000 nested brackets raised
RecursionError, answered as an HTML 500. The depth is counted on the raw bytes first (brackets
outside strings), and a body nested deeper than API_MAX_JSON_DEPTH is refused with the API's
ordinary 400 `malformed_request`. No checkout body needs more than a handful of levels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json

# A JSON string (escapes included): brackets inside strings do not nest.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """True when `body` opens more than `limit` arrays/objects inside one another.

    Linear in the body, and mostly in C: strings are cut out and everything but brackets
    dropped before Python walks what is left. A body with no more openers than `limit` is
    not scanned at all (a checkout has a handful).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_A_BRACKET)
    return max(accumulate(_STEP[byte] for byte in brackets), default=0) > limit


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
