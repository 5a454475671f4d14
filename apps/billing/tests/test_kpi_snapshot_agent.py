"""The ``kpi_snapshot`` agent: the KPIs written as performance snapshots of the hour, a rerun within the hour
replacing them in place, the next hour starting a new set."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from pytest_django.fixtures import Settings

from apps.agents.models import AgentRun, AgentRunStatus, PerformanceSnapshot
from apps.agents.services import agent_run_create, agent_run_execute
from apps.billing.agents import KpiSnapshotAgent
from apps.billing.factories import ConversionAttemptFactory, PlanPriceFactory, SubscriptionFactory
from apps.billing.models import BillingInterval, ConversionStatus, Subscription, SubscriptionStatus

pytestmark = pytest.mark.django_db

HOUR = dt.datetime(2025, 3, 7, 10, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def _currency(settings: Settings) -> None:
    settings.BILLING_CURRENCY = "usd"


def _subscribe(
    amount: int, *, currency: str = "usd", interval: str = BillingInterval.MONTH, **fields: Any
) -> Subscription:
    price = PlanPriceFactory.create(amount_minor=amount, currency=currency, interval=interval)
    return SubscriptionFactory.create(plan=price.plan, price=price, **fields)


def _business() -> None:
    for subscription in (
        _subscribe(2900),
        _subscribe(12000, currency="eur", interval=BillingInterval.YEAR),
        _subscribe(2900, status=SubscriptionStatus.CANCELED, ended_at=HOUR - 3 * DAY),
    ):
        Subscription.objects.filter(pk=subscription.pk).update(created_at=HOUR - 90 * DAY)
    _subscribe(2900, status=SubscriptionStatus.TRIALING)
    ConversionAttemptFactory.create(
        sent_at=HOUR - 2 * DAY, clicked_at=HOUR - DAY, status=ConversionStatus.CLICKED
    )
    ConversionAttemptFactory.create(sent_at=HOUR - 4 * DAY)


def _run(at: dt.datetime) -> AgentRun:
    run = agent_run_create(agent_name="kpi_snapshot", trigger="schedule")
    with time_machine.travel(at, tick=False):
        agent_run_execute(run_id=run.pk)
    return AgentRun.objects.get(pk=run.pk)


def _snapshots() -> list[tuple[str, str, float, int | None, dt.datetime, dict[str, Any]]]:
    return list(
        PerformanceSnapshot.objects.order_by("captured_at", "metric", "scope").values_list(
            "metric", "scope", "value", "sample_size", "captured_at", "details"
        )
    )


def _expected(
    hour: dt.datetime, *, usd: float, active: float
) -> list[tuple[str, str, float, int | None, dt.datetime, dict[str, Any]]]:
    period = {"period_days": 30}
    return [
        ("active_members", "", active, None, hour, {}),
        ("churn_rate", "", 1 / 3, 3, hour, {**period, "ended": 1}),
        ("funnel.clicked", "", 1.0, None, hour, period),
        ("funnel.converted", "", 0.0, None, hour, period),
        ("funnel.offers_sent", "", 2.0, None, hour, period),
        ("mrr_minor", "currency:eur", 1000.0, None, hour, {}),
        ("mrr_minor", "currency:usd", usd, None, hour, {}),
        ("trials", "", 1.0, None, hour, {}),
    ]


def test_writes_the_kpis_as_snapshots_of_the_hour() -> None:
    _business()

    run = _run(HOUR + dt.timedelta(minutes=2))

    assert run.status == AgentRunStatus.SUCCEEDED
    assert run.counters == {"snapshots": 8}
    assert run.summary == (
        "8 snapshots for 2025-03-07 10:00 UTC: MRR (minor units) 1000 eur, 2900 usd, 2 active members, 1 trials"
    )
    assert _snapshots() == _expected(HOUR, usd=2900.0, active=2.0)


def test_a_rerun_in_the_same_hour_replaces_the_hours_figures() -> None:
    _business()
    _run(HOUR + dt.timedelta(minutes=2))
    first_ids = set(PerformanceSnapshot.objects.values_list("id", flat=True))
    _subscribe(4900)

    run = _run(HOUR + dt.timedelta(minutes=58))

    assert run.status == AgentRunStatus.SUCCEEDED
    assert _snapshots() == _expected(HOUR, usd=7800.0, active=3.0)
    assert set(PerformanceSnapshot.objects.values_list("id", flat=True)) == first_ids


def test_the_next_hour_starts_a_new_set() -> None:
    _business()
    _run(HOUR + dt.timedelta(minutes=2))

    _run(HOUR + dt.timedelta(hours=1, minutes=2))

    assert _snapshots() == _expected(HOUR, usd=2900.0, active=2.0) + _expected(
        HOUR + dt.timedelta(hours=1), usd=2900.0, active=2.0
    )


def test_an_empty_business_still_records_its_zeros_but_no_churn_rate() -> None:
    _run(HOUR)

    assert [(metric, scope, value) for metric, scope, value, *_ in _snapshots()] == [
        ("active_members", "", 0.0),
        ("funnel.clicked", "", 0.0),
        ("funnel.converted", "", 0.0),
        ("funnel.offers_sent", "", 0.0),
        ("mrr_minor", "currency:usd", 0.0),
        ("trials", "", 0.0),
    ]


def test_is_the_hourly_performance_analytics_agent() -> None:
    assert (KpiSnapshotAgent.phase, KpiSnapshotAgent.default_schedule, KpiSnapshotAgent.services) == (
        4,
        "2 * * * *",
        (),
    )
