"""API conventions shared by every app: errors come back as JSON with a clear message."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Wrap DRF's errors as ``{"error": {"status", "code", "message", "detail"}}``."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    code = getattr(exc, "default_code", "error")
    if isinstance(detail, dict) and "detail" in detail and len(detail) == 1:
        message = str(detail["detail"])
        code = getattr(detail["detail"], "code", code)
        detail = None
    elif isinstance(detail, list):
        message = "; ".join(str(d) for d in detail)
    else:
        message = "The request was not valid."
    response.data = {
        "error": {"status": response.status_code, "code": code, "message": message, "detail": detail}
    }
    return response
