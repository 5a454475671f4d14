"""The platform's own performance over a window, as figures for ``performance_snapshots``: per agent (success
rate, duration p50/p95, retries), per circuit breaker (openings), per platform (publish latency p50/p95,
failures) and the Stripe webhook lag (p50/p95).

Each family is one query over the window's rows (``values_list``), and the percentiles are taken in Python
over those lists: the window bounds them (a day of agent runs, posts and Stripe events is thousands of rows at
most), and SQLite has no percentile function.

Breaker openings: ``circuit_breakers`` keeps only each breaker's latest opening (``opened_at``); no table
records every opening (the Prometheus counter ``circuit_breaker_opened`` lives in each process's memory). So
``breaker.openings`` is 1 when the latest opening falls in the window and 0 otherwise: a lower bound, which
still tells an alert rule "it opened" (``above 0``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from apps.agents.models import AgentRun, AgentRunStatus
from apps.billing.models import StripeEvent, StripeEventStatus
from apps.content.models import ContentDraft, DraftStatus, PublishedContent
from apps.core.models import CircuitBreakerState, Platform


@dataclass(frozen=True)
class Figure:
    """One performance figure: a ``performance_snapshots`` row without its time."""

    metric: str
    scope: str
    value: float
    sample_size: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between the closest ranks (numpy's default), so the
    p50 of an even count is the mean of the middle two."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _distribution(metric: str, scope: str, values: list[float], *, unit: str) -> list[Figure]:
    if not values:
        return []
    details = {"unit": unit, "max": max(values)}
    return [
        Figure(f"{metric}_p50_{unit}", scope, percentile(values, 0.5), len(values), details),
        Figure(f"{metric}_p95_{unit}", scope, percentile(values, 0.95), len(values), details),
    ]


def agent_figures(*, since: dt.datetime, until: dt.datetime) -> list[Figure]:
    """Per agent with a run finished in the window (or retrying, queued in it): ``agent.success_rate`` over
    its succeeded and failed runs (a skipped run is the framework declining to start it: a paused agent, an
    open breaker, a failed dependency, and says nothing of the agent), ``agent.duration_p50_ms`` and
    ``agent.duration_p95_ms`` over the same runs, and ``agent.retries``: runs that needed more than one
    attempt or are waiting for the next."""
    rows = AgentRun.objects.filter(
        Q(finished_at__gt=since, finished_at__lte=until)
        | Q(status=AgentRunStatus.RETRYING, queued_at__gt=since, queued_at__lte=until)
    ).values_list("agent_name", "status", "attempt", "duration_ms")
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    retries: Counter[str] = Counter()
    for name, status, attempt, duration_ms in rows:
        statuses[name][status] += 1
        if attempt > 1 or status == AgentRunStatus.RETRYING:
            retries[name] += 1
        if status in (AgentRunStatus.SUCCEEDED, AgentRunStatus.FAILED) and duration_ms is not None:
            durations[name].append(float(duration_ms))
    figures: list[Figure] = []
    for name in sorted(statuses):
        counts = statuses[name]
        scope = f"agent:{name}"
        succeeded, failed = counts[AgentRunStatus.SUCCEEDED], counts[AgentRunStatus.FAILED]
        if succeeded + failed:
            details = {"succeeded": succeeded, "failed": failed, "skipped": counts[AgentRunStatus.SKIPPED]}
            figures.append(
                Figure(
                    "agent.success_rate", scope, succeeded / (succeeded + failed), succeeded + failed, details
                )
            )
        figures += _distribution("agent.duration", scope, durations[name], unit="ms")
        figures.append(Figure("agent.retries", scope, float(retries[name]), sum(counts.values())))
    return figures


def breaker_figures(*, since: dt.datetime, until: dt.datetime) -> list[Figure]:
    """``breaker.openings`` per service that has a breaker: 1 when its latest opening is in the window (see the
    module's docstring for why it cannot count more)."""
    rows = CircuitBreakerState.objects.values_list("service", "state", "opened_at", "consecutive_failures")
    figures = []
    for service, state, opened_at, failures in sorted(rows):
        opened = opened_at is not None and since < opened_at <= until
        details = {
            "state": state,
            "opened_at": opened_at.isoformat() if opened_at else None,
            "consecutive_failures": failures,
            "counted_from": "latest opening only",
        }
        figures.append(Figure("breaker.openings", f"service:{service}", float(opened), None, details))
    return figures


def publish_figures(*, since: dt.datetime, until: dt.datetime) -> list[Figure]:
    """Per platform: ``publish.latency_p50_s`` / ``_p95_s``, from each post's planned time to the moment the
    platform took it (posts published in the window from a plan; the members' announcements have none), and
    ``publish.failures`` for every platform: drafts given up on in the window after at least one attempt.
    Drafts put back after a transient error, to be tried again, are in its details as ``retrying``."""
    latencies: dict[str, list[float]] = defaultdict(list)
    published = PublishedContent.objects.filter(
        published_at__gt=since, published_at__lte=until, draft__isnull=False
    ).values_list("platform", "published_at", "draft__plan__scheduled_for")
    for platform, published_at, scheduled_for in published:
        latencies[platform].append(max(0.0, (published_at - scheduled_for).total_seconds()))
    troubled = (
        ContentDraft.objects.filter(updated_at__gt=since, updated_at__lte=until, publish_attempts__gt=0)
        .filter(Q(status=DraftStatus.FAILED) | Q(status=DraftStatus.APPROVED, last_error__gt=""))
        .values_list("platform", "status")
    )
    failed: Counter[str] = Counter()
    retrying: Counter[str] = Counter()
    for platform, status in troubled:
        (failed if status == DraftStatus.FAILED else retrying)[platform] += 1
    figures: list[Figure] = []
    for platform in sorted({*Platform.values, *latencies, *failed}):
        scope = f"platform:{platform}"
        figures += _distribution("publish.latency", scope, latencies[platform], unit="s")
        details = {"published": len(latencies[platform]), "retrying": retrying[platform]}
        figures.append(Figure("publish.failures", scope, float(failed[platform]), None, details))
    return figures


def webhook_figures(*, since: dt.datetime, until: dt.datetime) -> list[Figure]:
    """``webhook.lag_p50_s`` / ``_p95_s`` (scope ``stripe``): from our receipt of each Stripe event to the end of
    its processing, for the events processed in the window; the events still waiting are in the details."""
    rows = StripeEvent.objects.filter(processed_at__gt=since, processed_at__lte=until).values_list(
        "received_at", "processed_at"
    )
    lags = [
        max(0.0, (processed - received).total_seconds())
        for received, processed in rows
        if processed is not None
    ]
    figures = _distribution("webhook.lag", "stripe", lags, unit="s")
    if not figures:
        return []
    waiting = StripeEvent.objects.filter(
        status__in=[StripeEventStatus.RECEIVED, StripeEventStatus.PROCESSING], received_at__lte=until
    ).count()
    return [
        Figure(f.metric, f.scope, f.value, f.sample_size, {**f.details, "waiting": waiting}) for f in figures
    ]


def performance_figures(*, since: dt.datetime, until: dt.datetime) -> list[Figure]:
    return [
        *agent_figures(since=since, until=until),
        *breaker_figures(since=since, until=until),
        *publish_figures(since=since, until=until),
        *webhook_figures(since=since, until=until),
    ]
