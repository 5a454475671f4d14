"""Reads of market intelligence."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

import numpy as np
from django.core.cache import cache
from django.db.models import Max, QuerySet

from apps.integrations.types import Ticker
from apps.market.indicators import FloatArray
from apps.market.models import Insight, InsightStatus, MarketData, NewsArticle, SentimentData

_TIMEFRAME_UNITS = {"m": 60, "h": 3600, "d": 86400}
TICKER_CACHE_KEY = "market:ticker:{symbol}"


def timeframe_step(timeframe: str) -> dt.timedelta:
    """The length of one candle: ``"15m"`` → 15 minutes, ``"4h"`` → 4 hours."""
    try:
        return dt.timedelta(seconds=int(timeframe[:-1]) * _TIMEFRAME_UNITS[timeframe[-1]])
    except (KeyError, ValueError):
        raise ValueError(f"unknown timeframe {timeframe!r}") from None


def insight_list(
    *,
    symbol: str | None = None,
    insight_type: str | None = None,
    min_confidence: float | None = None,
) -> QuerySet[Insight]:
    """Insights that may be shown outside the pipeline, newest first.

    Discarded insights were judged wrong or noise by the analysis, so they never leave the building.
    """
    insights = Insight.objects.exclude(status=InsightStatus.DISCARDED)
    if symbol is not None:
        insights = insights.filter(symbol=symbol)
    if insight_type is not None:
        insights = insights.filter(type=insight_type)
    if min_confidence is not None:
        insights = insights.filter(confidence__gte=min_confidence)
    # The id breaks ties between insights detected in the same instant, so pages never overlap.
    return insights.order_by("-detected_at", "-id")


def insight_recent_keys(*, symbols: Iterable[str], since: dt.datetime) -> set[tuple[str, str]]:
    """(symbol, type) of every insight detected since ``since``, whatever its status: one that was discarded
    as noise should not come straight back either."""
    return set(
        Insight.objects.filter(symbol__in=list(symbols), detected_at__gte=since)
        .values_list("symbol", "type")
        .distinct()
    )


def market_data_latest_ts(*, exchange: str, timeframe: str, symbols: Iterable[str]) -> dict[str, dt.datetime]:
    """Open time of the newest stored candle per symbol (symbols with none are absent), in one query."""
    rows = (
        MarketData.objects.filter(exchange=exchange, timeframe=timeframe, symbol__in=list(symbols))
        .values("symbol")
        .annotate(latest=Max("ts"))
        .values_list("symbol", "latest")
    )
    return dict(rows)


@dataclass(frozen=True, slots=True)
class CandleSeries:
    """One symbol's closed candles from one exchange, oldest first, as arrays ready for the indicators."""

    exchange: str
    ts: list[dt.datetime]
    close: FloatArray
    volume: FloatArray


def market_data_series(
    *, symbols: Iterable[str], timeframe: str, since: dt.datetime, until: dt.datetime
) -> dict[str, CandleSeries]:
    """Candles opened in [since, until] for every symbol, in one query.

    A symbol stored from several exchanges (say after switching exchange backends) gets the series of the
    exchange with the newest candle, and of those the longest, so one venue's prices are never spliced into
    another's.
    """
    rows = (
        MarketData.objects.filter(symbol__in=list(symbols), timeframe=timeframe, ts__gte=since, ts__lte=until)
        .order_by("symbol", "exchange", "ts")
        .values_list("symbol", "exchange", "ts", "close", "volume")
    )
    series: dict[str, CandleSeries] = {}
    for symbol, per_symbol in groupby(rows, key=itemgetter(0)):
        candidates = []
        for exchange, per_exchange in groupby(per_symbol, key=itemgetter(1)):
            candles = list(per_exchange)
            candidates.append((candles[-1][2], len(candles), exchange, candles))
        _, _, exchange, candles = max(candidates, key=itemgetter(0, 1))
        series[symbol] = CandleSeries(
            exchange=exchange,
            ts=[c[2] for c in candles],
            close=np.fromiter((c[3] for c in candles), dtype=np.float64, count=len(candles)),
            volume=np.fromiter((c[4] for c in candles), dtype=np.float64, count=len(candles)),
        )
    return series


def news_article_latest_published(*, sources: Iterable[str]) -> dict[str, dt.datetime]:
    """Publication time of the newest stored article per source (sources with none are absent)."""
    rows = (
        NewsArticle.objects.filter(source__in=list(sources))
        .values("source")
        .annotate(latest=Max("published_at"))
        .values_list("source", "latest")
    )
    return dict(rows)


def sentiment_data_symbols_with_window(
    *, source: str, window_start: dt.datetime, window_end: dt.datetime, symbols: Iterable[str]
) -> set[str]:
    """Symbols whose sentiment for exactly this window and source is already stored."""
    return set(
        SentimentData.objects.filter(
            source=source, window_start=window_start, window_end=window_end, symbol__in=list(symbols)
        ).values_list("symbol", flat=True)
    )


@dataclass(frozen=True, slots=True)
class SentimentWindow:
    window_start: dt.datetime
    window_end: dt.datetime
    score: float
    sample_size: int


def sentiment_data_recent(
    *, symbols: Iterable[str], since: dt.datetime, until: dt.datetime
) -> dict[tuple[str, str], list[SentimentWindow]]:
    """Sentiment windows ending in (since, until] per (symbol, source), newest first, in one query."""
    rows = (
        SentimentData.objects.filter(symbol__in=list(symbols), window_end__gt=since, window_end__lte=until)
        .order_by("symbol", "source", "-window_end")
        .values_list("symbol", "source", "window_start", "window_end", "score", "sample_size")
    )
    return {
        key: [SentimentWindow(*row[2:]) for row in group]
        for key, group in groupby(rows, key=itemgetter(0, 1))
    }


def market_ticker_latest(*, symbols: Iterable[str]) -> dict[str, Ticker]:
    """The newest 24h ticker the scanner saw per symbol (symbols not seen recently are absent)."""
    found = cache.get_many([TICKER_CACHE_KEY.format(symbol=s) for s in symbols])
    return {ticker.symbol: ticker for ticker in found.values()}
