"""The webhook endpoint: only Stripe's signature gets an event in, a refused request leaves no trace, and an event
is stored and processed once however often it is delivered."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer

from apps.billing.factories import BillingCustomerFactory, PlanFactory, PlanPriceFactory
from apps.billing.models import Entitlement, StripeEvent, StripeEventStatus, Subscription
from apps.billing.tasks import sync_entitlement
from apps.billing.tests.stripe_fakes import (
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    FakeStripe,
    deliver,
    event,
    sign,
    subscription_object,
    unique,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_stripe(httpserver: HTTPServer, settings: Any) -> FakeStripe:
    return FakeStripe.install(httpserver, settings)


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


@pytest.fixture
def subscription_event(fake_stripe: FakeStripe) -> dict[str, Any]:
    """A genuine ``customer.subscription.updated`` for a member whose subscription Stripe reports active."""
    price = PlanPriceFactory.create(
        stripe_price_id=unique("price"), plan=PlanFactory.create(entitlement_keys=["portal.premium"])
    )
    customer = BillingCustomerFactory.create(stripe_customer_id=unique("cus"))
    now = timezone.now()
    sub = fake_stripe.put(
        subscription_object(
            subscription_id=unique("sub"),
            customer=customer.stripe_customer_id,
            price_id=str(price.stripe_price_id),
            period_start=now - dt.timedelta(days=1),
            period_end=now + dt.timedelta(days=29),
        )
    )
    return event("customer.subscription.updated", sub, created=now)


def _nothing_written() -> tuple[int, int, int]:
    return StripeEvent.objects.count(), Subscription.objects.count(), Entitlement.objects.count()


def _post(client: Client, body: str, **headers: str) -> Any:
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", headers=headers)


REFUSALS: dict[str, Callable[[str], dict[str, str]]] = {
    "missing": lambda body: {},
    "empty": lambda body: {"Stripe-Signature": ""},
    "forged with another secret": lambda body: {"Stripe-Signature": sign(body, secret="whsec_someone_else")},
    "stale beyond the tolerance": lambda body: {
        "Stripe-Signature": sign(body, timestamp=int(time.time()) - 301)
    },
    # Dated ahead, it would stay replayable until long after it was captured.
    "dated beyond the tolerance in the future": lambda body: {
        "Stripe-Signature": sign(body, timestamp=int(time.time()) + 301)
    },
    "dated a year ahead": lambda body: {
        "Stripe-Signature": sign(body, timestamp=int(time.time()) + 365 * 86400)
    },
    "for another body": lambda body: {"Stripe-Signature": sign(body + " ")},
    "without a v1 signature": lambda body: {"Stripe-Signature": f"t={int(time.time())},v0=abc"},
    "unparseable": lambda body: {"Stripe-Signature": "garbage"},
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_request_without_a_good_signature_is_refused_and_leaves_no_trace(
    client: Client,
    subscription_event: dict[str, Any],
    fake_stripe: FakeStripe,
    django_capture_on_commit_callbacks: Any,
    case: str,
) -> None:
    body = json.dumps(subscription_event)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _post(client, body, **REFUSALS[case](body))

    assert response.status_code == 400
    assert response.json() == {"error": "invalid Stripe webhook"}
    assert _nothing_written() == (0, 0, 0)
    assert callbacks == []
    assert fake_stripe.calls == []


def test_without_a_configured_secret_every_webhook_is_refused(
    client: Client, subscription_event: dict[str, Any], settings: Any
) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""

    response = deliver(client, subscription_event)

    assert response.status_code == 400
    assert _nothing_written() == (0, 0, 0)


def test_a_signature_just_inside_the_tolerance_is_accepted(
    client: Client, subscription_event: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, subscription_event, timestamp=int(time.time()) - 290)

    assert response.status_code == 200


def test_a_signature_dated_just_inside_the_tolerance_ahead_is_accepted(
    client: Client, subscription_event: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    # Clocks drift: Stripe's a little ahead of ours is fine.
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, subscription_event, timestamp=int(time.time()) + 290)

    assert response.status_code == 200
    assert StripeEvent.objects.count() == 1


def test_one_matching_signature_among_several_is_enough(
    client: Client, subscription_event: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    # While an endpoint secret is rolled, Stripe signs with the old and the new one.
    body = json.dumps(subscription_event)
    t = int(time.time())
    old = sign(body, secret="whsec_rolled_away", timestamp=t).split(",")[1]
    header = f"t={t},{old},{sign(body, secret=WEBHOOK_SECRET, timestamp=t).split(',')[1]}"

    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, body, **{"Stripe-Signature": header})

    assert response.status_code == 200
    assert StripeEvent.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"object": "event", "type": "customer.subscription.updated", "created": 1}),
        json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid", "created": 1, "data": {}}),
    ],
    ids=["not json", "not an object", "no id", "no data.object"],
)
def test_a_signed_body_that_is_no_event_is_refused(client: Client, body: str, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET

    response = _post(client, body, **{"Stripe-Signature": sign(body)})

    assert response.status_code == 400
    assert _nothing_written() == (0, 0, 0)


def test_a_signed_body_nested_too_deeply_is_refused_without_a_traceback(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    body = "[" * 50_000 + "]" * 50_000

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _post(client, body, **{"Stripe-Signature": sign(body)})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid Stripe webhook"}
    assert _nothing_written() == (0, 0, 0)
    assert callbacks == []
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


def test_only_post_is_allowed(client: Client) -> None:
    assert client.get(WEBHOOK_URL).status_code == 405
    assert StripeEvent.objects.count() == 0


def test_stripe_needs_no_csrf_token(
    subscription_event: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(Client(enforce_csrf_checks=True), subscription_event)

    assert response.status_code == 200


def test_a_genuine_event_is_stored_answered_and_processed_after_commit(
    client: Client,
    subscription_event: dict[str, Any],
    fake_stripe: FakeStripe,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = deliver(client, subscription_event)

    assert response.status_code == 200
    assert response.json() == {"received": True, "id": subscription_event["id"]}
    stored = StripeEvent.objects.get()
    assert (stored.stripe_id, stored.type, stored.api_version, stored.livemode, stored.status) == (
        subscription_event["id"],
        "customer.subscription.updated",
        "2025-08-27.basil",
        False,
        StripeEventStatus.RECEIVED,
    )
    assert stored.stripe_created == dt.datetime.fromtimestamp(subscription_event["created"], tz=dt.UTC)
    assert stored.payload == subscription_event
    # Nothing is processed until the row is committed.
    assert (len(callbacks), Subscription.objects.count(), fake_stripe.calls) == (1, 0, [])

    callbacks[0]()

    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.error) == (StripeEventStatus.PROCESSED, 1, "")
    assert stored.processed_at is not None
    assert Subscription.objects.get().stripe_subscription_id == subscription_event["data"]["object"]["id"]
    assert fake_stripe.reads() == 1


def test_a_redelivered_event_is_acknowledged_and_not_stored_or_processed_again(
    client: Client,
    subscription_event: dict[str, Any],
    fake_stripe: FakeStripe,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(client, subscription_event)
    processed = StripeEvent.objects.values().get()
    rows = list(Entitlement.objects.values())

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = deliver(client, subscription_event)

    assert (first.status_code, again.status_code) == (200, 200)
    assert StripeEvent.objects.values().get() == processed
    assert processed["attempts"] == 1
    assert callbacks == []
    assert fake_stripe.reads() == 1
    assert list(Entitlement.objects.values()) == rows


def test_an_event_type_without_a_handler_is_stored_and_ignored(
    client: Client, fake_stripe: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    price_event = event("price.created", {"id": "price_1", "object": "price"}, created=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, price_event)

    assert response.status_code == 200
    stored = StripeEvent.objects.get()
    assert (stored.status, stored.error) == (StripeEventStatus.IGNORED, "no handler for price.created")
    assert fake_stripe.calls == []
