"""Reads behind the dashboard's self-learning page: the A/B tests with their results and exposure over time,
the bandit's weights over time, the strategy changes, the freeze switch, the agents' performance and the
alerts. A fixed number of queries whatever the tables hold; long series are thinned to a chart's worth of
points."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max, Prefetch, Q
from django.utils import timezone

from apps.agents.models import PerformanceSnapshot
from apps.dashboard.charts import Interval, Series
from apps.experiments.models import ABTest, ABTestVariant
from apps.learning.models import Alert, LearningControl, StrategyChange

SHOWN_TESTS = 6
SHOWN_CHANGES = 12
SHOWN_ALERTS = 8
BANDIT_ARMS_PER_PLATFORM = 4
SERIES_DAYS = 21
MAX_POINTS = 120


@dataclass
class ABTestView:
    test: ABTest
    variants: list[ABTestVariant]
    confidence: str
    # The primary metric's comparisons (treatment vs control), then each secondary metric's.
    intervals: dict[str, list[Interval]] = field(default_factory=dict)
    exposures: list[Series] = field(default_factory=list)
    # The result table, formatted: metric, variant, n, effect, interval, p, chance_to_win, significant.
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Drawn by the view (apps.dashboard.charts).
    exposure_chart: str = ""
    effect_charts: list[tuple[str, str]] = field(default_factory=list)


def _thin(points: list[tuple[dt.datetime, float]]) -> list[tuple[dt.datetime, float]]:
    """At most MAX_POINTS, evenly spread, always keeping the last."""
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    kept = [points[int(i * step)] for i in range(MAX_POINTS - 1)]
    return [*kept, points[-1]]


def _series(
    metric: str, scopes: Sequence[str], since: dt.datetime
) -> dict[str, list[tuple[dt.datetime, float]]]:
    by_scope: dict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
    rows = (
        PerformanceSnapshot.objects.filter(metric=metric, scope__in=list(scopes), captured_at__gte=since)
        .order_by("captured_at")
        .values_list("scope", "captured_at", "value")
    )
    for scope, when, value in rows:
        by_scope[scope].append((when, value))
    return {scope: _thin(points) for scope, points in by_scope.items()}


def _signed_percent(value: object) -> str:
    return f"{value:+.1%}" if isinstance(value, int | float) else "—"


def ab_test_views(*, now: dt.datetime | None = None, limit: int = SHOWN_TESTS) -> list[ABTestView]:
    """Running tests first, then the latest decided ones; three queries."""
    now = now or timezone.now()
    tests = list(
        ABTest.objects.exclude(status=ABTest.Status.DRAFT)
        .select_related("winner")
        .prefetch_related(Prefetch("variants", queryset=ABTestVariant.objects.order_by("key")))
        .order_by(
            # Running before paused before completed, newest first within each.
            "-status",
            "-started_at",
            "-pk",
        )[: limit * 3]
    )
    tests.sort(key=lambda t: (t.status != ABTest.Status.RUNNING, -(t.started_at or now).timestamp()))
    tests = tests[:limit]
    scopes = {f"test:{t.slug}|variant:{v.key}": (t.pk, v.key) for t in tests for v in t.variants.all()}
    exposure = _series("experiment.exposures", list(scopes), now - dt.timedelta(days=SERIES_DAYS * 2))
    views = []
    for test in tests:
        variants = list(test.variants.all())
        view = ABTestView(test=test, variants=variants, confidence=f"{1 - test.alpha:.0%}")
        for variant in variants:
            points = exposure.get(f"test:{test.slug}|variant:{variant.key}", [])
            view.exposures.append(Series(label=f"{variant.key} · {variant.name}", points=points))
        metrics = (test.result or {}).get("metrics", {})
        for metric in test.metrics:
            figures = metrics.get(metric) or {}
            intervals = []
            for key, comparison in sorted((figures.get("comparisons") or {}).items()):
                low, high = comparison.get("ci") or [0.0, 0.0]
                intervals.append(
                    Interval(
                        label=f"{key} vs control",
                        effect=float(comparison.get("effect", 0.0)),
                        low=float(low),
                        high=float(high),
                        significant=bool(comparison.get("significant")),
                        note=f"chance to win {float(comparison.get('chance_to_win', 0.5)):.0%}",
                    )
                )
                n = (figures.get("variants") or {}).get(key, {}).get("n")
                p_value = comparison.get("adjusted_p_value")
                chance = comparison.get("chance_to_win")
                view.rows.append(
                    {
                        "metric": metric,
                        "variant": key,
                        "n": f"{n:,}" if isinstance(n, int) else "—",
                        "effect": _signed_percent(comparison.get("effect")),
                        "interval": f"{_signed_percent(low)} to {_signed_percent(high)}",
                        "p": f"{p_value:.4f}" if isinstance(p_value, int | float) else "—",
                        "chance_to_win": f"{chance:.0%}" if isinstance(chance, int | float) else "—",
                        "significant": bool(comparison.get("significant")),
                    }
                )
            view.intervals[metric] = intervals
        views.append(view)
    return views


def bandit_series(*, now: dt.datetime | None = None) -> dict[str, list[Series]]:
    """Per platform, the arms the bandit favours now, with their weights over the last weeks; two queries."""
    now = now or timezone.now()
    latest = PerformanceSnapshot.objects.filter(metric="bandit.weight").aggregate(at=Max("captured_at"))["at"]
    if latest is None:
        return {}
    current = PerformanceSnapshot.objects.filter(metric="bandit.weight", captured_at=latest).values_list(
        "scope", "value"
    )
    by_platform: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for scope, value in current:
        arm = scope.removeprefix("arm:")
        by_platform[arm.split("|")[0]].append((value, scope))
    top = {
        platform: [scope for _, scope in sorted(arms, reverse=True)[:BANDIT_ARMS_PER_PLATFORM]]
        for platform, arms in sorted(by_platform.items())
    }
    points = _series(
        "bandit.weight", [s for scopes in top.values() for s in scopes], now - dt.timedelta(days=SERIES_DAYS)
    )
    charts = {
        platform: [
            Series(label=" · ".join(scope.removeprefix("arm:").split("|")[1:]), points=points.get(scope, []))
            for scope in scopes
        ]
        for platform, scopes in top.items()
    }
    return charts


def strategy_change_list_recent(*, limit: int = SHOWN_CHANGES) -> list[StrategyChange]:
    return list(StrategyChange.objects.order_by("-created_at", "-pk")[:limit])


def learning_control() -> LearningControl | None:
    return LearningControl.objects.order_by("pk").first()


def alert_list_recent(*, limit: int = SHOWN_ALERTS) -> list[Alert]:
    return list(Alert.objects.select_related("rule").order_by("-fired_at", "-pk")[:limit])


@dataclass(frozen=True)
class AgentPerformance:
    agent: str
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    retries: float | None

    @property
    def success_text(self) -> str:
        return f"{self.success_rate:.0%}" if self.success_rate is not None else "—"

    @property
    def p50_text(self) -> str:
        return f"{self.p50_ms:,.0f} ms" if self.p50_ms is not None else "—"

    @property
    def p95_text(self) -> str:
        return f"{self.p95_ms:,.0f} ms" if self.p95_ms is not None else "—"

    @property
    def retries_text(self) -> str:
        return f"{self.retries:,.0f}" if self.retries is not None else "—"


def agent_performance_latest() -> list[AgentPerformance]:
    """The performance analytics agent's latest reading per agent; two queries."""
    metrics = ("agent.success_rate", "agent.duration_p50_ms", "agent.duration_p95_ms", "agent.retries")
    latest = PerformanceSnapshot.objects.filter(metric="agent.success_rate").aggregate(at=Max("captured_at"))[
        "at"
    ]
    if latest is None:
        return []
    rows = PerformanceSnapshot.objects.filter(
        Q(metric__in=metrics), captured_at=latest, scope__startswith="agent:"
    ).values_list("metric", "scope", "value")
    figures: dict[str, dict[str, float]] = defaultdict(dict)
    for metric, scope, value in rows:
        figures[scope.removeprefix("agent:")][metric] = value
    return [
        AgentPerformance(
            agent=agent,
            success_rate=values.get("agent.success_rate"),
            p50_ms=values.get("agent.duration_p50_ms"),
            p95_ms=values.get("agent.duration_p95_ms"),
            retries=values.get("agent.retries"),
        )
        for agent, values in sorted(figures.items())
    ]
