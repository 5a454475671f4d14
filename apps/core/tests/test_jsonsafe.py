"""The depth-limited JSON loader every untrusted body goes through."""

from __future__ import annotations

import time

import pytest

from apps.core.jsonsafe import MAX_DEPTH, JsonTooDeep, json_depth_check, json_loads


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_the_bound_is_exact(as_bytes: bool) -> None:
    at_bound = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    over = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)

    assert json_loads(at_bound.encode() if as_bytes else at_bound) is not None
    with pytest.raises(JsonTooDeep, match=f"more than {MAX_DEPTH} levels"):
        json_loads(over.encode() if as_bytes else over)


def test_fifty_thousand_brackets_are_refused_not_a_recursion_error() -> None:
    with pytest.raises(JsonTooDeep):
        json_loads(b"[" * 50_000)


@pytest.mark.parametrize(
    "document",
    [
        '["[[[[", "{{{{"]',
        '{"k\\"[[[": "\\\\", "v": ["\\"]]]]"]}',
        '"\\u005b[[["',
    ],
    ids=["brackets in strings", "escaped quotes", "unicode escape"],
)
def test_brackets_inside_strings_do_not_count(document: str) -> None:
    json_depth_check(document, max_depth=2)
    assert json_loads(document, max_depth=2) is not None


def test_a_too_deep_document_is_a_value_error() -> None:
    # Callers that already refuse malformed JSON (ValueError) refuse this too.
    with pytest.raises(ValueError, match="levels deep"):
        json_loads("[[[1]]]", max_depth=2)


def test_the_check_stays_linear_on_an_unterminated_string() -> None:
    # A regex over whole strings would restart at each escaped quote: quadratic on this body.
    body = b'"' + b'\\"' * 1_000_000

    started = time.perf_counter()
    json_depth_check(body)
    elapsed = time.perf_counter() - started

    assert elapsed < 5
    with pytest.raises(ValueError, match="Unterminated string"):
        json_loads(body)
