"""The experiments app's agent: the A/B testing step of the self-learning phase."""

from __future__ import annotations

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.experiments.models import ABTest
from apps.experiments.services import ab_tests_evaluate, hypothesis_start_next


@register
class ABTestingAgent(BaseAgent):
    name = "ab_testing"
    phase = 4
    description = (
        "Evaluates every running A/B test: checks the sample ratio (a mismatch marks the test broken), computes "
        "each metric's effect with an always-valid sequential test (CUPED where a pre-period exists), corrects "
        "across metrics and variants, and ends a test at a winner, at no difference by its horizon, or as "
        "broken; then starts the next queued hypothesis on every subject with no test running."
    )
    # The sequential test keeps a daily look honest; more often would only add rows to the series.
    default_schedule = "30 5 * * *"

    def execute(self, ctx: AgentContext) -> AgentResult:
        result = AgentResult()
        keys = ("evaluated", "decided.winner", "decided.no_difference", "decided.broken", "started")
        result.counters.update(dict.fromkeys(keys, 0))
        evaluations = ab_tests_evaluate(now=ctx.now)
        result.incr("evaluated", len(evaluations))
        decided = []
        for evaluation in evaluations:
            if evaluation.decision:
                result.incr(f"decided.{evaluation.decision}")
                decided.append(f"{evaluation.slug}: {evaluation.decision} ({evaluation.reason})")
        started = []
        for subject in ABTest.Subject.values:
            test = hypothesis_start_next(subject=subject, now=ctx.now)
            if test is not None:
                result.incr("started")
                started.append(test.slug)
        for line in decided:
            ctx.logger.info("ab_testing decided %s", line)
        result.summary = (
            f"{result.counters['evaluated']} tests evaluated: {result.counters['decided.winner']} with a winner, "
            f"{result.counters['decided.no_difference']} without a difference, "
            f"{result.counters['decided.broken']} broken; {result.counters['started']} started"
            + (f" ({', '.join(started)})" if started else "")
        )
        return result
