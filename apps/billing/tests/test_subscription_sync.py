"""Applying Stripe's state of a subscription: older news never winds it back, a terminal state is never revived,
and the plan, the member and the billing period are found the way Stripe's objects carry them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from apps.billing.factories import PlanFactory, PlanPriceFactory
from apps.billing.models import Subscription, SubscriptionStatus
from apps.billing.selectors import user_entitlement_keys
from apps.billing.services.subscriptions import StripeObjectUnmapped, subscription_sync_from_stripe
from apps.billing.tasks import sync_entitlement
from apps.billing.tests.stripe_fakes import Member, at_second, member, subscription_object, ts, unique

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


@pytest.fixture
def now() -> dt.datetime:
    return at_second(timezone.now())


def _snapshot(m: Member, now: dt.datetime, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "subscription_id": "sub_T_sync",
        "customer": m.customer_id,
        "price_id": str(m.price.stripe_price_id),
        "period_start": now - dt.timedelta(days=1),
        "period_end": now + dt.timedelta(days=29),
    }
    return subscription_object(**(fields | changes))


def test_an_older_snapshot_is_ignored(now: dt.datetime) -> None:
    m = member()
    subscription_sync_from_stripe(stripe_subscription=_snapshot(m, now, status="past_due"), event_created=now)
    before = Subscription.objects.values().get()

    subscription_sync_from_stripe(
        stripe_subscription=_snapshot(m, now, status="active"), event_created=now - dt.timedelta(seconds=1)
    )

    assert Subscription.objects.values().get() == before


def test_a_newer_snapshot_applies_and_moves_the_sync_time_forward(now: dt.datetime) -> None:
    m = member()
    subscription_sync_from_stripe(stripe_subscription=_snapshot(m, now, status="past_due"), event_created=now)
    later = now + dt.timedelta(seconds=5)

    row = subscription_sync_from_stripe(
        stripe_subscription=_snapshot(m, now, status="active"), event_created=later
    )

    assert (row.status, row.stripe_synced_at, row.past_due_since) == (SubscriptionStatus.ACTIVE, later, None)


def test_a_canceled_subscription_is_never_revived_even_by_newer_news(now: dt.datetime) -> None:
    m = member()
    canceled = _snapshot(m, now, status="canceled", ended_at=now, canceled_at=now)
    subscription_sync_from_stripe(stripe_subscription=canceled, event_created=now)

    subscription_sync_from_stripe(
        stripe_subscription=_snapshot(m, now, status="active"), event_created=now + dt.timedelta(hours=1)
    )

    assert Subscription.objects.get().status == SubscriptionStatus.CANCELED
    assert user_entitlement_keys(user=m.user) == set()


def test_a_cancellation_applies_even_when_it_is_older_news(now: dt.datetime) -> None:
    m = member()
    subscription_sync_from_stripe(stripe_subscription=_snapshot(m, now), event_created=now)

    subscription_sync_from_stripe(
        stripe_subscription=_snapshot(m, now, status="canceled", ended_at=now, canceled_at=now),
        event_created=now - dt.timedelta(minutes=1),
    )

    row = Subscription.objects.get()
    assert (row.status, row.stripe_synced_at) == (SubscriptionStatus.CANCELED, now)


def test_past_due_since_is_the_first_sighting_and_clears_on_payment(now: dt.datetime) -> None:
    m = member()
    first, second = now, now + dt.timedelta(hours=1)
    subscription_sync_from_stripe(
        stripe_subscription=_snapshot(m, now, status="past_due"), event_created=first
    )
    subscription_sync_from_stripe(
        stripe_subscription=_snapshot(m, now, status="past_due"), event_created=second
    )
    assert Subscription.objects.get().past_due_since == first

    subscription_sync_from_stripe(
        stripe_subscription=_snapshot(m, now, status="unpaid"), event_created=second + dt.timedelta(days=1)
    )
    assert Subscription.objects.get().past_due_since == first


def test_the_billing_period_comes_from_the_subscription_item(now: dt.datetime) -> None:
    m = member()
    snapshot = _snapshot(m, now)
    # Older API versions also carried a period on the subscription itself; the item's wins.
    snapshot["current_period_start"] = ts(now - dt.timedelta(days=100))
    snapshot["current_period_end"] = ts(now - dt.timedelta(days=70))

    row = subscription_sync_from_stripe(stripe_subscription=snapshot)

    assert (row.current_period_start, row.current_period_end) == (
        now - dt.timedelta(days=1),
        now + dt.timedelta(days=29),
    )


def test_an_older_api_versions_period_on_the_subscription_is_used_when_the_item_has_none(
    now: dt.datetime,
) -> None:
    m = member()
    snapshot = _snapshot(m, now)
    item = snapshot["items"]["data"][0]
    del item["current_period_start"], item["current_period_end"]
    snapshot["current_period_start"], snapshot["current_period_end"] = (
        ts(now),
        ts(now + dt.timedelta(days=30)),
    )

    row = subscription_sync_from_stripe(stripe_subscription=snapshot)

    assert (row.current_period_start, row.current_period_end) == (now, now + dt.timedelta(days=30))


def test_a_cancellation_scheduled_within_the_period_counts_as_ending_at_the_period_end(
    now: dt.datetime,
) -> None:
    m = member()
    snapshot = _snapshot(m, now)
    snapshot["cancel_at"] = ts(now + dt.timedelta(days=29))

    assert subscription_sync_from_stripe(stripe_subscription=snapshot).cancel_at_period_end is True


def test_a_price_we_do_not_list_maps_by_its_product(now: dt.datetime) -> None:
    m = member()
    plan = PlanFactory.create(stripe_product_id=unique("prod"))

    row = subscription_sync_from_stripe(
        stripe_subscription=_snapshot(
            m, now, price_id="price_unlisted", product_id=str(plan.stripe_product_id)
        )
    )

    assert (row.plan, row.price) == (plan, None)


def test_with_several_items_the_highest_tier_wins(now: dt.datetime) -> None:
    m = member()
    elite = PlanPriceFactory.create(
        plan=PlanFactory.create(rank=m.plan.rank + 1), stripe_price_id=unique("price")
    )
    snapshot = _snapshot(m, now)
    extra = dict(
        snapshot["items"]["data"][0], id="si_elite", price=dict(snapshot["items"]["data"][0]["price"])
    )
    extra["price"]["id"] = elite.stripe_price_id
    snapshot["items"]["data"].append(extra)

    row = subscription_sync_from_stripe(stripe_subscription=snapshot)

    assert (row.plan, row.price) == (elite.plan, elite)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"price_id": "price_nobody_sells", "product_id": "prod_nobody_sells"}, "no plan for prices"),
        ({"customer": "cus_nobody"}, "is linked to no user"),
        ({"status": "mysterious"}, "unknown status"),
    ],
    ids=["unknown price", "unknown customer", "unknown status"],
)
def test_what_cannot_be_placed_is_refused_and_nothing_written(
    now: dt.datetime, fields: dict[str, Any], message: str
) -> None:
    m = member()

    with pytest.raises(StripeObjectUnmapped, match=message):
        subscription_sync_from_stripe(stripe_subscription=_snapshot(m, now, **fields))

    assert Subscription.objects.count() == 0
