"""Whatever order a subscription's events arrive in, and however often: the subscription and its entitlements
end in the state Stripe reports now.

A subscription lives through six events (created in trial, trial converts, renewal paid, renewal fails, set to
cancel at the period end, deleted). Stripe got as far as one of them; its API (the fake) reports that state.
The events up to there are delivered through the webhook endpoint in any order, some more than once, each
processed as a worker would after its commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.test import Client, TestCase
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from apps.billing.models import (
    Entitlement,
    EntitlementSource,
    StripeEvent,
    StripeEventStatus,
    Subscription,
    SubscriptionStatus,
)
from apps.billing.services.entitlements import RENEWAL_LEEWAY
from apps.billing.tasks import sync_entitlement
from apps.billing.tests.stripe_fakes import (
    FakeStripe,
    at_second,
    deliver,
    event,
    invoice_object,
    member,
    subscription_object,
    unique,
)

pytestmark = pytest.mark.django_db

PREMIUM, ROLE = "portal.premium", "discord.role:111"
GRACE_DAYS = 3


@dataclass(frozen=True)
class Expected:
    status: str
    cancel_at_period_end: bool
    past_due_since: dt.datetime | None
    live: list[tuple[str, str, dt.datetime]]


@pytest.fixture
def fake_stripe(httpserver: HTTPServer, settings: Any) -> FakeStripe:
    return FakeStripe.install(httpserver, settings)


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


def _lifecycle(
    customer: str, price_id: str, now: dt.datetime
) -> list[tuple[dict[str, Any], dict[str, Any], Expected]]:
    """Each step: its event, Stripe's state once it happened, and what we must end with when that is the last."""
    sub_id = unique("sub")
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=29)
    base: dict[str, Any] = {"subscription_id": sub_id, "customer": customer, "price_id": price_id}
    trialing = subscription_object(
        **base, status="trialing", period_start=start, period_end=end, trial_end=end
    )
    active = subscription_object(**base, status="active", period_start=start, period_end=end)
    past_due = subscription_object(**base, status="past_due", period_start=start, period_end=end)
    canceling = subscription_object(
        **base,
        status="active",
        period_start=start,
        period_end=end,
        cancel_at_period_end=True,
        canceled_at=now - dt.timedelta(minutes=30),
    )
    ended_start, ended_end = now - dt.timedelta(days=31), now - dt.timedelta(days=1)
    deleted = subscription_object(
        **base,
        status="canceled",
        period_start=ended_start,
        period_end=ended_end,
        cancel_at_period_end=True,
        canceled_at=now - dt.timedelta(days=2),
        ended_at=ended_end,
    )
    failed_at = now - dt.timedelta(hours=2)

    def invoice(status: str) -> dict[str, Any]:
        return invoice_object(invoice_id=unique("in"), customer=customer, subscription=sub_id, status=status)

    def both(source: str, until: dt.datetime) -> list[tuple[str, str, dt.datetime]]:
        return [(ROLE, source, until), (PREMIUM, source, until)]

    paid = Expected(
        SubscriptionStatus.ACTIVE, False, None, both(EntitlementSource.SUBSCRIPTION, end + RENEWAL_LEEWAY)
    )
    return [
        (
            event("customer.subscription.created", trialing, created=now - dt.timedelta(days=1)),
            trialing,
            Expected(
                SubscriptionStatus.TRIALING, False, None, both(EntitlementSource.TRIAL, end + RENEWAL_LEEWAY)
            ),
        ),
        (event("customer.subscription.updated", active, created=now - dt.timedelta(hours=5)), active, paid),
        (event("invoice.paid", invoice("paid"), created=now - dt.timedelta(hours=4)), active, paid),
        (
            event("invoice.payment_failed", invoice("open"), created=failed_at),
            past_due,
            # The plan keeps only the portal during grace, for GRACE_DAYS from the failed payment.
            Expected(
                SubscriptionStatus.PAST_DUE,
                False,
                failed_at,
                [(PREMIUM, EntitlementSource.GRACE, failed_at + dt.timedelta(days=GRACE_DAYS))],
            ),
        ),
        (
            event("customer.subscription.updated", canceling, created=now - dt.timedelta(minutes=30)),
            canceling,
            Expected(SubscriptionStatus.ACTIVE, True, None, both(EntitlementSource.SUBSCRIPTION, end)),
        ),
        (
            event("customer.subscription.deleted", deleted, created=now - dt.timedelta(minutes=1)),
            deleted,
            Expected(SubscriptionStatus.CANCELED, True, None, []),
        ),
    ]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    """How far Stripe got (an index into the lifecycle), and the order the events up to there arrive in: each
    at least once, a few twice or more."""
    last = draw(st.integers(min_value=0, max_value=5))
    repeats = draw(st.lists(st.integers(min_value=0, max_value=last), max_size=4))
    order = draw(st.permutations(list(range(last + 1)) + repeats))
    return last, order


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=deliveries())
def test_any_order_with_duplicates_ends_in_stripes_current_state(
    client: Client, fake_stripe: FakeStripe, case: tuple[int, list[int]]
) -> None:
    last, order = case
    # Each example in a savepoint of its own, rolled back at the end.
    with transaction.atomic():
        m = member(keys=(PREMIUM, ROLE), grace_days=GRACE_DAYS, grace_keys=(PREMIUM,))
        steps = _lifecycle(m.customer_id, str(m.price.stripe_price_id), at_second(timezone.now()))
        fake_stripe.subscriptions.clear()
        fake_stripe.put(steps[last][1])
        expected = steps[last][2]

        for index in order:
            with TestCase.captureOnCommitCallbacks(execute=True):
                assert deliver(client, steps[index][0]).status_code == 200

        subscription = Subscription.objects.get()
        assert (subscription.status, subscription.cancel_at_period_end, subscription.past_due_since) == (
            expected.status,
            expected.cancel_at_period_end,
            expected.past_due_since,
        )
        now = timezone.now()
        live = Entitlement.objects.filter(
            user=m.user, revoked_at__isnull=True, ends_at__gt=now, starts_at__lte=now
        )
        assert sorted(live.values_list("key", "source", "ends_at")) == expected.live
        # Every event stored once and processed once, duplicates included.
        events = StripeEvent.objects.all()
        assert len(events) == last + 1
        assert {(e.status, e.attempts) for e in events} == {(StripeEventStatus.PROCESSED, 1)}
        transaction.set_rollback(True)
