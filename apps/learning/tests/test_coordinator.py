"""The feedback-loop coordinator, run through the agent framework: a decided A/B test becomes strategy changes
that apply to the agent that owns what the test varied (creation tone, strategist formats and posting times,
the offers' promotion code), each test once; a frozen loop applies nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from apps.agents import registry
from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, RunTrigger
from apps.agents.services import agent_run_create, agent_run_execute
from apps.experiments.factories import ABTestFactory, ABTestVariantFactory
from apps.experiments.models import ABTest, Hypothesis
from apps.learning.factories import StrategyChangeFactory
from apps.learning.models import StrategyChange
from apps.learning.services import learning_freeze

pytestmark = pytest.mark.django_db


def _decided_test(
    slug: str, *, subject: str = ABTest.Subject.POST, dimension: str | None, payload: dict[str, Any]
) -> ABTest:
    test = ABTestFactory.create(
        slug=slug,
        name=f"Test {slug}",
        subject=subject,
        status=ABTest.Status.COMPLETED,
        decision=ABTest.Decision.WINNER,
        decided_at=timezone.now() - dt.timedelta(hours=1),
        result={
            "metrics": {
                "engagement_rate": {
                    "comparisons": {"B": {"effect": 0.183, "adjusted_p_value": 0.0123, "ci": [0.05, 0.31]}}
                }
            }
        },
    )
    ABTestVariantFactory.create(test=test, key="A", name="Control", is_control=True, payload={})
    test.winner = ABTestVariantFactory.create(
        test=test, key="B", name="Challenger", is_control=False, payload=payload
    )
    test.save(update_fields=["winner"])
    if dimension is not None:
        Hypothesis.objects.create(
            title=test.name, subject=subject, dimension=dimension, metric="engagement_rate", test=test
        )
    return test


def _run_loop(**parameters: Any) -> AgentRun:
    if parameters:
        AgentConfig.objects.update_or_create(agent_name="feedback_loop", defaults={"parameters": parameters})
    run = agent_run_create(agent_name="feedback_loop", trigger=RunTrigger.MANUAL)
    agent_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == AgentRunStatus.SUCCEEDED, (run.error, run.traceback)
    return run


def _parameters(agent_name: str) -> dict[str, Any]:
    return AgentConfig.objects.get(agent_name=agent_name).parameters


def test_a_decided_tone_test_becomes_the_creation_agents_tone() -> None:
    payload = {"opening": "question", "emoji": True}
    _decided_test("post-opening", dimension=Hypothesis.Dimension.TONE, payload=payload)
    creation = registry.get("content_creation")

    run = _run_loop()

    presets = {**creation.default_parameters["tones"], "post-opening": payload}
    assert _parameters("content_creation") == {"tones": presets, "tone": "post-opening"}
    changes = list(StrategyChange.objects.order_by("pk"))
    assert [(c.agent_name, c.parameter, c.source, c.status, c.cycle) for c in changes] == [
        ("content_creation", "tones", "ab_test", "applied", run.pk),
        ("content_creation", "tone", "ab_test", "applied", run.pk),
    ]
    assert (changes[1].before, changes[1].after) == (creation.default_parameters["tone"], "post-opening")
    assert changes[0].reason == (
        "A/B test 'Test post-opening' (post-opening) chose 'Challenger' (B) on engagement_rate "
        "(effect +18.3%, adjusted p 0.0123)"
    )
    assert changes[0].evidence["ab_test"] == "post-opening"
    assert changes[0].evidence["comparison"] == {
        "effect": 0.183,
        "adjusted_p_value": 0.0123,
        "ci": [0.05, 0.31],
    }
    assert (run.counters["decided_tests"], run.counters["proposed"], run.counters["applied"]) == (1, 2, 2)
    assert run.summary == (
        "1 decided A/B tests, 2 proposals; 2 changes applied (content_creation.tone, content_creation.tones), "
        "0 skipped, 0 waiting"
    )


def test_format_send_time_and_discount_winners_reach_their_agents() -> None:
    _decided_test(
        "x-threads", dimension=Hypothesis.Dimension.FORMAT, payload={"format": "x_thread", "platform": "x"}
    )
    # No hypothesis: the dimension is read from the payload.
    _decided_test("evening-telegram", dimension=None, payload={"slots": {"telegram": ["18:00", "21:00"]}})
    _decided_test(
        "bigger-discount",
        subject=ABTest.Subject.OFFER,
        dimension=Hypothesis.Dimension.OFFER_DISCOUNT,
        payload={"promotion_code": "WELCOME30"},
    )

    _run_loop()

    strategist = _parameters("content_strategist")
    assert strategist["formats"] == {
        "x": "x_thread",
        "telegram": "telegram_chart_post",
        "discord": "discord_embed",
    }
    assert strategist["slots"]["telegram"] == ["18:00", "21:00"]
    assert strategist["slots"]["x"] == registry.get("content_strategist").default_parameters["slots"]["x"]
    assert _parameters("conversion") == {"promotion_code": "WELCOME30"}
    assert set(StrategyChange.objects.values_list("status", flat=True)) == {"applied"}


def test_a_test_becomes_proposals_once_and_a_control_win_changes_nothing() -> None:
    _decided_test(
        "x-threads", dimension=Hypothesis.Dimension.FORMAT, payload={"format": "x_thread", "platform": "x"}
    )
    control_won = _decided_test(
        "control-wins", dimension=Hypothesis.Dimension.TONE, payload={"opening": "question"}
    )
    control_won.winner = control_won.variants.get(key="A")
    control_won.save(update_fields=["winner"])
    _run_loop()
    # The next run reads the same decisions again (a previous run failed, say): nothing new is proposed.
    AgentRun.objects.update(status=AgentRunStatus.FAILED)

    second = _run_loop()

    assert StrategyChange.objects.count() == 1
    assert (second.counters["decided_tests"], second.counters["proposed"], second.counters["applied"]) == (
        2,
        0,
        0,
    )


def test_the_cycle_applies_at_most_max_changes_each_a_bounded_step() -> None:
    first = StrategyChangeFactory.create(
        agent_name="content_strategist", parameter="weights", target={"confidence": 1.0}
    )
    StrategyChangeFactory.create(agent_name="content_strategist", parameter="min_priority", target=0.5)
    StrategyChangeFactory.create(
        agent_name="content_strategist", parameter="recency_half_life_hours", target=8.0
    )

    run = _run_loop(max_changes=1, max_step=0.1)

    applied = StrategyChange.objects.get(status="applied")
    weights = {"confidence": 0.55, "insight_type": 0.2, "recency": 0.2, "platform": 0.1}
    assert (applied.pk, applied.after) == (first.pk, weights)
    assert StrategyChange.objects.filter(status="proposed").count() == 2
    assert (run.counters["applied"], run.counters["waiting"]) == (1, 2)


def test_a_frozen_loop_applies_nothing_and_says_so() -> None:
    _decided_test("post-opening", dimension=Hypothesis.Dimension.TONE, payload={"opening": "question"})
    learning_freeze(frozen=True, user=None, reason="launch week")
    configs = list(AgentConfig.objects.values("agent_name", "parameters"))

    run = _run_loop()

    assert list(StrategyChange.objects.values_list("status", "skip_reason")) == [
        ("skipped", "frozen"),
        ("skipped", "frozen"),
    ]
    assert [c for c in AgentConfig.objects.values("agent_name", "parameters") if c["parameters"]] == [
        c for c in configs if c["parameters"]
    ]
    assert (run.counters["applied"], run.counters["skipped"], run.counters["frozen"]) == (0, 2, 2)
    assert (
        run.summary == "Learning is frozen: 1 decided A/B tests, 2 proposals; 2 changes skipped, none applied"
    )


def test_its_dependencies_are_the_other_phase_4_agents() -> None:
    agent = registry.get("feedback_loop")
    assert (agent.phase, agent.depends_on) == (4, ("ab_testing", "strategy_tuning", "performance_analytics"))
    assert agent.validate_parameters({}) == {"max_changes": 5, "max_step": 0.2}
