"""API conventions shared by every app: errors come back as JSON with a clear message, JSON bodies are parsed
with a bound on nesting, and failed token authentication is throttled per address."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import authentication, exceptions, pagination, parsers, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import json as drf_json

from apps.core.attempts import FailureBudget, FailureCounter, client_address
from apps.core.jsonsafe import json_loads


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Wrap DRF's errors as ``{"error": {"status", "code", "message", "detail"}}``."""
    # rest_framework.views loads the authentication and parser classes below while it is being imported.
    from rest_framework.views import exception_handler as drf_exception_handler

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


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser on the depth-limited loader: a body nested too deeply is a 400, not a RecursionError."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        # DRF's own check of the request's charset (newer than the type stubs).
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            text = stream.read().decode(encoding)
            return json_loads(text, parse_constant=drf_json.strict_constant if self.strict else None)
        except ValueError as exc:  # UnicodeDecodeError and JsonTooDeep included
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc


_failed_tokens = FailureCounter("api-token")


@functools.cache
def _token_failure_budget(rate: str) -> FailureBudget:
    return FailureBudget.parse(rate, setting="API_AUTH_FAILURE_RATE")


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, throttled where DRF's throttles cannot reach: they run after authentication,
    so a wrong token was answered 401 at any rate. Failed tokens are counted per client address; once
    ``API_AUTH_FAILURE_RATE`` is used up, every token from that address is answered 429 (right ones too, or a
    guesser would still learn which one works) until the period is over. Requests without a token are not
    affected."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        address = client_address(request)  # type: ignore[arg-type]
        if wait := _failed_tokens.blocked_for(address):
            raise exceptions.Throttled(
                wait=math.ceil(wait), detail="Too many failed authentication attempts from here."
            )
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            _failed_tokens.record(address, _token_failure_budget(settings.API_AUTH_FAILURE_RATE))
            raise


class ApiDocsPermission(permissions.BasePermission):
    """The schema and its renderings: anyone while ``API_DOCS_PUBLIC`` (the development default), staff otherwise."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(settings.API_DOCS_PUBLIC or (request.user and request.user.is_staff))


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's page numbers held to what the schema says: ``page`` is a whole number from 1 (an empty ``page=`` is
    the first page, like any empty optional parameter). DRF would also take the undocumented ``page=last``."""

    last_page_strings = ()

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
