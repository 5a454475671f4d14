from __future__ import annotations

import datetime as dt
import math
from io import StringIO
from typing import Any

import numpy as np
import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db.models import Count, F

from apps.agents import registry
from apps.agents.models import AgentConfig
from apps.billing.models import BillingCustomer, Entitlement, Plan, Subscription
from apps.billing.services.entitlements import (
    entitlement_key_validate,
    entitlements_sync_for_subscription,
)
from apps.community.models import CommunityUser, PlatformIdentity, UserInteraction
from apps.content import limits
from apps.content.models import ExclusiveContent, PublishedContent
from apps.dashboard.demo import (
    COMMUNITY_SIZE,
    DEMO_POSTS,
    HISTORY_DAYS,
    INSIGHT_REPLAY_HOURS,
    WATCHLIST,
    seed_demo,
)
from apps.experiments.models import ABTest
from apps.market import indicators
from apps.market import services as market_services
from apps.market.models import Insight, InsightType, MarketData, SentimentData
from apps.moderation.models import ActionKind, Appeal, ModerationAction, ModerationDecision, Strike

ANCHOR = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _table_counts() -> dict[str, int]:
    return {
        model._meta.db_table: model._default_manager.count()
        for model in apps.get_models()
        if model._meta.app_label not in {"sessions", "admin", "contenttypes", "auth"}
    }


@pytest.mark.django_db
def test_seed_builds_a_realistic_world() -> None:
    report = seed_demo(anchor=ANCHOR)

    assert CommunityUser.objects.count() == COMMUNITY_SIZE
    per_platform = dict(PlatformIdentity.objects.values_list("platform").annotate(n=Count("id")))
    assert set(per_platform) == {"x", "telegram", "discord"}
    assert all(n >= 30 for n in per_platform.values())
    assert UserInteraction.objects.count() > 1000
    # Interactions belong to the same person as their identity.
    assert not UserInteraction.objects.exclude(community_user=F("identity__community_user")).exists()
    assert MarketData.objects.count() == len(WATCHLIST) * HISTORY_DAYS * 24
    assert not MarketData.objects.filter(ts__gte=ANCHOR).exists()
    # A handful of insights a day, from the hourly replay of the analysis up to the anchor.
    insights = Insight.objects.all()
    assert insights.count() >= 10
    assert not insights.exclude(detected_at__range=(ANCHOR - INSIGHT_REPLAY_HOURS * HOUR, ANCHOR)).exists()
    assert insights.values("type").distinct().count() >= 3
    posts = PublishedContent.objects.all()
    assert 0 < posts.count() <= DEMO_POSTS
    assert set(posts.values_list("platform", flat=True)) == {"x", "telegram", "discord"}
    # Each post went out after the insight it tells of, before the anchor, outside the quiet hours.
    quiet = limits.quiet_hours()
    for post in posts:
        told = [i for i in insights if post.text.startswith(f"{i.headline}.")]
        assert any(i.detected_at < post.published_at for i in told), post.text
        assert post.published_at < ANCHOR
        assert post.published_at.hour not in quiet
    assert ExclusiveContent.objects.filter(status="published").count() == 3
    assert ABTest.objects.get().variants.count() == 2
    assert set(Subscription.objects.values_list("status", flat=True)) >= {
        "active",
        "trialing",
        "past_due",
        "canceled",
        "unpaid",
    }
    assert Entitlement.objects.filter(subscription__status__in=["canceled", "unpaid"]).count() == 0
    # Every agent is in the admin, with its default schedule.
    configs = {c.agent_name: c for c in AgentConfig.objects.select_related("periodic_task")}
    assert set(configs) == set(registry.names())
    for agent in registry.all_agents():
        task = configs[agent.name].periodic_task
        assert (task is not None) == bool(agent.default_schedule), agent.name
    assert report.total == sum(_table_counts().get(t, 0) for t in report.created)


