"""The OpenAPI schema's answer to "what can go wrong": every operation declares the errors it can really give, each
with the body ``apps.core.api.exception_handler`` writes.

Views declare the errors that are theirs (a bad filter, a missing piece) with a description; this schema class
adds the ones every view shares because of the API's configuration, so they cannot be forgotten on a new view:
refused credentials (401 or 403, as DRF picks), permission refusals, pages past the end, unsupported bodies and
throttling. It also gives every 4xx the error body's schema, and documents that an empty optional query
parameter counts as absent. The schemathesis run in ``tests/test_api_schemathesis.py`` holds the schema to what
the API answers.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from apps.core.api import TokenAuthentication


class ApiErrorBodySerializer(serializers.Serializer[dict[str, Any]]):
    status = serializers.IntegerField(help_text="The HTTP status code, repeated")
    code = serializers.CharField(help_text="A stable, machine-readable code, e.g. not_found, throttled")
    message = serializers.CharField(help_text="What went wrong, for people")
    detail = serializers.JSONField(
        allow_null=True,
        help_text="Per-field messages of a validation error ({field: [message, ...]}); null otherwise",
    )


class ApiErrorSerializer(serializers.Serializer[dict[str, Any]]):
    error = ApiErrorBodySerializer()


RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before the next request will be accepted",
        "schema": {"type": "integer", "minimum": 0},
    }
}


EMPTY_MEANS_ABSENT = "An empty value is the same as leaving the parameter out."


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        # Optional query parameters are read by DRF serializers (filters) and the paginator from the QueryDict,
        # which take ``?symbol=`` as no symbol at all, the way an HTML form sends an unfilled field. Say so,
        # rather than let the schema promise that an empty value is refused.
        operation["parameters"] = [
            {
                **parameter,
                "allowEmptyValue": True,
                "description": "\n\n".join(filter(None, [parameter.get("description"), EMPTY_MEANS_ABSENT])),
            }
            if parameter["in"] == "query" and not parameter.get("required")
            else parameter
            for parameter in operation.get("parameters", [])
        ]
        if not operation["parameters"]:
            del operation["parameters"]
        return operation

    # Overridden here rather than in get_response_serializers, which @extend_schema(responses=...) replaces
    # wholesale: this is where the view's own declarations and the shared errors meet.
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code, description in self._shared_errors().items():
            responses.setdefault(code, {"description": description})
        for code, response in responses.items():
            if code.startswith("4") and "content" not in response:
                error = OpenApiResponse(ApiErrorSerializer, description=response.get("description", ""))
                responses[code] = {
                    **response,
                    **self._get_response_for_code(error, code, direction=direction),
                }
        if "429" in responses:
            responses["429"].setdefault("headers", {}).update(RETRY_AFTER_HEADER)
        return dict(sorted(responses.items()))

    def _shared_errors(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.method in ("PUT", "PATCH", "POST"):
            errors["400"] = "The body is not valid JSON (or nests too deeply), or a field is not valid."
            errors["415"] = "The body's media type is not one this operation accepts."
        if self._is_list_view() and self._get_paginator() is not None:
            errors["404"] = "No such page: past the last one, or not a positive whole number."
        authenticators = self.view.get_authenticators()
        if authenticators:
            # DRF answers a failed or missing authentication with 401 only when the first authenticator names a
            # WWW-Authenticate challenge (token does, session does not); otherwise with 403.
            challenge = authenticators[0].authenticate_header(self.view.request)
            errors["401" if challenge else "403"] = (
                "The credentials sent were not accepted: an unknown token, or a session without its CSRF token "
                "on a write."
            )
        if any(not isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            errors.setdefault("403", "The caller may not use this operation.")
        if self.view.get_throttles() or any(isinstance(a, TokenAuthentication) for a in authenticators):
            errors["429"] = (
                "Too many requests from this caller, or too many failed authentication attempts from this "
                "address."
            )
        return errors
