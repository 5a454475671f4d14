"""The KPIs: MRR to the minor unit (monthly prices in full, yearly ones at a twelfth rounded once per currency,
past due within grace in, trials and the rest out), members and trials, churn over a period, the offer funnel,
and a fixed number of queries however many rows there are."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import (
    ConversionAttemptFactory,
    PlanFactory,
    PlanPriceFactory,
    SubscriptionFactory,
)
from apps.billing.kpis import (
    Churn,
    Funnel,
    churn_in_period,
    conversion_funnel,
    kpi_report,
    parse_period,
    subscription_kpis,
)
from apps.billing.models import (
    BillingInterval,
    ConversionStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 7, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
START = NOW - 30 * DAY


def _subscription(
    amount: int,
    *,
    interval: str = BillingInterval.MONTH,
    currency: str = "usd",
    status: str = SubscriptionStatus.ACTIVE,
    plan: Plan | None = None,
    user: User | None = None,
    **fields: Any,
) -> Subscription:
    plan = plan or PlanFactory.create()
    # Retired prices: a member keeps paying the price they signed up at, and it counts as such.
    price = PlanPriceFactory.create(
        plan=plan, interval=interval, amount_minor=amount, currency=currency, is_active=False
    )
    return SubscriptionFactory.create(
        plan=plan, price=price, status=status, user=user or UserFactory.create(), **fields
    )


def _paying_mix() -> None:
    grace_3 = PlanFactory.create(grace_days=3)
    grace_7 = PlanFactory.create(grace_days=7)
    both = UserFactory.create()
    _subscription(2900, user=both)
    _subscription(4900)
    # Three yearly members at 1002: a twelfth is 83.5 each. Summed then divided once: 3006 / 12 = 250.5,
    # rounded half up to 251 (rounding each one would say 252 or 249, depending on the rule).
    for _ in range(3):
        _subscription(1002, interval=BillingInterval.YEAR)
    _subscription(1500, currency="eur", user=both)
    # Past due: in for as long as the plan's grace lasts.
    _subscription(1000, status=SubscriptionStatus.PAST_DUE, plan=grace_3, past_due_since=NOW - DAY)
    _subscription(700, status=SubscriptionStatus.PAST_DUE, plan=grace_3, past_due_since=NOW - 5 * DAY)
    _subscription(300, status=SubscriptionStatus.PAST_DUE, plan=grace_7, past_due_since=NOW - 5 * DAY)
    _subscription(800, status=SubscriptionStatus.PAST_DUE, plan=grace_7, past_due_since=None)
    # Never in MRR.
    _subscription(2900, status=SubscriptionStatus.TRIALING, trial_end=NOW + 5 * DAY)
    _subscription(2900, status=SubscriptionStatus.CANCELED, ended_at=NOW - 40 * DAY)
    _subscription(2900, status=SubscriptionStatus.UNPAID)
    _subscription(2900, status=SubscriptionStatus.INCOMPLETE)
    _subscription(2900, status=SubscriptionStatus.PAUSED)


def test_mrr_counts_active_and_in_grace_subscriptions_with_yearly_prices_at_a_twelfth() -> None:
    _paying_mix()

    kpis = subscription_kpis(now=NOW)

    # 2900 + 4900 monthly, 251 from the yearly ones, 1000 and 300 past due within grace.
    assert kpis.mrr_minor == {"eur": 1500, "usd": 2900 + 4900 + 251 + 1000 + 300}
    # Seven people pay (one of them twice, in two currencies); one trials.
    assert (kpis.active_members, kpis.trials) == (7, 1)


def test_mrr_is_none_without_paying_subscriptions() -> None:
    _subscription(2900, status=SubscriptionStatus.TRIALING)
    _subscription(2900, status=SubscriptionStatus.CANCELED)

    kpis = subscription_kpis(now=NOW)

    assert (kpis.mrr_minor, kpis.active_members, kpis.trials) == ({}, 0, 1)


def test_a_subscription_whose_price_is_gone_still_counts_as_a_member_but_adds_no_revenue() -> None:
    orphan = _subscription(2900)
    assert orphan.price is not None
    orphan.price.delete()  # the subscription's price becomes NULL

    kpis = subscription_kpis(now=NOW)

    assert (kpis.mrr_minor, kpis.active_members) == ({}, 1)


def _created(subscription: Subscription, when: dt.datetime) -> None:
    Subscription.objects.filter(pk=subscription.pk).update(created_at=when)


def test_churn_is_the_share_of_subscriptions_paying_at_the_start_that_ended_in_the_period() -> None:
    long_ago = NOW - 60 * DAY
    staying = _subscription(2900)
    ended = _subscription(2900, status=SubscriptionStatus.CANCELED, ended_at=NOW - 10 * DAY)
    canceled_without_end = _subscription(
        2900, status=SubscriptionStatus.CANCELED, canceled_at=NOW - 5 * DAY, ended_at=None
    )
    # Asked to cancel at the period end: not gone yet.
    leaving_later = _subscription(2900, cancel_at_period_end=True, canceled_at=NOW - 3 * DAY)
    # Not paying at the start: gone before it, joined after it, trialing at it, never completed checkout.
    gone_before = _subscription(2900, status=SubscriptionStatus.CANCELED, ended_at=NOW - 40 * DAY)
    joined_after = _subscription(2900)
    trialing_then = _subscription(
        2900, status=SubscriptionStatus.CANCELED, trial_end=NOW - 20 * DAY, ended_at=NOW - 2 * DAY
    )
    never_paid = _subscription(2900, status=SubscriptionStatus.INCOMPLETE_EXPIRED, ended_at=NOW - DAY)
    for subscription in (
        staying,
        ended,
        canceled_without_end,
        leaving_later,
        gone_before,
        trialing_then,
        never_paid,
    ):
        _created(subscription, long_ago)
    _created(joined_after, NOW - 10 * DAY)

    assert churn_in_period(start=START, end=NOW) == Churn(subscriptions_at_start=4, ended=2, rate=0.5)


def test_churn_has_no_rate_when_nobody_paid_at_the_start() -> None:
    _subscription(2900)  # created now, after the start

    assert churn_in_period(start=START, end=NOW) == Churn(subscriptions_at_start=0, ended=0, rate=None)


def test_funnel_follows_the_offers_sent_in_the_period() -> None:
    ConversionAttemptFactory.create(sent_at=NOW - 10 * DAY)
    ConversionAttemptFactory.create(
        sent_at=NOW - 10 * DAY, clicked_at=NOW - 9 * DAY, status=ConversionStatus.CLICKED
    )
    ConversionAttemptFactory.create(
        sent_at=NOW - 5 * DAY,
        clicked_at=NOW - 5 * DAY,
        converted_at=NOW - 4 * DAY,
        status=ConversionStatus.CONVERTED,
    )
    # Converted through the link without the click being recorded: still a click.
    ConversionAttemptFactory.create(
        sent_at=NOW - 3 * DAY, converted_at=NOW - 2 * DAY, status=ConversionStatus.CONVERTED
    )
    # Sent before the period (converted within it), and never sent at all.
    ConversionAttemptFactory.create(
        sent_at=NOW - 40 * DAY, converted_at=NOW - 20 * DAY, status=ConversionStatus.CONVERTED
    )
    ConversionAttemptFactory.create(sent_at=None, status=ConversionStatus.FAILED)

    assert conversion_funnel(start=START, end=NOW) == Funnel(offers_sent=4, clicked=3, converted=2)


def test_report_puts_it_together_over_the_period() -> None:
    _paying_mix()
    ConversionAttemptFactory.create(sent_at=NOW - 2 * DAY)

    report = kpi_report(period_days=7, now=NOW)

    assert (report.as_of, report.period_start, report.period_end, report.period_days) == (
        NOW,
        NOW - 7 * DAY,
        NOW,
        7,
    )
    assert report.mrr_minor == {"eur": 1500, "usd": 9351}
    assert (report.active_members, report.trials) == (7, 1)
    assert report.funnel == Funnel(offers_sent=1, clicked=0, converted=0)


@pytest.mark.parametrize(("text", "days"), [("30d", 30), ("1d", 1), (" 7d ", 7), ("366d", 366)])
def test_periods_are_written_in_days(text: str, days: int) -> None:
    assert parse_period(text) == days


@pytest.mark.parametrize("text", ["0d", "367d", "30", "d", "4w", "-3d", "1.5d", "030d", ""])
def test_other_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="from 1d to 366d"):
        parse_period(text)


def _many(count: int) -> None:
    for index in range(count):
        _subscription(1000 + index, interval=BillingInterval.YEAR if index % 2 else BillingInterval.MONTH)
        _subscription(900, status=SubscriptionStatus.TRIALING)
        _subscription(
            700,
            status=SubscriptionStatus.PAST_DUE,
            plan=PlanFactory.create(grace_days=index % 4),
            past_due_since=NOW - DAY,
        )
        ConversionAttemptFactory.create(sent_at=NOW - DAY, clicked_at=NOW - DAY)


def test_the_report_costs_five_queries_however_many_rows(django_assert_num_queries: Any) -> None:
    _many(2)
    with django_assert_num_queries(5):
        kpi_report(now=NOW)

    _many(20)
    with django_assert_num_queries(5):
        report = kpi_report(now=NOW)

    assert report.trials == 22
    assert report.funnel.offers_sent == 22
