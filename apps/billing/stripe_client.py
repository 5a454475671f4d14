"""The one place that configures the ``stripe`` library and calls Stripe.

Every call goes through ``stripe_call``: a ``stripe.StripeClient`` built from settings (``STRIPE_API_BASE`` lets
tests and local mocks stand in for api.stripe.com), with the library's own retries off so that the platform's
retry policy and circuit breaker (``guarded_call("stripe", ...)``) are the only ones, and Stripe's errors
translated into the platform's error kinds. Webhook signatures are checked here too, with Stripe's own
verification.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import stripe
from django.conf import settings

from apps.core.jsonsafe import json_loads
from apps.core.resilience import (
    IntegrationError,
    PermanentError,
    RateLimited,
    TransientError,
    guarded_call,
    retry_after_from_headers,
)

SERVICE = "stripe"
T = TypeVar("T")

# Stripe asks clients to slow down without saying for how long; a second is its documented starting point.
DEFAULT_RATE_LIMIT_WAIT = 1.0


class WebhookSignatureInvalid(Exception):
    """The body was not signed by Stripe with our endpoint secret, or the signature is too old."""


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        # The library would retry on its own, unseen by the circuit breaker; guarded_call retries instead.
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def get_client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise PermanentError("STRIPE_SECRET_KEY is not set", service=SERVICE)
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS)


def translate_error(exc: stripe.StripeError) -> IntegrationError:
    """Stripe's error classes as the platform's error kinds: retry what may succeed later, never the rest."""
    message = f"{type(exc).__name__}: {exc}"
    headers = {str(k): str(v) for k, v in (exc.headers or {}).items()}
    if isinstance(exc, stripe.RateLimitError):
        wait = retry_after_from_headers(headers)
        return RateLimited(
            message, retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_WAIT, service=SERVICE
        )
    if isinstance(exc, stripe.APIConnectionError):
        return TransientError(message, service=SERVICE)
    # Stripe marks the rare 4xx that is worth repeating (a lock timeout, say) with this header.
    if {k.lower(): v for k, v in headers.items()}.get("stripe-should-retry") == "true":
        return TransientError(message, service=SERVICE)
    if isinstance(
        exc,
        stripe.InvalidRequestError
        | stripe.AuthenticationError
        | stripe.PermissionError
        | stripe.CardError
        | stripe.IdempotencyError,
    ):
        return PermanentError(message, service=SERVICE)
    if exc.http_status is None or exc.http_status >= 500:
        return TransientError(message, service=SERVICE)
    return PermanentError(message, service=SERVICE)


def stripe_call(fn: Callable[[stripe.StripeClient], T]) -> T:
    """Run ``fn(client)`` inside the platform's retry policy and Stripe's circuit breaker."""
    client = get_client()

    def attempt() -> T:
        try:
            return fn(client)
        except stripe.StripeError as exc:
            raise translate_error(exc) from exc

    return guarded_call(SERVICE, attempt)


def subscription_retrieve(subscription_id: str) -> dict[str, Any]:
    """Stripe's current state of a subscription, as plain JSON data."""
    subscription = stripe_call(lambda client: client.v1.subscriptions.retrieve(subscription_id))
    return subscription.to_dict()


def _signature_timestamp(header: str) -> int:
    # Read as verify_header reads it (the first t=), which has already found it there and numeric.
    return int(
        next(value for key, _, value in (item.partition("=") for item in header.split(",")) if key == "t")
    )


def webhook_event_verify(*, payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """The event in a webhook body, once Stripe's signature over it checks out.

    ``Stripe-Signature`` carries a timestamp and one or more ``v1`` signatures (several while an endpoint
    secret is being rolled); one must match our secret, and the timestamp must be within
    ``STRIPE_WEBHOOK_TOLERANCE_SECONDS`` so a captured request cannot be replayed later.
    """
    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature_header, settings.STRIPE_WEBHOOK_SECRET, tolerance=tolerance
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise WebhookSignatureInvalid(str(exc)) from exc
    # Stripe's check only looks back: a signature dated in the future would stay replayable for as long as
    # it is dated ahead, so it gets the same tolerance the other way.
    if _signature_timestamp(signature_header or "") > time.time() + tolerance:
        raise WebhookSignatureInvalid("Timestamp is in the future, outside the tolerance zone")
    event = json_loads(payload)
    if not isinstance(event, dict):
        raise ValueError("a Stripe event is a JSON object")
    return event
