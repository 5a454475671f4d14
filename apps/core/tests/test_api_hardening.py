"""The API's defences shared by every endpoint: JSON nested too deeply, and guessing tokens."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from rest_framework.authtoken.models import Token

from apps.accounts.factories import UserFactory
from apps.accounts.models import User

pytestmark = pytest.mark.django_db

ME_URL = "/api/v1/me/"
WRONG_TOKEN = "Token 0000000000000000000000000000000000000000"


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- nesting ----------------------------------------------------------------------------------------------------


def test_a_body_nested_too_deeply_is_a_400_in_the_api_format_and_changes_nothing(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    user = UserFactory.create(display_name="Ada")
    client.force_login(user)

    response = client.patch(ME_URL, "[" * 50_000 + "]" * 50_000, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "status": 400,
            "code": "parse_error",
            "message": "JSON parse error - JSON nested more than 64 levels deep",
            "detail": None,
        }
    }
    user.refresh_from_db()
    assert user.display_name == "Ada"
    assert _no_tracebacks(caplog) == []


def test_nesting_within_the_bound_reaches_the_serializer(client: Client) -> None:
    user = UserFactory.create(display_name="Ada")
    client.force_login(user)
    body = '{"display_name": "Ada II", "extra": ' + "[" * 63 + "]" * 63 + "}"

    response = client.patch(ME_URL, body, content_type="application/json")

    # Parsed, then refused by the serializer for the unknown field: the depth bound did not interfere.
    assert response.status_code == 400
    assert response.json()["error"]["detail"] == {"extra": ["This field cannot be changed."]}
    assert User.objects.get(pk=user.pk).display_name == "Ada"


# --- failed token authentication ------------------------------------------------------------------------------


def test_failed_tokens_are_throttled_per_address(client: Client, settings: SettingsWrapper) -> None:
    settings.API_AUTH_FAILURE_RATE = "3/min"
    user = UserFactory.create()
    token = Token.objects.create(user=user)
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        failures = [client.get(ME_URL, HTTP_AUTHORIZATION=WRONG_TOKEN).status_code for _ in range(3)]
        over = client.get(ME_URL, HTTP_AUTHORIZATION=WRONG_TOKEN)
        right_token_here = client.get(ME_URL, HTTP_AUTHORIZATION=f"Token {token.key}")
        without_token_here = client.get("/api/v1/insights/")
        elsewhere = client.get(ME_URL, HTTP_AUTHORIZATION=f"Token {token.key}", REMOTE_ADDR="203.0.113.9")

    assert failures == [403, 403, 403]
    assert over.status_code == 429
    assert over["Retry-After"] == "60"
    assert over.json() == {
        "error": {
            "status": 429,
            "code": "throttled",
            "message": "Too many failed authentication attempts from here. Expected available in 60 seconds.",
            "detail": None,
        }
    }
    # Refused even with the right token, or a guesser would learn which guess was right.
    assert right_token_here.status_code == 429
    assert without_token_here.status_code == 200
    assert elsewhere.status_code == 200

    with time_machine.travel(start + dt.timedelta(seconds=61), tick=False):
        assert client.get(ME_URL, HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200


def test_good_tokens_are_never_counted(client: Client, settings: SettingsWrapper) -> None:
    settings.API_AUTH_FAILURE_RATE = "2/min"
    token = Token.objects.create(user=UserFactory.create())

    statuses = [client.get(ME_URL, HTTP_AUTHORIZATION=f"Token {token.key}").status_code for _ in range(5)]

    assert statuses == [200] * 5


# --- schema and docs ------------------------------------------------------------------------------------------

DOC_URLS = ["/api/schema/", "/api/docs/", "/api/redoc/"]


@pytest.mark.parametrize("url", DOC_URLS)
def test_docs_are_staff_only_unless_opened(client: Client, settings: SettingsWrapper, url: str) -> None:
    settings.API_DOCS_PUBLIC = False

    anonymous = client.get(url)
    client.force_login(UserFactory.create())
    member = client.get(url)
    client.force_login(UserFactory.create(staff=True))
    staff = client.get(url)

    assert (anonymous.status_code, member.status_code, staff.status_code) == (403, 403, 200)
    assert b"openapi" not in anonymous.content.lower()
    assert b"openapi" not in member.content.lower()


@pytest.mark.parametrize("url", DOC_URLS)
def test_api_docs_public_opens_them_to_anyone(client: Client, settings: SettingsWrapper, url: str) -> None:
    settings.API_DOCS_PUBLIC = True

    assert client.get(url).status_code == 200
