"""The strategy tuning agent end to end: measured posts on arms become proposed arm and platform weights
favouring the better arms (A/B winners as priors), the bandit's weights a series, offers per score band a
proposed minimum score; without evidence, nothing is proposed and the summary says why."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.agents.base import AgentContext, AgentResult
from apps.agents.models import PerformanceSnapshot
from apps.billing.factories import ConversionAttemptFactory
from apps.billing.models import ConversionStatus
from apps.content.factories import ContentDraftFactory, ContentPlanFactory, PublishedContentFactory
from apps.content.models import Audience, PublishedContent
from apps.experiments.factories import ABTestFactory, ABTestVariantFactory
from apps.experiments.models import ABTest, ABTestVariant
from apps.learning.models import StrategyChange
from apps.learning.tuning import StrategyTuningAgent

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 20, 12, 0, 30, tzinfo=dt.UTC)
GOOD = "x_thread|evening|question"
POOR = "single_post|morning|plain"


def _run(**parameters: Any) -> AgentResult:
    ctx = AgentContext(
        run_id=1, agent_name=StrategyTuningAgent.name, trigger="manual", now=NOW, parameters=parameters
    )
    return StrategyTuningAgent().execute(ctx)


def _post(
    *,
    platform: str = "x",
    format: str = "single_post",
    hour: int = 9,
    days_ago: int = 1,
    rate: float | None = 0.03,
    arm_tone: str | None = None,
    variant: ABTestVariant | None = None,
    **fields: Any,
) -> PublishedContent:
    published_at = (NOW - dt.timedelta(days=days_ago)).replace(hour=hour, minute=0, second=5)
    weights: dict[str, Any] = {"confidence": 0.5}
    if arm_tone is not None:
        weights["arm"] = {"key": f"{format}|x|{arm_tone}", "format": format, "bucket": "x", "tone": arm_tone}
    plan = ContentPlanFactory.create(
        platform=platform, format=format, scheduled_for=published_at, weights=weights
    )
    draft = ContentDraftFactory.create(plan=plan, variant=variant)
    return PublishedContentFactory.create(
        draft=draft,
        platform=platform,
        format=format,
        published_at=published_at,
        engagement_rate=rate,
        **fields,
    )


@pytest.fixture(autouse=True)
def _quiet_nights(settings: SettingsWrapper) -> None:
    settings.CONTENT_QUIET_HOURS = "0-6"


def _proposed(parameter: str) -> tuple[StrategyChange, dict[str, Any]]:
    """The waiting proposal for the parameter, and its target table."""
    change = StrategyChange.objects.get(parameter=parameter, status=StrategyChange.Status.PROPOSED)
    assert isinstance(change.target, dict)
    return change, change.target


def test_measured_posts_become_arm_weights_favouring_the_better_arm() -> None:
    for day in range(1, 11):
        _post(format="x_thread", hour=19, days_ago=day, rate=0.08 + day / 1000, arm_tone="question")
        _post(format="single_post", hour=9, days_ago=day, rate=0.02 + day / 1000, arm_tone="plain")
        _post(
            platform="telegram", format="telegram_chart_post", hour=12, days_ago=day, rate=0.01 + day / 2000
        )
    # Not evidence: unmeasured, for members only, older than the window.
    _post(rate=None)
    _post(audience=Audience.MEMBERS, rate=0.9)
    _post(days_ago=40, rate=0.9)

    result = _run()

    assert result.counters["posts"] == 30
    assert result.counters["posts.outside_arms"] == 0
    change, target = _proposed("arm_weights")
    assert (change.agent_name, change.source) == ("content_strategist", StrategyChange.Source.STRATEGY_TUNING)
    x = target["x"]
    # X: 2 formats x 3 times of day with slots outside the quiet hours x 4 tone presets.
    assert len(x) == 24
    assert max(x, key=x.get) == GOOD
    assert x[GOOD] > 0.7
    assert min(x.values()) >= 0.01
    assert sum(x.values()) == pytest.approx(1.0, abs=1e-3)
    # Telegram: 3 formats x 3 times of day x 4 presets; discord has no posts, so no arm weights.
    assert len(target["telegram"]) == 36
    assert set(target) == {"x", "telegram"}
    arms = change.evidence["arms"]
    assert arms[f"x|{GOOD}"]["n"] == 10
    assert arms[f"x|{POOR}"]["n"] == 10
    assert arms["x|x_thread|morning|punchy"]["n"] == 0
    assert arms[f"x|{GOOD}"]["mean"] > arms["x|x_thread|morning|punchy"]["mean"] > arms[f"x|{POOR}"]["mean"]
    assert change.evidence["posts"] == 30
    assert change.reason.startswith("Thompson sampling over 30 measured posts of the last 28 days")

    platforms, platform_weights = _proposed("platform_weights")
    assert platform_weights["x"] == 1.0
    # Telegram's posts engage about a quarter as much as X's; two pseudo-posts at the pooled mean temper that.
    assert 0.25 < platform_weights["telegram"] < 0.4
    assert platform_weights["discord"] == 0.6  # no posts: as it was
    assert platforms.evidence["platforms"]["telegram"]["n"] == 10

    series = PerformanceSnapshot.objects.filter(metric="bandit.weight")
    assert series.count() == 24 + 36 == result.counters["snapshots"]
    good = series.get(scope=f"arm:x|{GOOD}")
    assert good.captured_at == NOW.replace(second=0)
    assert good.value == pytest.approx(x[GOOD], abs=1e-4)
    assert good.sample_size == 10
    assert result.counters["proposed"] == 2
    assert result.summary.startswith(f"arm weights from 30 posts: best x {GOOD} ")


def test_running_again_supersedes_the_waiting_proposal_and_rewrites_the_series() -> None:
    for day in range(1, 11):
        _post(format="x_thread", hour=19, days_ago=day, rate=0.08, arm_tone="question")

    _run()
    _run()

    statuses = sorted(StrategyChange.objects.filter(parameter="arm_weights").values_list("status", flat=True))
    assert statuses == ["proposed", "superseded"]
    assert PerformanceSnapshot.objects.filter(metric="bandit.weight").count() == 24


def test_a_post_counts_for_the_preset_its_plan_drew() -> None:
    test = ABTestFactory.create()
    asked = ABTestVariantFactory.create(test=test, key="B", payload={"opening": "question"})
    stated = ABTestVariantFactory.create(test=test, key="A", payload={"opening": "statement"})
    for day in range(1, 9):
        # The arm said plain; the running test's variant wrote its keys over it, alike for every arm.
        _post(hour=9, days_ago=day, arm_tone="plain", variant=asked if day % 2 else stated)
    _post(hour=9)  # no arm: the default preset
    _post(hour=9, arm_tone="question")  # the arm's preset
    _post(hour=9, arm_tone="gone")  # a preset removed since: the writer used the default

    result = _run()

    arms = _proposed("arm_weights")[0].evidence["arms"]
    assert arms["x|single_post|morning|plain"]["n"] == 10
    assert arms["x|single_post|morning|question"]["n"] == 1
    assert result.counters["posts.outside_arms"] == 0


def test_an_ab_winner_is_a_prior_for_its_tone() -> None:
    test = ABTestFactory.create(
        status=ABTest.Status.COMPLETED,
        decision=ABTest.Decision.WINNER,
        decided_at=NOW - dt.timedelta(days=2),
        result={"metrics": {"engagement_rate": {"comparisons": {"B": {"effect": 0.5}}}}},
    )
    ABTestVariantFactory.create(test=test, key="A", payload={})
    winner = ABTestVariantFactory.create(test=test, key="B", payload={"cta": "discuss"})
    ABTest.objects.filter(pk=test.pk).update(winner=winner)
    for day in range(1, 11):
        _post(hour=9, days_ago=day, rate=0.03 + (day % 3) / 100, arm_tone="plain")

    result = _run()

    change, target = _proposed("arm_weights")
    arms = change.evidence["arms"]
    assert arms["x|x_thread|evening|discuss"]["prior_shift"] == 0.5
    assert "prior_shift" not in arms["x|x_thread|evening|punchy"]
    assert arms["x|x_thread|evening|discuss"]["mean"] == pytest.approx(
        1.5 * arms["x|x_thread|evening|punchy"]["mean"], abs=1e-6
    )
    assert target["x"]["x_thread|evening|discuss"] > target["x"]["x_thread|evening|punchy"]
    assert change.evidence["priors"] == [
        {"platform": None, "dimension": "tone", "value": "discuss", "effect": 0.5}
    ]
    assert result.counters["priors"] == 1


def test_without_evidence_nothing_is_proposed_and_the_summary_says_why() -> None:
    for day in range(1, 4):
        _post(days_ago=day)

    result = _run()

    assert StrategyChange.objects.count() == 0
    assert PerformanceSnapshot.objects.count() == 0
    assert result.summary == (
        "no arm weights: no platform has 10 measured posts in 28 days (3 posts in all); "
        "min_score unchanged: 0 offers, 50 needed"
    )
    assert result.counters["proposed"] == 0


def _offers(
    count: int,
    *,
    score: float,
    converted: int = 0,
    status: str = ConversionStatus.IGNORED,
    sent_at: dt.datetime = NOW - dt.timedelta(days=3),
) -> None:
    for i in range(count):
        ConversionAttemptFactory.create(
            score=score, status=ConversionStatus.CONVERTED if i < converted else status, sent_at=sent_at
        )


def test_the_lowest_score_band_that_converts_well_becomes_the_minimum_score() -> None:
    _offers(30, score=12.0)
    _offers(30, score=25.0, converted=3)
    _offers(2, score=3.0)  # below every band: counted, in no band
    _offers(5, score=60.0, status=ConversionStatus.FAILED, sent_at=NOW)  # never reached anyone
    _offers(5, score=60.0, converted=5, sent_at=NOW - dt.timedelta(days=40))  # before the window

    result = _run()

    change = StrategyChange.objects.get(parameter="min_score", status=StrategyChange.Status.PROPOSED)
    assert (change.agent_name, change.target) == ("conversion", 20.0)
    pooled = 3.5 / 61  # the offers in a band
    assert change.evidence["offers"] == 62
    assert change.evidence["bands"] == {
        "10": {"offers": 30, "conversions": 0, "mean": pytest.approx(2 * pooled / 32)},
        "20": {"offers": 30, "conversions": 3, "mean": pytest.approx((2 * pooled + 3) / 32)},
    }
    assert result.counters["offers"] == 62
    assert result.summary.endswith("min_score 20 proposed from 62 offers")


def test_too_few_offers_or_none_converting_well_propose_no_minimum_score() -> None:
    _offers(30, score=12.0)
    _offers(30, score=25.0)

    assert _run(min_offers=100).summary.endswith("min_score unchanged: 60 offers, 100 needed")
    assert _run().summary.endswith("min_score unchanged: no score band of 60 offers converts at 2.0%")
    assert not StrategyChange.objects.exists()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"half_life_days": 0}, "half_life_days must be more than 0"),
        ({"min_share": 0.5}, "min_share must be"),
        ({"target_conversion_rate": 1.5}, "target_conversion_rate"),
        ({"score_bands": [10.0, 5.0]}, "score_bands must be increasing"),
        ({"score_bands": []}, "score_bands must be increasing"),
        ({"window_days": 0}, "window_days must be 1 or more"),
        ({"draws": 10.5}, "draws must be int"),
    ],
)
def test_parameters_are_checked(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StrategyTuningAgent.validate_parameters(parameters)
