"""The Content-Security-Policy header: on every surface, with a fresh nonce that the API docs' inline script
carries; widened only where a view asks (the Telegram Login Widget). The browser side is
``tests/e2e/test_content_security_policy.py``."""

from __future__ import annotations

import re

import pytest
from django.http import HttpResponse, HttpResponseServerError
from django.test import Client, RequestFactory
from django.test.utils import override_settings

from apps.accounts.factories import UserFactory
from apps.core.middleware import ContentSecurityPolicyMiddleware

pytestmark = pytest.mark.django_db

HEADER = "Content-Security-Policy"


def _directives(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in policy.split(";"))}


def _nonce(policy: str) -> str:
    (nonce,) = [s[len("'nonce-") : -1] for s in _directives(policy)["script-src"] if s.startswith("'nonce-")]
    return nonce


@pytest.mark.parametrize("path", ["/", "/plans/", "/library/", "/admin/login/", "/api/v1/", "/health/"])
def test_every_surface_has_the_policy(client: Client, path: str) -> None:
    response = client.get(path)

    directives = _directives(response[HEADER])
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"][0] == "'self'"
    assert len(directives["script-src"]) == 2  # 'self' and this response's nonce, never 'unsafe-inline'
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["frame-src"] == ["'none'"]
    assert directives["connect-src"] == ["'self'"]


def test_each_response_has_its_own_nonce(client: Client) -> None:
    first, second = (_nonce(client.get("/")[HEADER]) for _ in range(2))

    assert first != second
    assert len(first) >= 22


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_inline_scripts_carry_the_nonce(client: Client, path: str) -> None:
    client.force_login(UserFactory.create(staff=True))

    response = client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    nonce = _nonce(response[HEADER])
    assert all(f'nonce="{nonce}"' in attributes for attributes in inline), inline


def test_the_telegram_login_widget_is_allowed_on_the_links_page_only(client: Client) -> None:
    client.force_login(UserFactory.create())

    links = _directives(client.get("/account/links/")[HEADER])
    account = _directives(client.get("/account/")[HEADER])

    assert "https://telegram.org" in links["script-src"]
    assert links["frame-src"] == ["https://oauth.telegram.org"]
    assert "https://telegram.org" not in account["script-src"]
    assert account["frame-src"] == ["'none'"]


@override_settings(STATIC_URL="https://cdn.coinlink.example/static/")
def test_static_files_on_another_origin_are_trusted_like_our_own() -> None:
    middleware = ContentSecurityPolicyMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]

    directives = _directives(middleware.render("n0nce", {}))

    for name in ("script-src", "style-src", "img-src", "font-src"):
        assert "https://cdn.coinlink.example" in directives[name]
    assert directives["connect-src"] == ["'self'"]


def test_only_djangos_debug_error_page_goes_without() -> None:
    error = ContentSecurityPolicyMiddleware(lambda request: HttpResponseServerError())
    page = ContentSecurityPolicyMiddleware(lambda request: HttpResponse())

    with override_settings(DEBUG=True):
        assert HEADER not in error(RequestFactory().get("/"))
        assert HEADER in page(RequestFactory().get("/"))
    with override_settings(DEBUG=False):
        assert HEADER in error(RequestFactory().get("/"))
