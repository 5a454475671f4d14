"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.market.models import (
    Insight,
    InsightStatus,
    InsightType,
    MarketData,
    NewsArticle,
    SentimentData,
    SentimentLabel,
    Timeframe,
)


class MarketDataFactory(DjangoModelFactory[MarketData]):
    class Meta:
        model = MarketData

    exchange = "binance"
    symbol = "BTC/USDT"
    timeframe = Timeframe.H1
    ts = factory.Sequence(
        lambda n: timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=n + 1)
    )
    open = 60000.0
    high = factory.LazyAttribute(lambda o: max(o.open, o.close) * 1.004)
    low = factory.LazyAttribute(lambda o: min(o.open, o.close) * 0.996)
    close = factory.LazyAttribute(lambda o: o.open * 1.001)
    volume = 125.5


class NewsArticleFactory(DjangoModelFactory[NewsArticle]):
    class Meta:
        model = NewsArticle

    source = "CoinDesk"
    guid = factory.Sequence(lambda n: f"https://news.example.com/articles/{n}")
    url = factory.LazyAttribute(lambda o: o.guid)
    title = factory.Faker("sentence", nb_words=9)
    summary = factory.Faker("paragraph")
    published_at = factory.LazyFunction(timezone.now)
    symbols = factory.LazyFunction(lambda: ["BTC/USDT"])
    sentiment_score = 0.35
    sentiment_label = SentimentLabel.BULLISH


class SentimentDataFactory(DjangoModelFactory[SentimentData]):
    class Meta:
        model = SentimentData

    symbol = "BTC/USDT"
    source = "x"
    window_end = factory.Sequence(
        lambda n: timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=n)
    )
    window_start = factory.LazyAttribute(lambda o: o.window_end - dt.timedelta(hours=1))
    sample_size = 120
    score = 0.18
    positive = 54
    neutral = 40
    negative = 26


class InsightFactory(DjangoModelFactory[Insight]):
    class Meta:
        model = Insight

    type = InsightType.RSI_OVERSOLD
    symbol = "BTC/USDT"
    timeframe = Timeframe.H1
    confidence = 0.72
    headline = factory.LazyAttribute(lambda o: f"{o.symbol.split('/')[0]} RSI at {o.evidence['rsi']:.1f}")
    evidence = factory.LazyFunction(lambda: {"rsi": 27.4, "period": 14, "close": 58123.5})
    status = InsightStatus.NEW
    detected_at = factory.LazyFunction(timezone.now)
