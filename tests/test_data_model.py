"""The data model's promises: spec table names, natural keys that make ingestion upsert, ranges the database
itself refuses, money as integer minor units, and ``__str__``s an operator can read."""

from __future__ import annotations

import datetime as dt

import pytest
from django.apps import apps
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.agents.factories import AgentRunFactory, PerformanceSnapshotFactory
from apps.billing.factories import (
    EntitlementFactory,
    PlanPriceFactory,
    StripeEventFactory,
    SubscriptionFactory,
)
from apps.community.factories import PlatformIdentityFactory, UserInteractionFactory
from apps.content.factories import ContentPlanFactory, PublishedContentFactory
from apps.core.models import format_money
from apps.experiments.factories import AssignmentFactory
from apps.market.factories import InsightFactory, MarketDataFactory, NewsArticleFactory, SentimentDataFactory
from apps.market.models import MarketData

SPEC_TABLES = {
    "market_data",
    "news_articles",
    "sentiment_data",
    "insights",
    "content_plans",
    "content_drafts",
    "published_content",
    "media",
    "community_users",
    "platform_identities",
    "user_interactions",
    "plans",
    "subscriptions",
    "stripe_events",
    "entitlements",
    "conversion_attempts",
    "exclusive_content",
    "moderation_actions",
    "moderation_rules",
    "moderation_strikes",
    "ab_tests",
    "ab_test_variants",
    "assignments",
    "performance_snapshots",
    "agent_logs",
    "pipeline_runs",
    "agent_configs",
}


def test_spec_table_names() -> None:
    tables = {model._meta.db_table for model in apps.get_models()}
    assert SPEC_TABLES - tables == set()


def _refused(factory: type, **kwargs: object) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**kwargs)


@pytest.mark.django_db
def test_natural_keys_are_unique() -> None:
    candle = MarketDataFactory()
    _refused(
        MarketDataFactory,
        exchange=candle.exchange,
        symbol=candle.symbol,
        timeframe=candle.timeframe,
        ts=candle.ts,
    )
    MarketDataFactory(exchange="kraken", symbol=candle.symbol, timeframe=candle.timeframe, ts=candle.ts)

    article = NewsArticleFactory()
    _refused(NewsArticleFactory, source=article.source, guid=article.guid)

    window = SentimentDataFactory()
    _refused(
        SentimentDataFactory,
        symbol=window.symbol,
        source=window.source,
        window_start=window.window_start,
        window_end=window.window_end,
    )

    identity = PlatformIdentityFactory()
    _refused(PlatformIdentityFactory, platform=identity.platform, external_id=identity.external_id)

    message = UserInteractionFactory()
    _refused(UserInteractionFactory, identity=message.identity, external_id=message.external_id)
    # Interactions without a platform id (a like seen only in aggregate) do not collide.
    UserInteractionFactory(identity=message.identity, external_id="")
    UserInteractionFactory(identity=message.identity, external_id="")

    post = PublishedContentFactory()
    _refused(PublishedContentFactory, platform=post.platform, external_id=post.external_id)

    event = StripeEventFactory()
    _refused(StripeEventFactory, stripe_id=event.stripe_id)

    subscription = SubscriptionFactory()
    _refused(SubscriptionFactory, stripe_subscription_id=subscription.stripe_subscription_id)

    assignment = AssignmentFactory()
    _refused(AssignmentFactory, variant=assignment.variant, subject_key=assignment.subject_key)

    snapshot = PerformanceSnapshotFactory()
    _refused(
        PerformanceSnapshotFactory,
        metric=snapshot.metric,
        scope=snapshot.scope,
        captured_at=snapshot.captured_at,
    )


@pytest.mark.django_db
def test_upsert_on_the_natural_key_does_not_duplicate() -> None:
    ts = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    rows = [
        MarketDataFactory.build(exchange="binance", symbol="ETH/USDT", timeframe="1h", ts=ts, close=3000.0)
    ]
    MarketData.objects.bulk_create(rows, ignore_conflicts=True)
    again = [
        MarketDataFactory.build(exchange="binance", symbol="ETH/USDT", timeframe="1h", ts=ts, close=3010.0)
    ]
    MarketData.objects.bulk_create(
        again,
        update_conflicts=True,
        unique_fields=["exchange", "symbol", "timeframe", "ts"],
        update_fields=["open", "high", "low", "close", "volume"],
    )
    assert list(MarketData.objects.values_list("close", flat=True)) == [3010.0]


@pytest.mark.django_db
def test_database_refuses_out_of_range_values() -> None:
    _refused(InsightFactory, confidence=1.2)
    _refused(InsightFactory, confidence=-0.1)
    _refused(MarketDataFactory, high=1.0, low=2.0)
    _refused(SentimentDataFactory, score=1.5)
    now = timezone.now()
    _refused(EntitlementFactory, starts_at=now, ends_at=now - dt.timedelta(days=1))
    # An entitlement that comes from a subscription must say which.
    _refused(EntitlementFactory, source="subscription", subscription=None)
    AgentRunFactory(agent_name="scanner", status="running")
    # Single-flight: a second running row for the same agent is refused by the database.
    _refused(AgentRunFactory, agent_name="scanner", status="running")
    AgentRunFactory(agent_name="scanner", status="succeeded")


@pytest.mark.django_db
def test_money_is_integer_minor_units() -> None:
    price = PlanPriceFactory(amount_minor=2900, currency="usd", interval="month")
    yearly = PlanPriceFactory(plan=price.plan, amount_minor=29000, currency="usd", interval="year")
    assert str(price) == f"{price.plan.name} $29.00/month"
    assert (price.monthly_amount_minor, yearly.monthly_amount_minor) == (2900, 2417)
    assert format_money(123456, "eur") == "€1,234.56"
    assert format_money(-550, "gbp") == "-£5.50"
    assert format_money(5, "jpy") == "JPY 0.05"


@pytest.mark.django_db
def test_strs_read_well() -> None:
    candle = MarketDataFactory(
        exchange="binance",
        symbol="BTC/USDT",
        ts=dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC),
        open=60000.0,
        close=60100.0,
    )
    assert str(candle) == "binance BTC/USDT 1h 2026-11-01 09:00 close 60100"
    insight = InsightFactory(symbol="SOL/USDT", type="volume_spike", confidence=0.815)
    assert str(insight) == "SOL/USDT Volume spike (82%)"
    plan = ContentPlanFactory(platform="telegram", format="telegram_chart_post", topic="SOL volume spike")
    assert str(plan) == "Telegram Telegram post with chart: SOL volume spike"
    identity = PlatformIdentityFactory(platform="discord", username="satoshi")
    assert str(identity) == "Discord @satoshi"
