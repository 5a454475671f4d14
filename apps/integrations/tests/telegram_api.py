"""The Telegram Bot API as the real ``telegram.Bot`` sees it from a fake server on loopback: the token the tests
use, each method's path, and the answers' envelopes (``{"ok": true, "result": ...}`` or an error with its
``parameters``, such as ``retry_after``)."""

from __future__ import annotations

from typing import Any

from pytest_httpserver import HTTPServer

TOKEN = "123456:TEST-token"


def method(name: str) -> str:
    return f"/bot{TOKEN}/{name}"


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(code: int, description: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def calls(httpserver: HTTPServer) -> list[tuple[str, dict[str, str]]]:
    """Each request the fake got: the method's name and its form fields, in order."""
    return [(request.path.rsplit("/", 1)[-1], request.form.to_dict()) for request, _ in httpserver.log]
