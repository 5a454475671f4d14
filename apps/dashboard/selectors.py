"""Reads behind the operator dashboard: bounded lists with only the columns the page shows, so a template
cannot add queries and the page costs the same however many rows the tables hold."""

from __future__ import annotations

from apps.agents.models import AgentRun, PipelineRun
from apps.content.selectors import content_draft_waiting_count
from apps.core.models import CircuitBreakerState
from apps.market.models import Insight
from apps.market.selectors import insight_list

RECENT_AGENT_RUNS = 20
RECENT_PIPELINE_RUNS = 10
LATEST_INSIGHTS = 10
# One breaker per outside service: a handful; the cap only guards the page against a runaway table.
MAX_BREAKERS = 50


def agent_run_list_recent(*, limit: int = RECENT_AGENT_RUNS) -> list[AgentRun]:
    """The newest agent runs, newest first (tracebacks and counters are the admin's to show)."""
    return list(
        AgentRun.objects.only(
            "id",
            "agent_name",
            "status",
            "trigger",
            "attempt",
            "pipeline_run_id",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "summary",
            "error",
            "degraded_reason",
        ).order_by("-queued_at", "-id")[:limit]
    )


def pipeline_run_list_recent(*, limit: int = RECENT_PIPELINE_RUNS) -> list[PipelineRun]:
    return list(
        PipelineRun.objects.only(
            "id",
            "name",
            "status",
            "trigger",
            "agents",
            "queued_at",
            "started_at",
            "finished_at",
            "error",
            "degraded_reason",
        ).order_by("-queued_at", "-id")[:limit]
    )


def circuit_breaker_list() -> list[CircuitBreakerState]:
    """Every outside service's breaker (one row per service, a handful), open ones first."""
    breakers = list(CircuitBreakerState.objects.order_by("service")[:MAX_BREAKERS])
    order = {CircuitBreakerState.State.OPEN: 0, CircuitBreakerState.State.HALF_OPEN: 1}
    return sorted(breakers, key=lambda b: (order.get(CircuitBreakerState.State(b.state), 2), b.service))


def insight_list_latest(*, limit: int = LATEST_INSIGHTS) -> list[Insight]:
    return list(
        insight_list().only(
            "id", "type", "symbol", "timeframe", "confidence", "headline", "status", "detected_at"
        )[:limit]
    )


def draft_waiting_count() -> int:
    """Drafts waiting for an operator's approval (one COUNT)."""
    return content_draft_waiting_count()