@pytest.mark.django_db
def test_members_pay_through_a_customer_and_their_access_comes_from_the_ledger() -> None:
    seed_demo(anchor=ANCHOR)

    for plan in Plan.objects.all():
        # Keys the ledger and the platform sync accept, the paid places included.
        assert [entitlement_key_validate(key) for key in plan.entitlement_keys] == plan.entitlement_keys
        assert any(key.startswith("discord.role:") for key in plan.entitlement_keys)
        assert any(key.startswith("telegram.channel:") for key in plan.entitlement_keys)

    subscriptions = list(Subscription.objects.select_related("plan", "user__billing_customer"))
    assert len(subscriptions) == 12
    for sub in subscriptions:
        assert sub.user.billing_customer.stripe_customer_id == sub.stripe_customer_id
        # Exactly what the ledger grants for the subscription's state: running it again changes nothing.
        assert entitlements_sync_for_subscription(subscription=sub, now=ANCHOR) == []
        rows = {(e.key, e.source, e.ends_at) for e in sub.entitlements.all()}
        plan_keys = sub.plan.entitlement_keys
        leeway = dt.timedelta(0) if sub.cancel_at_period_end else dt.timedelta(days=1)
        if sub.status == "active":
            assert sub.current_period_start is not None
            assert sub.current_period_end is not None
            assert sub.current_period_start <= ANCHOR < sub.current_period_end
            assert rows == {(k, "subscription", sub.current_period_end + leeway) for k in plan_keys}
        elif sub.status == "trialing":
            assert sub.trial_end is not None
            assert sub.trial_end > ANCHOR
            assert rows == {(k, "trial", sub.trial_end + leeway) for k in plan_keys}
        elif sub.status == "past_due":
            # The plan's grace: its grace keys alone, for its grace days from the failed payment.
            assert sub.past_due_since is not None
            grace_end = sub.past_due_since + dt.timedelta(days=sub.plan.grace_days)
            assert grace_end > ANCHOR
            assert rows == {(k, "grace", grace_end) for k in sub.plan.grace_entitlement_keys}
            assert set(sub.plan.grace_entitlement_keys) < set(plan_keys)
        else:
            assert rows == set()
    assert BillingCustomer.objects.count() == 12
    assert Subscription.objects.filter(status="active", cancel_at_period_end=True).exists()


def _sig6(value: float) -> float:
    return float(f"{value:.6g}")


def _expected_evidence(insight: Insight) -> dict[str, Any]:
    """Every number an insight may cite, computed here from the stored candles (or sentiment windows) that the
    analysis could see when it detected the insight."""
    if insight.type == InsightType.SENTIMENT_SHIFT:
        windows = list(
            SentimentData.objects.filter(
                symbol=insight.symbol,
                window_end__lte=insight.detected_at,
                window_end__gt=insight.detected_at - (market_services.SENTIMENT_BASELINE_WINDOWS + 2) * HOUR,
            ).order_by("-window_end")
        )
        latest, baseline = windows[0], windows[1 : 1 + market_services.SENTIMENT_BASELINE_WINDOWS]
        previous = math.fsum(w.score for w in baseline) / len(baseline)
        return {
            "score": round(latest.score, 3),
            "previous_score": round(previous, 3),
            "delta": round(latest.score - previous, 3),
            "sample_size": latest.sample_size,
            "source": latest.source,
        }
    newest = insight.detected_at - HOUR
    rows = list(
        MarketData.objects.filter(
            symbol=insight.symbol,
            timeframe="1h",
            ts__gt=newest - market_services.LOOKBACK_CANDLES * HOUR,
            ts__lte=newest,
        )
        .order_by("ts")
        .values_list("ts", "close", "volume")
    )
    assert rows[-1][0] == newest
    close = np.array([r[1] for r in rows])
    volume = np.array([r[2] for r in rows])
    window = market_services.VOLUME_WINDOW
    middle, upper, lower, _ = (a[-1] for a in indicators.bollinger(close, 20, 2.0))
    line, signal, histogram = (a[-1] for a in indicators.macd(close, 12, 26, 9))
    trailing = volume[-1 - window : -1]
    hours = insight.evidence.get("window_hours", 1)
    return {
        "close": _sig6(close[-1]),
        "change_pct": round((close[-1] / close[-1 - hours] - 1) * 100, 2),
        "window_hours": hours,
        "rsi": round(float(indicators.rsi(close, 14)[-1]), 2),
        "period": 14 if "rsi" in insight.evidence else 20,
        "threshold": 70.0 if insight.type == InsightType.RSI_OVERBOUGHT else 30.0,
        "macd": _sig6(line),
        "signal": _sig6(signal),
        "histogram": _sig6(histogram),
        "upper": _sig6(upper),
        "lower": _sig6(lower),
        "middle": _sig6(middle),
        "stddev": 2.0,
        "volume": _sig6(volume[-1]),
        "mean_volume": _sig6(trailing.mean()),
        "zscore": round(float((volume[-1] - trailing.mean()) / trailing.std()), 2),
        "ratio": round(float(volume[-1] / trailing.mean()), 2),
    }


