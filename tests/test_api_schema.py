"""The API's front door: the version root, the OpenAPI document, and the two documentation pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

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
