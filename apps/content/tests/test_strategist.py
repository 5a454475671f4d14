"""The content strategist: priorities from weights kept as data, formats, posting slots within daily caps and
outside quiet hours, every insight planned once, at most once per platform, and the arms the strategy tuning
weighs: drawn per plan with a seed, their format and time of day applied, recorded on the plan."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.agents.base import AgentContext
from apps.agents.factories import AgentConfigFactory
from apps.content import services
from apps.content.agents.strategist import BUCKETS, Arm, ContentStrategistAgent, Schedule
from apps.content.factories import ContentPlanFactory
from apps.content.models import ContentFormat, ContentPlan, PlanStatus
from apps.market.factories import InsightFactory
from apps.market.models import Insight, InsightStatus, InsightType

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 3, 10, 30, tzinfo=dt.UTC)  # a Monday


def _at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 3, day, hour, minute, tzinfo=dt.UTC)


def _context(now: dt.datetime = NOW, **parameters: Any) -> AgentContext:
    return AgentContext(
        run_id=1, agent_name=ContentStrategistAgent.name, trigger="manual", now=now, parameters=parameters
    )


def _run(now: dt.datetime = NOW, **parameters: Any) -> dict[str, int]:
    return dict(ContentStrategistAgent().execute(_context(now, **parameters)).counters)


def _insight(**fields: Any) -> Insight:
    defaults: dict[str, Any] = {
        "detected_at": NOW - dt.timedelta(minutes=30),
        "expires_at": NOW + dt.timedelta(hours=24),
        "confidence": 0.7,
    }
    return InsightFactory.create(**{**defaults, **fields})


@pytest.fixture(autouse=True)
def _policy(settings: SettingsWrapper) -> None:
    settings.CONTENT_DAILY_CAPS = {"x": 8, "telegram": 4, "discord": 4}
    settings.CONTENT_QUIET_HOURS = "0-6"


def test_an_insight_is_planned_on_every_platform_at_its_next_slot() -> None:
    insight = _insight(confidence=0.7, type=InsightType.RSI_OVERSOLD)

    counters = _run()

    assert counters["insights_planned"] == 1
    assert counters["plans"] == 3
    plans = {p.platform: p for p in ContentPlan.objects.filter(insight=insight)}
    assert {p: (plan.format, plan.scheduled_for) for p, plan in plans.items()} == {
        "x": (ContentFormat.SINGLE_POST, _at(3, 11)),
        "telegram": (ContentFormat.TELEGRAM_CHART_POST, _at(3, 12)),
        "discord": (ContentFormat.DISCORD_EMBED, _at(3, 13)),
    }
    insight.refresh_from_db()
    assert insight.status == InsightStatus.PLANNED
    x = plans["x"]
    assert x.topic == insight.headline
    assert x.status == PlanStatus.PLANNED
    # The strategy in force travels with the plan, with the factors it scored.
    recency = 0.5 ** (0.5 / 6.0)
    assert x.weights == {
        "confidence": 0.5,
        "insight_type": 0.2,
        "recency": 0.2,
        "platform": 0.1,
        "factors": {"confidence": 0.7, "insight_type": 0.6, "recency": round(recency, 6), "platform": 1.0},
    }
    assert x.priority == pytest.approx(0.5 * 0.7 + 0.2 * 0.6 + 0.2 * recency + 0.1 * 1.0, abs=1e-6)
    assert plans["telegram"].priority < x.priority  # the platform weighs less


def test_a_confident_insight_gets_an_x_thread() -> None:
    insight = _insight(confidence=0.85)

    _run()

    assert ContentPlan.objects.get(insight=insight, platform="x").format == ContentFormat.X_THREAD


def test_running_again_never_plans_an_insight_twice() -> None:
    insight = _insight()
    _run()

    counters = _run(NOW + dt.timedelta(minutes=5))

    assert counters["plans"] == 0
    assert ContentPlan.objects.filter(insight=insight).count() == 3
    # Put back to new by hand: still not planned again.
    Insight.objects.filter(pk=insight.pk).update(status=InsightStatus.NEW)
    assert _run(NOW + dt.timedelta(minutes=10))["plans"] == 0
    assert ContentPlan.objects.filter(insight=insight).count() == 3


def test_the_plan_service_claims_the_insight_once() -> None:
    insight = _insight()
    spec = services.PlanSpec(
        platform="x", format="single_post", scheduled_for=_at(3, 11), priority=0.5, weights={}, topic="t"
    )

    first = services.content_plans_create_for_insight(insight_id=insight.pk, plans=[spec])
    second = services.content_plans_create_for_insight(insight_id=insight.pk, plans=[spec])

    assert len(first) == 1
    assert second == []
    assert ContentPlan.objects.count() == 1
    with pytest.raises(ValueError, match="one plan per platform"):
        services.content_plans_create_for_insight(insight_id=_insight().pk, plans=[spec, spec])


def test_one_post_per_slot_and_the_best_insight_gets_the_first() -> None:
    weak = _insight(confidence=0.6)
    strong = _insight(confidence=0.9)

    _run(platforms=["x"])

    assert ContentPlan.objects.get(insight=strong).scheduled_for == _at(3, 11)
    assert ContentPlan.objects.get(insight=weak).scheduled_for == _at(3, 13)


def test_daily_caps_leave_the_weakest_insights_unplanned(settings: SettingsWrapper) -> None:
    settings.CONTENT_DAILY_CAPS = {"x": 8, "telegram": 2, "discord": 4}
    insights = [_insight(confidence=c) for c in (0.6, 0.9, 0.7, 0.8, 0.65)]

    counters = _run(platforms=["telegram"], horizon_days=0)

    planned = ContentPlan.objects.filter(platform="telegram").order_by("scheduled_for")
    assert list(planned.values_list("insight__confidence", flat=True)) == [0.9, 0.8]
    assert counters["no_slot.telegram"] == 3
    assert counters["unscheduled"] == 3
    # The rest stay new, to be planned when a day has room.
    assert {i.pk for i in insights if Insight.objects.get(pk=i.pk).status == InsightStatus.NEW} == {
        insights[0].pk,
        insights[2].pk,
        insights[4].pk,
    }


def test_plans_already_booked_count_towards_the_cap_and_take_their_slot() -> None:
    ContentPlanFactory.create(
        platform="x", scheduled_for=_at(3, 11), insight=_insight(status=InsightStatus.USED)
    )
    insight = _insight()

    _run(platforms=["x"], daily_caps={"x": 2})

    assert ContentPlan.objects.get(insight=insight).scheduled_for == _at(3, 13)
    assert _run(platforms=["x"], daily_caps={"x": 2})["plans"] == 0
    third = _insight()
    _run(platforms=["x"], daily_caps={"x": 2})
    # Today is full: tomorrow's first slot.
    assert ContentPlan.objects.get(insight=third).scheduled_for == _at(4, 7)


def test_quiet_hours_are_never_scheduled() -> None:
    insight = _insight(detected_at=_at(3, 23), expires_at=_at(5, 0))

    _run(_at(3, 23, 30), quiet_hours="22-8")

    plans = ContentPlan.objects.filter(insight=insight)
    # X's 07:00 slot is in the quiet hours (22:00 up to 8:00); Telegram's 08:00 is just after them.
    assert {p.platform: p.scheduled_for for p in plans} == {
        "x": _at(4, 9),
        "telegram": _at(4, 8),
        "discord": _at(4, 9),
    }


def test_the_quiet_hours_setting_applies_when_no_parameter_overrides_it(settings: SettingsWrapper) -> None:
    settings.CONTENT_QUIET_HOURS = "6-12"
    insight = _insight(detected_at=_at(3, 5), expires_at=_at(4, 0))

    _run(_at(3, 5, 30), platforms=["x"])

    assert ContentPlan.objects.get(insight=insight).scheduled_for == _at(3, 13)


def test_no_slot_before_the_insight_expires_means_no_plan() -> None:
    insight = _insight(expires_at=_at(3, 11, 30))

    counters = _run()

    assert {p.platform for p in ContentPlan.objects.filter(insight=insight)} == {"x"}
    assert counters["no_slot.telegram"] == counters["no_slot.discord"] == 1


def test_expired_and_old_insights_are_marked_expired_not_planned() -> None:
    expired = _insight(expires_at=NOW - dt.timedelta(minutes=1))
    old = _insight(detected_at=NOW - dt.timedelta(hours=30), expires_at=None)
    used = _insight(status=InsightStatus.USED, expires_at=NOW - dt.timedelta(hours=1))

    counters = _run()

    assert counters["expired"] == 2
    assert counters["plans"] == 0
    statuses = {i.pk: i.status for i in Insight.objects.all()}
    assert statuses == {
        expired.pk: InsightStatus.EXPIRED,
        old.pk: InsightStatus.EXPIRED,
        used.pk: InsightStatus.USED,
    }


def test_the_weights_are_parameters_and_change_the_order() -> None:
    rsi = _insight(confidence=0.9, type=InsightType.RSI_OVERSOLD)
    move = _insight(confidence=0.6, type=InsightType.PRICE_MOVE)

    # Only the type weight counts: the price move (0.9) beats the confident RSI reading (0.6).
    _run(platforms=["x"], weights={"confidence": 0.0, "recency": 0.0, "platform": 0.0, "insight_type": 1.0})

    assert ContentPlan.objects.get(insight=move).scheduled_for == _at(3, 11)
    rsi_plan = ContentPlan.objects.get(insight=rsi)
    assert rsi_plan.scheduled_for == _at(3, 13)
    assert rsi_plan.priority == pytest.approx(0.6)
    assert rsi_plan.weights["insight_type"] == 1.0
    assert rsi_plan.weights["confidence"] == 0.0


def test_a_minimum_priority_filters_weak_pairs() -> None:
    _insight(confidence=0.6)

    counters = _run(min_priority=0.99)

    assert counters["plans"] == 0
    assert counters["below_min_priority"] == 3


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"slots": {"x": ["25:00"]}}, "slots.x"),
        ({"weights": {"virality": 1.0}}, "unknown factors"),
        ({"formats": {"x": "telegram_chart_post"}}, "formats.x"),
        ({"quiet_hours": "late"}, "quiet_hours"),
        ({"daily_caps": {"x": -1}}, "daily_caps.x"),
        ({"platforms": ["myspace"]}, "platforms"),
    ],
)
def test_parameters_are_checked(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ContentStrategistAgent.validate_parameters(parameters)


def test_table_parameters_override_only_what_they_name() -> None:
    params = ContentStrategistAgent.validate_parameters(
        {"slots": {"x": ["10:00"]}, "weights": {"recency": 0.0}}
    )

    assert params["slots"]["x"] == ["10:00"]
    assert params["slots"]["telegram"] == ["08:00", "12:00", "16:00", "20:00"]
    assert params["weights"] == {"confidence": 0.5, "insight_type": 0.2, "recency": 0.0, "platform": 0.1}


def test_the_schedule_skips_taken_slots_full_days_and_quiet_hours() -> None:
    schedule = Schedule(
        now=_at(3, 8, 15),
        slots={"x": ["09:00", "08:00", "10:00"]},
        caps={"x": 2},
        quiet=frozenset({10}),
        horizon_days=1,
        booked={"x": [_at(3, 9)]},
    )

    first = schedule.next_free("x")
    assert first == _at(4, 8)  # 8:00 passed, 9:00 taken, 10:00 quiet
    schedule.book("x", _at(4, 8))
    assert schedule.next_free("x") == _at(4, 9)
    schedule.book("x", _at(4, 9))
    assert schedule.next_free("x") is None  # tomorrow is full too
    assert schedule.next_free("telegram") is None  # no slots at all


# --- arm weights ----------------------------------------------------------------------------------------------


def _expected_arm(insight: Insight, platform: str, arms: dict[str, float]) -> str:
    keys = sorted(arms)
    return random.Random(f"{insight.pk}:{platform}").choices(keys, weights=[arms[k] for k in keys])[0]


def test_an_arm_sets_the_format_the_time_of_day_and_is_recorded() -> None:
    insight = _insight(confidence=0.7)

    counters = _run(platforms=["x"], arm_weights={"x": {"x_thread|evening|question": 1.0}})

    plan = ContentPlan.objects.get(insight=insight)
    # The X thread rule gives way to the arm, and the first evening slot (19:00) to the first slot (11:00).
    assert (plan.format, plan.scheduled_for) == (ContentFormat.X_THREAD, _at(3, 19))
    assert plan.weights["arm"] == {
        "key": "x_thread|evening|question",
        "format": "x_thread",
        "bucket": "evening",
        "tone": "question",
    }
    assert "arm.fallback_slot" not in counters


def test_arms_are_drawn_by_weight_with_a_seed_per_insight_and_platform() -> None:
    arms = {
        "single_post|morning|plain": 1.0,
        "x_thread|afternoon|punchy": 3.0,
        "single_post|evening|discuss": 2.0,
    }
    insights = [_insight(confidence=0.5 + i / 100, expires_at=NOW + dt.timedelta(days=3)) for i in range(6)]

    counters = _run(platforms=["x"], arm_weights={"x": arms}, daily_caps={"x": 8}, horizon_days=3)

    drawn = {p.insight_id: p.weights["arm"]["key"] for p in ContentPlan.objects.filter(platform="x")}
    assert drawn == {i.pk: _expected_arm(i, "x", arms) for i in insights}
    # Drawn again, the same arm: the draw is the plan's, not the run's.
    assert [ContentStrategistAgent.draw_arm(i, "x", {"arm_weights": {"x": arms}}) for i in insights] == [
        Arm.parse(drawn[i.pk]) for i in insights
    ]
    for plan in ContentPlan.objects.filter(platform="x"):
        arm = Arm.parse(plan.weights["arm"]["key"])
        assert plan.format == arm.format
        assert plan.scheduled_for.hour in BUCKETS[arm.bucket]
    assert "arm.fallback_slot" not in counters


def test_an_arm_whose_time_of_day_is_full_falls_back_to_any_free_slot() -> None:
    insight = _insight()

    # X has no night slot outside the quiet hours (0-6).
    counters = _run(platforms=["x"], arm_weights={"x": {"single_post|night|plain": 1.0}})

    plan = ContentPlan.objects.get(insight=insight)
    assert plan.scheduled_for == _at(3, 11)
    assert plan.weights["arm"]["bucket"] == "night"
    assert counters["arm.fallback_slot"] == 1


def test_platforms_without_arm_weights_plan_as_before() -> None:
    insight = _insight(confidence=0.85)

    _run(arm_weights={"x": {}, "discord": {"single_post|afternoon|plain": 1.0}})

    plans = {p.platform: p for p in ContentPlan.objects.filter(insight=insight)}
    assert {p: (plan.format, plan.scheduled_for) for p, plan in plans.items()} == {
        "x": (ContentFormat.X_THREAD, _at(3, 11)),
        "telegram": (ContentFormat.TELEGRAM_CHART_POST, _at(3, 12)),
        "discord": (ContentFormat.SINGLE_POST, _at(3, 13)),
    }
    assert "arm" not in plans["x"].weights
    assert "arm" not in plans["telegram"].weights


def test_the_schedule_finds_the_first_free_slot_in_a_time_of_day() -> None:
    schedule = Schedule(
        now=_at(3, 8, 15),
        slots={"x": ["09:00", "13:00", "19:00"]},
        caps={"x": 8},
        quiet=frozenset(),
        horizon_days=1,
        booked={"x": [_at(3, 13)]},
    )

    assert schedule.next_free("x", bucket="morning") == _at(3, 9)
    assert schedule.next_free("x", bucket="afternoon") == _at(4, 13)
    assert schedule.next_free("x", bucket="evening") == _at(3, 19)
    assert schedule.next_free("x", bucket="night") is None
    assert schedule.next_free("x", bucket="afternoon", not_after=_at(4, 12)) is None


def test_arm_tones_may_name_the_creation_agents_own_presets() -> None:
    AgentConfigFactory.create(agent_name="content_creation", parameters={"tones": {"bold": {"emoji": True}}})

    params = ContentStrategistAgent.validate_parameters(
        {"arm_weights": {"x": {"single_post|morning|bold": 1}}}
    )

    assert params["arm_weights"] == {"x": {"single_post|morning|bold": 1}}


@pytest.mark.parametrize(
    ("arm_weights", "message"),
    [
        ({"myspace": {"single_post|morning|plain": 1.0}}, "unknown platform 'myspace'"),
        ({"x": ["single_post|morning|plain"]}, "arm_weights.x must be a table"),
        ({"x": {"single_post|morning": 1.0}}, "an arm is format|bucket|tone"),
        ({"x": {"discord_embed|morning|plain": 1.0}}, "'discord_embed' is not a format for that platform"),
        ({"x": {"single_post|brunch|plain": 1.0}}, "'brunch' is not a time of day"),
        ({"x": {"single_post|morning|bold": 1.0}}, "'bold' is not a tone preset of content_creation"),
        ({"x": {"single_post|morning|plain": -0.5}}, "must be a number, 0 or more"),
        ({"x": {"single_post|morning|plain": 0, "x_thread|evening|plain": 0.0}}, "at least one weight"),
    ],
)
def test_arm_weights_are_checked(arm_weights: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ContentStrategistAgent.validate_parameters({"arm_weights": arm_weights})
