"""JSON from outside, parsed with a bound on how deeply it nests.

Python's decoder recurses once per level: 50,000 ``[`` in a row end in a ``RecursionError`` (a 500 and a traceback),
and anything that later walks the parsed value recurses again. No body CoinLink accepts (the API's, Stripe's
events, Telegram's updates) nests more than a dozen levels, so the depth is measured first, without recursion,
and anything deeper than ``MAX_DEPTH`` is refused as a ``ValueError`` before it is decoded.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64

# One pass over the characters that matter, so the cost stays linear whatever the body (a regex for whole strings
# would rescan an unterminated one from each of its quotes): an escape with the character it escapes, a quote,
# a bracket.
_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)
_TEXT_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


class JsonTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        super().__init__(f"JSON nested more than {max_depth} levels deep")


def json_depth_check(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``JsonTooDeep`` when ``data`` opens more than ``max_depth`` arrays or objects inside each other.

    Exact for valid JSON; a malformed document may be miscounted, but the decoder refuses it anyway.
    """
    tokens = _TEXT_TOKENS.finditer(data) if isinstance(data, str) else _TOKENS.finditer(data)
    depth = 0
    in_string = False
    for match in tokens:
        token = match[0]
        if token in ('"', b'"'):
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue  # a bracket inside a string, or an escape
        elif token in ("[", "{", b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise JsonTooDeep(max_depth)
        else:
            depth -= 1


def json_loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` for untrusted input: ``ValueError`` (``JsonTooDeep`` among them) for anything it refuses."""
    json_depth_check(data, max_depth=max_depth)
    return json.loads(data, **kwargs)
