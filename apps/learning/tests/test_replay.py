"""``replay_fortnight``: the real agents over simulated days on the demo world, ending with the loop's
traces everywhere an operator looks: agent runs at the simulated times, posts, exposures and outcomes,
bandit weights, applied strategy changes and the agents' performance snapshots."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, PerformanceSnapshot
from apps.content.models import PublishedContent
from apps.dashboard.demo import seed_demo
from apps.experiments.models import Outcome
from apps.learning.management.commands.replay_fortnight import strategy_expected_rate
from apps.learning.models import StrategyChange

pytestmark = pytest.mark.django_db


# The command sends each pipeline when its transaction commits, as production does: real commits.
@pytest.mark.django_db(transaction=True)
def test_two_replayed_days_leave_the_loop_at_work() -> None:
    seed_demo()
    before = timezone.now()
    out = StringIO()

    call_command("replay_fortnight", days=2, step_hours=3, stdout=out)

    text = out.getvalue()
    assert "Replaying 2 days" in text
    runs = AgentRun.objects.filter(queued_at__lt=before - dt.timedelta(hours=1))
    # The funnel ran at the simulated times, and every learning agent once per simulated day.
    assert runs.filter(agent_name="publishing").count() == 16
    for name in ("ab_testing", "strategy_tuning", "performance_analytics", "feedback_loop"):
        assert runs.filter(agent_name=name).count() == 2, name
    assert not AgentRun.objects.filter(status=AgentRunStatus.FAILED).exists()
    replayed = PublishedContent.objects.filter(
        published_at__lt=before - dt.timedelta(hours=1), draft__isnull=False
    )
    assert replayed.exists()
    # Posts in the running test were exposed and measured.
    assert Outcome.objects.filter(
        metric="engagement_rate", assignment__subject_key__startswith="plan:"
    ).exists()
    assert PerformanceSnapshot.objects.filter(metric="bandit.weight").exists()
    assert PerformanceSnapshot.objects.filter(metric="agent.success_rate", scope="agent:publishing").exists()
    assert StrategyChange.objects.filter(status=StrategyChange.Status.APPLIED).exists()
    strategist = AgentConfig.objects.get(agent_name="content_strategist")
    assert strategist.parameters["arm_weights"]
    assert "expected engagement under the learnt weights" in text

    # make run's guard: a second start replays nothing.
    runs_before = AgentRun.objects.count()
    again = StringIO()
    call_command("replay_fortnight", days=2, step_hours=3, unless_replayed=True, stdout=again)
    assert "nothing replayed" in again.getvalue()
    assert AgentRun.objects.count() == runs_before


def test_the_expected_rate_of_a_strategy_weighs_its_arms() -> None:
    weights = {"x": {"x_thread|evening|question": 3.0, "single_post|morning|plain": 1.0}}
    tones = {"question": {"opening": "question"}, "plain": {}}

    learnt, even, best = strategy_expected_rate(weights, tones)["x"]

    good = 0.03 * 1.2 * 1.25 * 1.3
    poor = 0.03
    assert best == pytest.approx(good)
    assert even == pytest.approx((good + poor) / 2)
    assert learnt == pytest.approx((3 * good + poor) / 4)


def test_refusals(settings: object) -> None:
    with pytest.raises(CommandError, match="--days"):
        call_command("replay_fortnight", days=0)
    with pytest.raises(CommandError, match="--step-hours"):
        call_command("replay_fortnight", step_hours=12)
    settings.PRODUCTION = True  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match="production"):
        call_command("replay_fortnight")
