"""The learning app's phase 4 agents: performance analytics (the platform's own figures and the alerts on
them) and the feedback-loop coordinator (what the other phase 4 agents learnt, applied to phases 1-3)."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from django.core.exceptions import ValidationError

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.experiments.selectors import ab_test_list_decided
from apps.learning import (
    selectors,
    services,
    tuning,  # noqa: F401  (registers strategy_tuning)
)
from apps.learning.models import StrategyChange
from apps.learning.performance import performance_figures

# The longest look back: a month of agent runs, posts and Stripe events still fits in memory.
MAX_WINDOW_HOURS = 24 * 31


@register
class PerformanceAnalyticsAgent(BaseAgent):
    name = "performance_analytics"
    phase = 4
    description = (
        "Measures the platform itself over the last hours: each agent's success rate, duration p50/p95 and "
        "retries, circuit breaker openings, each platform's publish latency and failures, and the Stripe "
        "webhook lag, as performance snapshots; raises the operators' alert rules that cross their threshold "
        "on the dashboard and in the operators' Discord or Telegram channel."
    )
    default_schedule = "*/15 * * * *"
    default_parameters: ClassVar[dict[str, Any]] = {
        # The figures cover this many hours up to the run.
        "window_hours": 24,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        if not 1 <= params["window_hours"] <= MAX_WINDOW_HOURS:
            raise ValidationError(f"window_hours must be from 1 to {MAX_WINDOW_HOURS}")
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        now = ctx.now
        figures = performance_figures(since=now - dt.timedelta(hours=params["window_hours"]), until=now)
        # Keyed by the run's minute: a second run in the same minute replaces the figures, a later one adds.
        captured_at = now.replace(second=0, microsecond=0)
        written = services.performance_snapshots_record(figures=figures, captured_at=captured_at)
        alerts = services.alerts_fire(figures=figures, now=now)
        undelivered = sum(
            1 for alert in alerts for outcome in alert.delivered.values() if outcome.get("status") != "sent"
        )
        result = AgentResult()
        result.counters.update(
            {"snapshots": written, "alerts": len(alerts), "deliveries_failed": undelivered}
        )
        agents = len({f.scope for f in figures if f.metric == "agent.retries"})
        result.summary = (
            f"{written} performance snapshots over {params['window_hours']} h ({agents} agents); "
            f"{len(alerts)} alerts fired, {undelivered} deliveries failed"
        )
        return result


@register
class FeedbackLoopAgent(BaseAgent):
    name = "feedback_loop"
    phase = 4
    description = (
        "Closes the loop after the other phase 4 agents: turns newly decided A/B tests into strategy changes "
        "(creation tone, strategist formats and posting times, the offers' promotion code) and applies the "
        "waiting changes, the bandit's weights included, a few per cycle and each only part of the way, every "
        "one recorded with its reason, evidence and before/after values; nothing while learning is frozen."
    )
    depends_on = ("ab_testing", "strategy_tuning", "performance_analytics")
    default_parameters: ClassVar[dict[str, Any]] = {
        # Changes applied per cycle at most; the rest wait for the next.
        "max_changes": 5,
        # How far a number may move in one cycle, relative to its value (absolute from 0).
        "max_step": 0.2,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        if params["max_changes"] < 0:
            raise ValidationError("max_changes must be 0 or more")
        if not 0 < params["max_step"] <= 1:
            raise ValidationError("max_step must be more than 0 and at most 1")
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        since = selectors.agent_last_success_started_at(agent_name=self.name, exclude_run_id=ctx.run_id)
        decided = ab_test_list_decided(since=since)
        proposals = services.strategy_changes_propose_from_ab_tests(tests=decided)
        frozen = services.learning_control_get().frozen
        settled = services.strategy_changes_apply(
            cycle=ctx.run_id, now=ctx.now, max_changes=params["max_changes"], max_step=params["max_step"]
        )
        applied = [c for c in settled if c.status == StrategyChange.Status.APPLIED]
        skipped = [c for c in settled if c.status == StrategyChange.Status.SKIPPED]
        waiting = selectors.strategy_change_list_proposed().count()
        result = AgentResult()
        result.counters.update(
            {
                "decided_tests": len(decided),
                "proposed": len(proposals.proposed),
                "applied": len(applied),
                "skipped": len(skipped),
                "frozen": len(skipped) if frozen else 0,
                "waiting": waiting,
            }
        )
        found = f"{len(decided)} decided A/B tests, {len(proposals.proposed)} proposals"
        if frozen:
            result.summary = f"Learning is frozen: {found}; {len(skipped)} changes skipped, none applied"
            return result
        changed = ", ".join(sorted({f"{c.agent_name}.{c.parameter}" for c in applied})) or "nothing"
        result.summary = (
            f"{found}; {len(applied)} changes applied ({changed}), {len(skipped)} skipped, {waiting} waiting"
        )
        return result
