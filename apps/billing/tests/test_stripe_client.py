"""The Stripe client: the real ``stripe`` library, sent to a fake Stripe on loopback by STRIPE_API_BASE, with
its own retries off and Stripe's errors turned into the platform's error kinds."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from apps.billing import stripe_client
from apps.billing.tests.stripe_fakes import SECRET_KEY, FakeStripe
from apps.core.resilience import PermanentError, RateLimited, TransientError

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_stripe(httpserver: HTTPServer, settings: Any) -> FakeStripe:
    # The breaker stays closed, so every retry of a failing call reaches the fake and can be counted.
    settings.CIRCUIT_BREAKER_FAILURES = 100
    return FakeStripe.install(httpserver, settings)


def test_a_subscription_is_read_from_the_configured_api_base_with_the_secret_key(
    fake_stripe: FakeStripe,
) -> None:
    fake_stripe.put({"id": "sub_123", "object": "subscription", "status": "active", "items": {"data": []}})

    subscription = stripe_client.subscription_retrieve("sub_123")

    assert subscription == {
        "id": "sub_123",
        "object": "subscription",
        "status": "active",
        "items": {"data": []},
    }
    ((method, path, headers),) = fake_stripe.calls
    assert (method, path) == ("GET", "/v1/subscriptions/sub_123")
    assert headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert headers["Stripe-Version"]


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (500, {"type": "api_error", "message": "boom"}, TransientError),
        (503, {"type": "api_error", "message": "down"}, TransientError),
        (429, {"type": "invalid_request_error", "code": "rate_limit", "message": "slow down"}, RateLimited),
        (
            404,
            {"type": "invalid_request_error", "code": "resource_missing", "message": "No such"},
            PermanentError,
        ),
        (400, {"type": "invalid_request_error", "message": "bad param"}, PermanentError),
        (401, {"type": "invalid_request_error", "message": "Invalid API Key"}, PermanentError),
        (403, {"type": "invalid_request_error", "message": "restricted key"}, PermanentError),
    ],
)
def test_stripes_errors_become_the_platforms_error_kinds(
    fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch, status: int, error: dict[str, Any], kind: type
) -> None:
    monkeypatch.setattr(stripe_client, "guarded_call", lambda service, fn: fn())
    fake_stripe.fail_with(status, error)

    with pytest.raises(kind) as raised:
        stripe_client.subscription_retrieve("sub_123")

    assert type(raised.value) is kind
    assert isinstance(raised.value, TransientError | PermanentError)
    assert raised.value.service == "stripe"
    # The library does not retry on its own: one request, whatever the answer.
    assert fake_stripe.reads() == 1


def test_a_transient_failure_is_retried_by_the_platform_policy_alone(fake_stripe: FakeStripe) -> None:
    fake_stripe.fail_with(500, {"type": "api_error", "message": "boom"})

    with pytest.raises(TransientError):
        stripe_client.subscription_retrieve("sub_123")

    # guarded_call's three attempts, and not one more from the library.
    assert fake_stripe.reads() == 3


def test_an_unreachable_stripe_is_a_transient_error(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
    monkeypatch.setattr(stripe_client, "guarded_call", lambda service, fn: fn())

    with pytest.raises(TransientError):
        stripe_client.subscription_retrieve("sub_123")


def test_without_a_secret_key_nothing_is_sent(fake_stripe: FakeStripe, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(PermanentError, match="STRIPE_SECRET_KEY"):
        stripe_client.subscription_retrieve("sub_123")

    assert fake_stripe.calls == []
