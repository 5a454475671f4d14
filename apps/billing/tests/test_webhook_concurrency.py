"""Racing workers on PostgreSQL: one event delivered or handed to two workers at once is processed once, and two
deliveries that both create a subscription make one row with one set of entitlements."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer

from apps.billing.models import Entitlement, StripeEvent, StripeEventStatus, Subscription
from apps.billing.services import subscriptions
from apps.billing.services.subscriptions import subscription_sync_from_stripe
from apps.billing.services.webhooks import stripe_event_process
from apps.billing.tasks import sync_entitlement
from apps.billing.tests.stripe_fakes import (
    FakeStripe,
    Member,
    at_second,
    deliver,
    event,
    invoice_object,
    member,
    subscription_object,
    unique,
)
from apps.core.models import CircuitBreakerState

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
T = TypeVar("T")


@pytest.fixture
def fake_stripe(httpserver: HTTPServer, settings: Any) -> FakeStripe:
    CircuitBreakerState.objects.get_or_create(service="stripe")
    stripe = FakeStripe.install(httpserver, settings)
    stripe.latency = 0.3
    return stripe


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


def _at_once(*jobs: Callable[[], T]) -> list[T]:
    """Run the jobs in threads released together, each on its own database connection."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], T]) -> T:
        try:
            start.wait(timeout=10)
            return job()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return [f.result(timeout=60) for f in [pool.submit(run, job) for job in jobs]]


def _subscription(m: Member) -> dict[str, Any]:
    now = at_second(timezone.now())
    return subscription_object(
        subscription_id=unique("sub"),
        customer=m.customer_id,
        price_id=str(m.price.stripe_price_id),
        period_start=now - dt.timedelta(days=1),
        period_end=now + dt.timedelta(days=29),
    )


def test_two_workers_handed_the_same_event_process_it_once(fake_stripe: FakeStripe) -> None:
    m = member()
    sub = fake_stripe.put(_subscription(m))
    data = event("customer.subscription.updated", sub, created=timezone.now())
    stored = StripeEvent.objects.create(
        stripe_id=data["id"], type=data["type"], stripe_created=timezone.now(), payload=data
    )

    outcomes = _at_once(
        lambda: stripe_event_process(event_id=stored.pk), lambda: stripe_event_process(event_id=stored.pk)
    )

    assert sorted(outcomes, key=str) == [None, StripeEventStatus.PROCESSED]
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEventStatus.PROCESSED, 1)
    assert fake_stripe.reads() == 1
    assert Entitlement.objects.count() == 2


def test_one_event_delivered_twice_at_once_is_stored_and_processed_once(fake_stripe: FakeStripe) -> None:
    m = member()
    data = event("customer.subscription.created", fake_stripe.put(_subscription(m)), created=timezone.now())

    responses = _at_once(lambda: deliver(Client(), data), lambda: deliver(Client(), data))

    assert [r.status_code for r in responses] == [200, 200]
    stored = StripeEvent.objects.get()
    assert (stored.status, stored.attempts) == (StripeEventStatus.PROCESSED, 1)
    assert fake_stripe.reads() == 1
    assert Subscription.objects.count() == 1
    assert Entitlement.objects.count() == 2


def test_two_events_creating_one_subscription_at_once_make_one_row(fake_stripe: FakeStripe) -> None:
    m = member()
    sub = fake_stripe.put(_subscription(m))
    created = event("customer.subscription.created", sub, created=timezone.now())
    paid = event(
        "invoice.paid",
        invoice_object(invoice_id=unique("in"), customer=m.customer_id, subscription=sub["id"]),
        created=timezone.now(),
    )

    responses = _at_once(lambda: deliver(Client(), created), lambda: deliver(Client(), paid))

    assert [r.status_code for r in responses] == [200, 200]
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {StripeEventStatus.PROCESSED}
    assert Subscription.objects.count() == 1
    assert sorted(Entitlement.objects.values_list("key", flat=True)) == ["discord.role:111", "portal.premium"]


def test_a_creation_race_is_settled_by_the_unique_stripe_id(monkeypatch: pytest.MonkeyPatch) -> None:
    m = member()
    snapshot = _subscription(m)
    # Both syncs find no row, then insert together: one wins, the other retries as an update of its row.
    both_looked = threading.Barrier(2)
    owner = subscriptions._owner

    def owner_after_both_looked(*args: Any) -> Any:
        both_looked.wait(timeout=10)
        return owner(*args)

    monkeypatch.setattr(subscriptions, "_owner", owner_after_both_looked)

    rows = _at_once(
        lambda: subscription_sync_from_stripe(stripe_subscription=snapshot),
        lambda: subscription_sync_from_stripe(stripe_subscription=snapshot),
    )

    assert rows[0].pk == rows[1].pk
    assert Subscription.objects.count() == 1
    assert Entitlement.objects.count() == 2
