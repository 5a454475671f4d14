"""The API's front door: the version root, the OpenAPI document, and the two documentation pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.test import Client
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

pytestmark = pytest.mark.django_db

STATIC_URL = "/static/"


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> Iterator[None]:
    # Throttle counters live in the cache; each test starts with none spent.
    cache.clear()
    yield
    cache.clear()


def _schema(client: Client) -> dict[str, object]:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    return json.loads(response.content)


def _references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_api_root_links_every_endpoint(client: Client) -> None:
    response = client.get("/api/v1/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert response.json() == {
        "me": "http://testserver/api/v1/me/",
        "insights": "http://testserver/api/v1/insights/",
        "published-content": "http://testserver/api/v1/published-content/",
        "exclusive": "http://testserver/api/v1/exclusive/",
        "experiments": "http://testserver/api/v1/experiments/",
        "strategy-changes": "http://testserver/api/v1/strategy-changes/",
        "kpis": "http://testserver/api/v1/kpis/",
    }


def test_schema_is_a_valid_openapi_3_document(client: Client) -> None:
    schema = _schema(client)

    validate(schema, cls=OpenAPIV30SpecValidator)
    assert schema["openapi"] == "3.0.3"


def test_schema_documents_every_endpoint_and_method(client: Client) -> None:
    paths = _schema(client)["paths"]

    assert isinstance(paths, dict)
    assert {path: sorted(operations) for path, operations in paths.items()} == {
        "/api/v1/insights/": ["get"],
        "/api/v1/insights/{id}/": ["get"],
        "/api/v1/published-content/": ["get"],
        "/api/v1/published-content/{id}/": ["get"],
        "/api/v1/me/": ["get", "patch"],
        "/api/v1/exclusive/": ["get"],
        "/api/v1/exclusive/{slug}/": ["get"],
        "/api/v1/experiments/": ["get"],
        "/api/v1/experiments/{slug}/": ["get"],
        "/api/v1/strategy-changes/": ["get"],
        "/api/v1/strategy-changes/{id}/": ["get"],
        "/api/v1/kpis/": ["get"],
    }


def test_schema_documents_the_list_filters(client: Client) -> None:
    paths = _schema(client)["paths"]
    assert isinstance(paths, dict)

    def query_parameters(path: str) -> list[str]:
        return sorted(p["name"] for p in paths[path]["get"]["parameters"] if p["in"] == "query")

    assert query_parameters("/api/v1/insights/") == ["min_confidence", "page", "symbol", "type"]
    assert query_parameters("/api/v1/published-content/") == ["page", "platform"]


def test_swagger_ui_is_served_from_local_static_files(client: Client) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/schema/" in html
    assert "http://" not in html
    assert "https://" not in html
    references = _references(html)
    assert f"{STATIC_URL}drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in references
    for reference in references:
        assert reference.startswith(STATIC_URL), reference
        assert finders.find(reference.removeprefix(STATIC_URL)), f"{reference} is not a static file we ship"


def test_redoc_is_served_from_local_static_files(client: Client) -> None:
    response = client.get("/api/redoc/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<redoc spec-url="/api/schema/">' in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == [f"{STATIC_URL}drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"]
    assert finders.find(scripts[0].removeprefix(STATIC_URL))
    # The stock page's web-font links are overridden away: nothing is fetched from another host.
    remote = [reference for reference in _references(html) if not reference.startswith(STATIC_URL)]
    assert remote == []
    assert "http://" not in html
    assert "https://" not in html


def _operations(schema: dict[str, object]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    paths = schema["paths"]
    assert isinstance(paths, dict)
    for path, operations in paths.items():
        for method, operation in operations.items():
            yield path, method, operation


ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}


def test_schema_declares_the_errors_every_operation_can_give(client: Client) -> None:
    schema = _schema(client)

    declared = {
        f"{method.upper()} {path}": sorted(op["responses"]) for path, method, op in _operations(schema)
    }

    # 403: refused credentials (a wrong token reaches every operation) or permissions; 429: the rate limits and
    # the failed-token lockout; 404 on the lists: a page that does not exist; 415: a body that is not JSON.
    assert declared == {
        "GET /api/v1/insights/": ["200", "400", "403", "404", "429"],
        "GET /api/v1/insights/{id}/": ["200", "403", "404", "429"],
        "GET /api/v1/published-content/": ["200", "400", "403", "404", "429"],
        "GET /api/v1/published-content/{id}/": ["200", "403", "404", "429"],
        "GET /api/v1/me/": ["200", "403", "429"],
        "PATCH /api/v1/me/": ["200", "400", "403", "415", "429"],
        "GET /api/v1/exclusive/": ["200", "403", "404", "429"],
        "GET /api/v1/exclusive/{slug}/": ["200", "403", "404", "429"],
        "GET /api/v1/experiments/": ["200", "400", "403", "404", "429"],
        "GET /api/v1/experiments/{slug}/": ["200", "403", "404", "429"],
        "GET /api/v1/strategy-changes/": ["200", "400", "403", "404", "429"],
        "GET /api/v1/strategy-changes/{id}/": ["200", "403", "404", "429"],
        "GET /api/v1/kpis/": ["200", "400", "403", "429"],
    }
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        assert isinstance(responses, dict)
        for status, response in responses.items():
            if status.startswith("4"):
                assert response["content"] == ERROR_BODY, (method, path, status)
                assert response["description"], (method, path, status)
        assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 0}


def test_schema_describes_the_error_format(client: Client) -> None:
    components: Any = _schema(client)["components"]
    schemas = components["schemas"]

    assert schemas["ApiError"] == {
        "type": "object",
        "properties": {"error": {"$ref": "#/components/schemas/ApiErrorBody"}},
        "required": ["error"],
    }
    assert schemas["ApiErrorBody"]["required"] == ["code", "detail", "message", "status"]
    assert {name: prop.get("type") for name, prop in schemas["ApiErrorBody"]["properties"].items()} == {
        "status": "integer",
        "code": "string",
        "message": "string",
        "detail": None,  # any JSON: null, or the per-field messages of a validation error
    }


def test_schema_says_an_empty_query_parameter_counts_as_absent(client: Client) -> None:
    schema = _schema(client)

    query = {
        (f"{method.upper()} {path}", parameter["name"]): parameter
        for path, method, operation in _operations(schema)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    }

    assert sorted(query) == [
        ("GET /api/v1/exclusive/", "page"),
        ("GET /api/v1/experiments/", "page"),
        ("GET /api/v1/experiments/", "status"),
        ("GET /api/v1/experiments/", "subject"),
        ("GET /api/v1/insights/", "min_confidence"),
        ("GET /api/v1/insights/", "page"),
        ("GET /api/v1/insights/", "symbol"),
        ("GET /api/v1/insights/", "type"),
        ("GET /api/v1/kpis/", "period"),
        ("GET /api/v1/published-content/", "page"),
        ("GET /api/v1/published-content/", "platform"),
        ("GET /api/v1/strategy-changes/", "agent_name"),
        ("GET /api/v1/strategy-changes/", "origin"),
        ("GET /api/v1/strategy-changes/", "page"),
        ("GET /api/v1/strategy-changes/", "status"),
    ]
    for key, parameter in query.items():
        assert parameter["allowEmptyValue"] is True, key
        assert parameter["description"].endswith(
            "An empty value is the same as leaving the parameter out."
        ), key
    assert query[("GET /api/v1/insights/", "page")]["schema"] == {"type": "integer", "minimum": 1}
