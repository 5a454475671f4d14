"""Content repurposing: the best recent posts become plans in other formats, never twice and never onto a
platform that already carried the insight; a weekly digest once per week and platform; the creation agent
drafts both."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings

from apps.agents.base import AgentContext
from apps.agents.factories import AgentConfigFactory
from apps.content import services
from apps.content.agents.creation import ContentCreationAgent
from apps.content.agents.repurposing import ContentRepurposingAgent, digest_week
from apps.content.factories import ContentDraftFactory, ContentPlanFactory, PublishedContentFactory
from apps.content.models import (
    ContentDraft,
    ContentFormat,
    ContentPlan,
    DraftStatus,
    PlanStatus,
    PublishedContent,
)
from apps.integrations.llm import unexpected_numbers
from apps.market.factories import InsightFactory
from apps.market.models import Insight, InsightStatus

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 5, 10, 30, tzinfo=dt.UTC)  # a Wednesday
FRIDAY_EVENING = dt.datetime(2025, 3, 7, 17, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _policy(settings: Settings) -> None:
    settings.CONTENT_DAILY_CAPS = {"x": 8, "telegram": 4, "discord": 4}
    settings.CONTENT_QUIET_HOURS = "0-6"
    settings.LLM_BACKEND = "templates"
    settings.POST_DISCLAIMER = "Not financial advice."
    settings.CONTENT_AUTO_APPROVE_PLATFORMS = ["x", "telegram", "discord"]


def _run(now: dt.datetime = NOW, **parameters: Any) -> dict[str, int]:
    ctx = AgentContext(
        run_id=1, agent_name=ContentRepurposingAgent.name, trigger="manual", now=now, parameters=parameters
    )
    return dict(ContentRepurposingAgent().execute(ctx).counters)


def _insight(**fields: Any) -> Insight:
    defaults: dict[str, Any] = {
        "detected_at": NOW - dt.timedelta(days=1),
        "expires_at": NOW - dt.timedelta(hours=1),
        "status": InsightStatus.USED,
        "type": "price_move",
        "evidence": {
            "close": 64123.45,
            "change_pct": 3.42,
            "window_hours": 24,
            "high": 64500.0,
            "low": 61900.0,
        },
        "headline": "BTC up 3.4% in 24h",
    }
    return InsightFactory.create(**{**defaults, **fields})


def _published(
    platform: str = "x",
    format: str = "x_thread",
    *,
    rate: float = 0.08,
    impressions: int = 2000,
    insight: Insight | None = None,
    **fields: Any,
) -> PublishedContent:
    insight = insight or _insight()
    plan = ContentPlanFactory.create(
        insight=insight,
        platform=platform,
        format=format,
        status=PlanStatus.PUBLISHED,
        scheduled_for=NOW - dt.timedelta(days=1),
        priority=0.7,
        **fields.pop("plan", {}),
    )
    draft = ContentDraftFactory.create(plan=plan, status=DraftStatus.PUBLISHED)
    metrics = {"impressions": impressions} if platform == "x" else {"views": impressions}
    fields.setdefault("published_at", NOW - dt.timedelta(days=1))
    return PublishedContentFactory.create(
        draft=draft, platform=platform, format=format, engagement_rate=rate, metrics=metrics, **fields
    )


def _source(post: PublishedContent) -> ContentDraft:
    assert post.draft is not None
    return post.draft


def test_the_best_x_thread_becomes_a_telegram_long_post() -> None:
    best = _published(rate=0.09)
    _published(rate=0.02)

    counters = _run(max_plans=1)

    assert counters["repurposing_plans"] == 1
    plan = ContentPlan.objects.get(repurposed_from__isnull=False)
    assert plan.repurposed_from == best
    assert (plan.platform, plan.format, plan.status) == (
        "telegram",
        ContentFormat.LONG_POST,
        PlanStatus.PLANNED,
    )
    assert plan.insight == _source(best).plan.insight
    assert plan.scheduled_for == dt.datetime(2025, 3, 5, 12, 0, tzinfo=dt.UTC)  # Telegram's next slot
    assert plan.weights == {
        "repurposed_from": best.pk,
        "source": "x:x_thread",
        "engagement_rate": 0.09,
        "impressions": 2000,
    }
    assert plan.topic == _source(best).plan.topic


def test_a_post_is_never_repurposed_twice() -> None:
    _published()
    assert _run()["repurposing_plans"] == 1

    counters = _run(NOW + dt.timedelta(hours=1))

    assert counters["repurposing_plans"] == 0
    assert counters["already_repurposed"] == 1
    assert ContentPlan.objects.filter(repurposed_from__isnull=False).count() == 1


def test_the_database_refuses_a_second_repurposing_of_the_same_kind() -> None:
    post = _published()
    kwargs: dict[str, Any] = {
        "source": post,
        "insight_id": _source(post).plan.insight_id,
        "platform": "telegram",
        "format": "long_post",
        "scheduled_for": NOW,
        "priority": 0.5,
        "weights": {},
        "topic": "t",
    }

    assert services.content_plan_create_repurposing(**kwargs) is not None
    assert services.content_plan_create_repurposing(**kwargs) is None
    assert ContentPlan.objects.filter(repurposed_from=post).count() == 1


def test_posts_that_few_saw_old_posts_and_repurposings_are_left_alone() -> None:
    _published(impressions=120)
    _published(published_at=NOW - dt.timedelta(days=8))
    earlier = _published(platform="telegram", format="long_post")
    again = _published(platform="telegram", format="long_post", rate=0.5, plan={"repurposed_from": earlier})
    assert _source(again).plan.repurposed_from == earlier

    counters = _run()

    assert counters["repurposing_plans"] == 0
    assert counters["below_min_impressions"] == 1


def test_a_platform_that_already_carried_the_insight_does_not_get_it_again() -> None:
    insight = _insight()
    _published(insight=insight)
    ContentPlanFactory.create(insight=insight, platform="telegram", format="telegram_chart_post")

    counters = _run()

    assert counters["insight_already_on_platform"] == 1
    assert ContentPlan.objects.filter(repurposed_from__isnull=False).count() == 0


def test_repurposing_keeps_to_the_strategists_slots_and_caps() -> None:
    for _ in range(3):
        _published()
    AgentConfigFactory.create(
        agent_name="content_strategist", parameters={"daily_caps": {"telegram": 2}, "horizon_days": 0}
    )

    counters = _run()

    assert counters["repurposing_plans"] == 2
    assert counters["no_slot.telegram"] == 1
    times = sorted(
        ContentPlan.objects.filter(repurposed_from__isnull=False).values_list("scheduled_for", flat=True)
    )
    assert times == [
        dt.datetime(2025, 3, 5, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 5, 16, 0, tzinfo=dt.UTC),
    ]


def test_the_creation_agent_drafts_a_repurposing_after_its_insight_expired() -> None:
    post = _published()
    _run()
    plan = ContentPlan.objects.get(repurposed_from=post)
    ctx = AgentContext(
        run_id=1, agent_name="content_creation", trigger="manual", now=plan.scheduled_for, parameters={}
    )

    ContentCreationAgent().execute(ctx)

    draft = ContentDraft.objects.get(plan=plan)
    assert draft.format == ContentFormat.LONG_POST
    assert draft.checks["passed"] is True
    evidence = Insight.objects.get(content_plans=plan).evidence
    assert unexpected_numbers(draft.body, evidence, symbol="BTC/USDT") == []
    assert len(draft.body) <= 3000


# --- the weekly digest --------------------------------------------------------------------------------------


def _week_of_insights() -> list[Insight]:
    monday = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
    return [
        _insight(
            symbol="BTC/USDT",
            type="rsi_oversold",
            confidence=0.9,
            detected_at=monday,
            evidence={"rsi": 27.4, "period": 14, "close": 58123.5},
        ),
        _insight(
            symbol="BTC/USDT",
            type="rsi_oversold",
            confidence=0.6,
            detected_at=monday,
            evidence={"rsi": 29.1, "period": 14, "close": 58900.0},
        ),
        _insight(symbol="ETH/USDT", type="price_move", confidence=0.8, detected_at=monday),
        _insight(
            symbol="SOL/USDT",
            type="volume_spike",
            confidence=0.7,
            detected_at=monday,
            evidence={"volume": 2.5e6, "ratio": 3.2},
        ),
        _insight(
            symbol="DOGE/USDT",
            type="macd_bullish_cross",
            confidence=0.95,
            status=InsightStatus.DISCARDED,
            detected_at=monday,
            evidence={"macd": 0.01},
        ),
        _insight(
            symbol="XRP/USDT",
            type="price_move",
            confidence=0.99,
            detected_at=dt.datetime(2025, 3, 2, 9, 0, tzinfo=dt.UTC),
        ),  # last week
    ]


def test_a_weekly_digest_per_platform_once_a_week() -> None:
    insights = _week_of_insights()

    counters = _run(FRIDAY_EVENING)

    assert counters["digest_plans"] == 2
    digests = {p.platform: p for p in ContentPlan.objects.filter(format=ContentFormat.DIGEST)}
    assert set(digests) == {"telegram", "discord"}
    telegram = digests["telegram"]
    # The week's best of each (symbol, type), best first; the discarded one and last week's left out.
    assert telegram.weights == {
        "digest_week": "2025-W10",
        "insight_ids": [insights[0].pk, insights[2].pk, insights[3].pk],
    }
    assert telegram.topic == "Weekly digest 2025-W10: BTC, ETH, SOL"
    assert telegram.insight is None
    assert telegram.scheduled_for == dt.datetime(2025, 3, 7, 20, 0, tzinfo=dt.UTC)
    assert digests["discord"].scheduled_for == FRIDAY_EVENING  # a slot starting this very minute

    assert _run(FRIDAY_EVENING + dt.timedelta(hours=1))["digest_plans"] == 0
    assert ContentPlan.objects.filter(format=ContentFormat.DIGEST).count() == 2


def test_no_digest_before_its_day_and_hour_or_without_enough_insights() -> None:
    _week_of_insights()
    assert _run(dt.datetime(2025, 3, 7, 15, 0, tzinfo=dt.UTC))["digest_plans"] == 0
    assert _run(dt.datetime(2025, 3, 6, 18, 0, tzinfo=dt.UTC))["digest_plans"] == 0

    counters = _run(FRIDAY_EVENING, digest_min_items=4)

    assert counters["digest_too_few_insights"] == 1
    assert not ContentPlan.objects.filter(format=ContentFormat.DIGEST).exists()


def test_the_digest_is_drafted_from_its_insights() -> None:
    insights = _week_of_insights()
    _run(FRIDAY_EVENING)
    plan = ContentPlan.objects.get(format=ContentFormat.DIGEST, platform="discord")
    ctx = AgentContext(
        run_id=1, agent_name="content_creation", trigger="manual", now=plan.scheduled_for, parameters={}
    )

    ContentCreationAgent().execute(ctx)

    draft = ContentDraft.objects.get(plan=plan)
    assert draft.checks["passed"] is True
    lines = [line for line in draft.body.splitlines() if line.startswith("• ")]
    assert [line.split()[1] for line in lines] == ["BTC", "ETH", "SOL"]
    items = [{"insight_type": i.type, "symbol": i.symbol, "evidence": i.evidence} for i in insights[:4]]
    assert unexpected_numbers(draft.body, {"items": items}) == []
    assert len(draft.body) <= 2000


def test_digest_week() -> None:
    assert digest_week(FRIDAY_EVENING) == ("2025-W10", dt.datetime(2025, 3, 3, tzinfo=dt.UTC))
    assert digest_week(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))[0] == "2025-W01"


def test_targets_are_checked() -> None:
    with pytest.raises(ValidationError, match="targets"):
        ContentRepurposingAgent.validate_parameters({"targets": {"x:x_thread": ["telegram:x_thread"]}})
