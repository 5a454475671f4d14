"""The KPIs as performance snapshots: one row per metric and scope for each hour, so the dashboard and the
self-learning agents read the KPIs' history from ``performance_snapshots``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings

from apps.agents.models import PerformanceSnapshot
from apps.billing.kpis import KpiReport


def snapshot_hour(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC hour ``moment`` falls in: the snapshots' time key."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def kpi_snapshots_record(*, report: KpiReport) -> int:
    """Write the report's KPIs as snapshots of the hour it was taken in, replacing what an earlier run in the
    same hour wrote (one upsert on the ``performance_snapshots_key``); returns the number of rows written.

    Rows: ``mrr_minor`` per currency (scope ``currency:<code>``; the billing currency always, at 0 when nobody
    pays), ``active_members``, ``trials``, ``churn_rate`` (only when anyone was paying at the period start;
    ``sample_size`` is that number) and ``funnel.offers_sent``, ``funnel.clicked``, ``funnel.converted``.
    """
    captured_at = snapshot_hour(report.as_of)
    period: dict[str, Any] = {"period_days": report.period_days}
    rows: list[tuple[str, str, float, int | None, dict[str, Any]]] = []
    mrr = {settings.BILLING_CURRENCY: 0, **report.mrr_minor}
    for currency, amount in sorted(mrr.items()):
        rows.append(("mrr_minor", f"currency:{currency}", float(amount), None, {}))
    rows.append(("active_members", "", float(report.active_members), None, {}))
    rows.append(("trials", "", float(report.trials), None, {}))
    churn = report.churn
    if churn.rate is not None:
        rows.append(
            ("churn_rate", "", churn.rate, churn.subscriptions_at_start, {**period, "ended": churn.ended})
        )
    funnel = report.funnel
    for step, count in (
        ("offers_sent", funnel.offers_sent),
        ("clicked", funnel.clicked),
        ("converted", funnel.converted),
    ):
        rows.append((f"funnel.{step}", "", float(count), None, period))
    PerformanceSnapshot.objects.bulk_create(
        [
            PerformanceSnapshot(
                metric=metric,
                scope=scope,
                value=value,
                sample_size=sample_size,
                captured_at=captured_at,
                details=details,
            )
            for metric, scope, value, sample_size, details in rows
        ],
        update_conflicts=True,
        unique_fields=["metric", "scope", "captured_at"],
        update_fields=["value", "sample_size", "details"],
    )
    return len(rows)