@pytest.mark.django_db
def test_insight_numbers_come_from_the_candles() -> None:
    seed_demo(anchor=ANCHOR)

    insights = list(Insight.objects.all())
    assert insights
    for insight in insights:
        expected = _expected_evidence(insight)
        assert insight.evidence, insight.headline
        for key, value in insight.evidence.items():
            assert value == expected[key], (insight.type, insight.symbol, key)
        assert 0.5 <= insight.confidence <= 1
        if "change_pct" in insight.evidence:
            assert f"{abs(insight.evidence['change_pct']):.1f}%" in insight.headline


@pytest.mark.django_db
def test_second_run_changes_nothing() -> None:
    seed_demo(anchor=ANCHOR)
    counts = _table_counts()
    snapshot = list(
        UserInteraction.objects.order_by("id").values_list("id", "occurred_at", "community_user_id")
    )
    last_seen = list(CommunityUser.objects.order_by("id").values_list("id", "last_seen_at", "portal_user_id"))

    report = seed_demo(anchor=ANCHOR)

    assert report.total == 0
    assert _table_counts() == counts
    assert (
        list(UserInteraction.objects.order_by("id").values_list("id", "occurred_at", "community_user_id"))
        == snapshot
    )
    assert (
        list(CommunityUser.objects.order_by("id").values_list("id", "last_seen_at", "portal_user_id"))
        == last_seen
    )


@pytest.mark.django_db
def test_command_reports_and_refuses_production(settings: object) -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "Demo world seeded" in out.getvalue()
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "nothing to do" in out.getvalue()

    settings.PRODUCTION = True  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match="production"):
        call_command("seed_demo")


@pytest.mark.django_db
def test_the_community_was_moderated_through_the_real_engine_and_ladder() -> None:
    seed_demo(anchor=ANCHOR)

    decisions = dict(ModerationDecision.objects.values_list("message_id", "verdict"))
    assert decisions["demo-mod-1"] == decisions["demo-mod-6"] == "allow"
    assert {decisions[m] for m in ("demo-mod-2", "demo-mod-3", "demo-mod-4", "demo-mod-5")} == {"remove"}
    actions = list(ModerationAction.objects.order_by("pk").values_list("message_id", "action"))
    assert [message for message, _ in actions] == ["demo-mod-2", "demo-mod-3", "demo-mod-4", "demo-mod-5"]
    # The second scam of each person climbs the ladder.
    assert ActionKind.BAN in {action for _, action in actions}
    assert Strike.objects.filter(voided_at__isnull=True).count() >= 4
    (appeal,) = Appeal.objects.all()
    assert (appeal.action.message_id, appeal.status) == ("demo-mod-3", Appeal.Status.OPEN)
