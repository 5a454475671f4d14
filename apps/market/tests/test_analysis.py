"""The analysis agent: crafted candle and sentiment series produce each insight type with exact evidence;
weak signals, repeats and stale data produce nothing; the queries do not grow with the watchlist; and the
simulated market yields a realistic mix of signals."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections import Counter
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.agents.base import AgentContext, AgentResult
from apps.integrations.exchanges import SimulatedExchange
from apps.market import services
from apps.market.agents import AnalysisAgent
from apps.market.factories import InsightFactory, MarketDataFactory, SentimentDataFactory
from apps.market.models import Insight, InsightStatus, InsightType, MarketData

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
WATCHLIST = ["BTC/USDT", "ETH/USDT"]
# Volumes alternating 90 and 110: over any 48 of them the mean is 100 and the population stddev 10.
BASE_VOLUMES = [90.0, 110.0] * 30


@pytest.fixture(autouse=True)
def _market_settings(settings: Any) -> None:
    settings.WATCHLIST = WATCHLIST
    settings.MARKET_TIMEFRAME = "1h"


def _write_candles(
    symbol: str,
    closes: list[float] | np.ndarray,
    volumes: list[float] | None = None,
    *,
    end: dt.datetime = NOW,
    exchange: str = "simulated",
) -> None:
    """Hourly candles whose newest closes at ``end``."""
    volumes = volumes if volumes is not None else [100.0] * len(closes)
    assert len(volumes) == len(closes)
    MarketData.objects.bulk_create(
        MarketDataFactory.build(
            exchange=exchange,
            symbol=symbol,
            timeframe="1h",
            ts=end - (len(closes) - i) * HOUR,
            open=float(close),
            high=float(close),
            low=float(close),
            close=float(close),
            volume=float(volume),
        )
        for i, (close, volume) in enumerate(zip(closes, volumes, strict=True))
    )


def _run(now: dt.datetime = NOW, **parameters: Any) -> AgentResult:
    ctx = AgentContext(run_id=1, agent_name="analysis", trigger="manual", now=now, parameters=parameters)
    return AnalysisAgent().execute(ctx)


def _only(insight_type: str, symbol: str = "BTC/USDT") -> Insight:
    return Insight.objects.get(type=insight_type, symbol=symbol)


def _sig(value: float) -> float:
    """The evidence convention for prices and price-like values: 6 significant digits."""
    return float(f"{value:.6g}")


def _wilder_rsi(closes: list[float], period: int = 14) -> float:
    changes = [b - a for a, b in itertools.pairwise(closes)]
    gain = sum(max(c, 0) for c in changes[:period]) / period
    loss = sum(max(-c, 0) for c in changes[:period]) / period
    for c in changes[period:]:
        gain = (gain * (period - 1) + max(c, 0)) / period
        loss = (loss * (period - 1) + max(-c, 0)) / period
    return 100 - 100 / (1 + gain / loss)


def _loop_ema(values: list[float], period: int) -> list[float]:
    out = [math.nan] * len(values)
    first = next(i for i, v in enumerate(values) if not math.isnan(v))
    out[first + period - 1] = sum(values[first : first + period]) / period
    for i in range(first + period, len(values)):
        out[i] = 2 / (period + 1) * values[i] + (1 - 2 / (period + 1)) * out[i - 1]
    return out


def _loop_macd(closes: list[float]) -> tuple[float, float, float]:
    line = [f - s for f, s in zip(_loop_ema(closes, 12), _loop_ema(closes, 26), strict=True)]
    signal = _loop_ema(line, 9)
    return line[-1], signal[-1], line[-1] - signal[-1]


# --- each insight type, with its evidence -------------------------------------------------------------------


def test_price_move_over_one_hour() -> None:
    _write_candles("BTC/USDT", [100.0] * 59 + [103.0])

    result = _run()

    move = _only(InsightType.PRICE_MOVE)
    # 3% in one hour: strength 3 / sqrt(1) is one half-life past the threshold of 2.
    assert move.evidence == {"close": 103.0, "change_pct": 3.0, "window_hours": 1}
    assert move.confidence == 0.75
    assert move.headline == "BTC up 3.0% in 1h"
    assert (move.timeframe, move.status) == ("1h", InsightStatus.NEW)
    assert (move.detected_at, move.expires_at) == (NOW, NOW + 12 * HOUR)
    # A flat market that jumps: RSI has seen no loss at all, and the close is far outside its band.
    rsi = _only(InsightType.RSI_OVERBOUGHT)
    assert rsi.evidence == {"rsi": 100.0, "period": 14, "close": 103.0, "threshold": 70.0}
    assert rsi.confidence == 0.9922
    window = [100.0] * 19 + [103.0]
    mean, sd = statistics.fmean(window), statistics.pstdev(window)
    assert _only(InsightType.BOLLINGER_BREAKOUT_UP).evidence == {
        "close": 103.0,
        "upper": _sig(mean + 2 * sd),
        "lower": _sig(mean - 2 * sd),
        "middle": _sig(mean),
        "period": 20,
        "stddev": 2.0,
    }
    assert result.counters["symbols"] == 1
    assert result.counters["insights_created"] == Insight.objects.count()


def test_price_move_keeps_the_most_extreme_window() -> None:
    # Half a percent down every hour for a day: 1h and 4h are ordinary, 24h is not.
    closes = [100.0] * 40 + [100.0 * 0.995**i for i in range(1, 25)]
    _write_candles("BTC/USDT", closes)

    _run()

    change = (closes[-1] / closes[-25] - 1) * 100
    move = _only(InsightType.PRICE_MOVE)
    assert move.evidence == {"close": _sig(closes[-1]), "change_pct": round(change, 2), "window_hours": 24}
    assert move.confidence == round(1 - 0.5 * 2 ** -(abs(change) / math.sqrt(24) - 2), 4)
    assert move.headline == f"BTC down {abs(change):.1f}% in 24h"
    oversold = _only(InsightType.RSI_OVERSOLD)
    assert oversold.evidence == {"rsi": 0.0, "period": 14, "close": _sig(closes[-1]), "threshold": 30.0}


def test_rsi_overbought_and_oversold() -> None:
    # Trending by 0.5 a candle with a 1.2 zigzag: Wilder's RSI settles either side of 70 (and of 30).
    rising = [100 + i * 0.5 + (0.6 if i % 2 else -0.6) for i in range(60)]
    falling = [100 - i * 0.5 + (0.6 if i % 2 else -0.6) for i in range(59)]
    _write_candles("BTC/USDT", rising)
    _write_candles("ETH/USDT", falling)

    _run()

    high, low = _wilder_rsi(rising), _wilder_rsi(falling)
    assert high > 70
    assert low < 30
    overbought = _only(InsightType.RSI_OVERBOUGHT)
    assert overbought.evidence == {
        "rsi": round(high, 2),
        "period": 14,
        "close": _sig(rising[-1]),
        "threshold": 70.0,
    }
    assert overbought.confidence == round(1 - 0.5 * 2 ** -((high - 70) / 5), 4)
    assert overbought.headline == f"BTC RSI(14) at {high:.1f}: overbought"
    oversold = _only(InsightType.RSI_OVERSOLD, "ETH/USDT")
    assert oversold.evidence == {
        "rsi": round(low, 2),
        "period": 14,
        "close": _sig(falling[-1]),
        "threshold": 30.0,
    }
    assert oversold.confidence == round(1 - 0.5 * 2 ** -((30 - low) / 5), 4)
    assert oversold.expires_at == NOW + 24 * HOUR


@pytest.mark.parametrize(
    ("length", "insight_type", "direction"),
    [(77, InsightType.MACD_BULLISH_CROSS, "above"), (97, InsightType.MACD_BEARISH_CROSS, "below")],
)
def test_macd_cross_on_the_newest_candle(length: int, insight_type: str, direction: str) -> None:
    # A sine wave of period 40: the MACD crosses its signal line up at candle 76 and down at candle 96.
    closes = (100 + 5 * np.sin(2 * np.pi * np.arange(length) / 40)).tolist()
    _write_candles("BTC/USDT", closes)

    _run()

    macd, signal, histogram = _loop_macd(closes)
    previous = _loop_macd(closes[:-1])[2]
    assert (previous < 0 < histogram) if direction == "above" else (previous > 0 > histogram)
    cross = _only(insight_type)
    assert cross.evidence == {
        "macd": _sig(macd),
        "signal": _sig(signal),
        "histogram": _sig(histogram),
        "close": _sig(closes[-1]),
    }
    assert cross.confidence == round(1 - 0.5 * 2 ** -((abs(histogram) / closes[-1] * 1e4 - 1) / 4), 4)
    assert cross.headline == f"BTC MACD crossed {direction} its signal line"


def test_macd_cross_is_only_reported_on_the_candle_it_happens() -> None:
    # One candle after the bullish cross the histogram is still positive: no new cross.
    _write_candles("BTC/USDT", (100 + 5 * np.sin(2 * np.pi * np.arange(78) / 40)).tolist())

    result = _run()

    assert not Insight.objects.filter(type=InsightType.MACD_BULLISH_CROSS).exists()
    assert result.counters["symbols"] == 1


def test_bollinger_breakout_down() -> None:
    closes = [99.0, 101.0] * 30 + [95.0]
    _write_candles("BTC/USDT", closes)

    _run()

    window = closes[-20:]
    mean, sd = statistics.fmean(window), statistics.pstdev(window)
    breakout = _only(InsightType.BOLLINGER_BREAKOUT_DOWN)
    assert breakout.evidence == {
        "close": 95.0,
        "upper": _sig(mean + 2 * sd),
        "lower": _sig(mean - 2 * sd),
        "middle": _sig(mean),
        "period": 20,
        "stddev": 2.0,
    }
    assert breakout.confidence == round(1 - 0.5 * 2 ** -(((mean - 2 * sd) - 95.0) / sd / 0.5), 4)
    assert breakout.headline == "BTC closed below its lower Bollinger band"


def test_volume_spike_alone_on_a_flat_market() -> None:
    # 140 against a baseline of mean 100 and stddev 10: z = 4, one half-life past the threshold of 3.
    _write_candles("BTC/USDT", [100.0] * 49, [*BASE_VOLUMES[:48], 140.0])

    result = _run()

    spike = Insight.objects.get()
    assert spike.type == InsightType.VOLUME_SPIKE
    assert spike.evidence == {
        "volume": 140.0,
        "mean_volume": 100.0,
        "zscore": 4.0,
        "ratio": 1.4,
        "close": 100.0,
    }
    assert spike.confidence == 0.75
    assert spike.headline == "BTC volume 4.0σ above its 48h average"
    assert spike.expires_at == NOW + 6 * HOUR
    # ETH has no candles at all.
    assert result.counters == {
        "symbols": 1,
        "symbols_stale": 1,
        "signals": 1,
        "insights_created": 1,
        "dropped_low_confidence": 0,
        "dropped_cooldown": 0,
    }


def test_sentiment_shift() -> None:
    for hours_ago in range(1, 25):
        SentimentDataFactory(symbol="ETH/USDT", window_end=NOW - hours_ago * HOUR, score=0.1)
    SentimentDataFactory(symbol="ETH/USDT", window_end=NOW, score=0.4, sample_size=120)

    result = _run()

    shift = _only(InsightType.SENTIMENT_SHIFT, "ETH/USDT")
    assert shift.evidence == {
        "score": 0.4,
        "previous_score": 0.1,
        "delta": 0.3,
        "sample_size": 120,
        "source": "x",
    }
    # |delta| 0.30 is 1.5 half-lives (0.10) past the threshold of 0.15.
    assert shift.confidence == round(1 - 0.5 * 2**-1.5, 4) == 0.8232
    assert shift.headline == "ETH sentiment on x jumps to +0.40 from +0.10"
    assert shift.timeframe == "1h"
    assert result.counters["insights_created"] == 1


@pytest.mark.parametrize(
    ("latest_end", "sample_size", "baseline_windows"),
    [
        pytest.param(NOW - 2 * HOUR, 120, 24, id="stale"),
        pytest.param(NOW, 9, 24, id="too-few-posts"),
        pytest.param(NOW, 120, 2, id="too-little-history"),
    ],
)
def test_sentiment_shift_needs_fresh_well_sampled_windows(
    latest_end: dt.datetime, sample_size: int, baseline_windows: int
) -> None:
    for n in range(1, baseline_windows + 1):
        SentimentDataFactory(symbol="BTC/USDT", window_end=latest_end - n * HOUR, score=0.1)
    SentimentDataFactory(symbol="BTC/USDT", window_end=latest_end, score=0.6, sample_size=sample_size)

    result = _run()

    assert not Insight.objects.exists()
    assert result.counters["signals"] == 0


# --- what is not reported -----------------------------------------------------------------------------------


def test_weak_signals_are_dropped_and_the_gate_is_a_parameter() -> None:
    # z = 3.1 is a spike, but a faint one: confidence 1 - 0.5 * 2**-0.1 = 0.5335.
    _write_candles("BTC/USDT", [100.0] * 49, [*BASE_VOLUMES[:48], 131.0])

    result = _run()

    assert not Insight.objects.exists()
    assert result.counters["signals"] == 1
    assert result.counters["dropped_low_confidence"] == 1

    _run(min_confidence=0.5)

    assert Insight.objects.get().confidence == 0.5335


def test_cooldown_suppresses_repeats_per_symbol_and_type() -> None:
    for symbol in WATCHLIST:
        _write_candles(symbol, [100.0] * 49, [*BASE_VOLUMES[:48], 140.0])
    # BTC had a volume spike 5 hours ago (since discarded: still not worth repeating); ETH had a different
    # insight, which does not hold back a volume spike.
    InsightFactory(
        symbol="BTC/USDT",
        type=InsightType.VOLUME_SPIKE,
        detected_at=NOW - 5 * HOUR,
        status=InsightStatus.DISCARDED,
    )
    InsightFactory(symbol="ETH/USDT", type=InsightType.RSI_OVERSOLD, detected_at=NOW - HOUR)

    first = _run()

    assert first.counters["dropped_cooldown"] == 1
    assert list(Insight.objects.filter(detected_at=NOW).values_list("symbol", "type")) == [
        ("ETH/USDT", InsightType.VOLUME_SPIKE)
    ]

    second = _run()

    assert second.counters["dropped_cooldown"] == 2
    assert second.counters["insights_created"] == 0
    assert Insight.objects.count() == 3

    # A shorter cooldown lets BTC's spike through: its last one was 5 hours ago.
    third = _run(cooldown_hours=4)

    assert third.counters["insights_created"] == 1
    assert third.counters["dropped_cooldown"] == 1


def test_only_the_newest_closed_candle_counts() -> None:
    # A spike ten candles ago was news then, and the candle still forming at NOW is not closed yet.
    volumes = BASE_VOLUMES[:48] + [400.0] + [100.0] * 10
    _write_candles("BTC/USDT", [100.0] * 59, volumes)
    _write_candles("BTC/USDT", [100.0], [5000.0], end=NOW + HOUR)

    result = _run()

    assert result.counters["signals"] == 0
    assert not Insight.objects.exists()


def test_stale_candles_are_not_analysed() -> None:
    # The scanner stopped three hours ago; the last spike it saw was reported back then.
    _write_candles("BTC/USDT", [100.0] * 49, [*BASE_VOLUMES[:48], 140.0], end=NOW - 3 * HOUR)

    result = _run()

    assert result.counters["symbols"] == 0
    assert result.counters["symbols_stale"] == 2
    assert not Insight.objects.exists()
    # Two candles missing is stale already; one missing (a scan that failed) is tolerated.
    assert _run(now=NOW - HOUR).counters["symbols"] == 0
    assert _run(now=NOW - 2 * HOUR).counters["symbols"] == 1
    assert Insight.objects.get().type == InsightType.VOLUME_SPIKE


def test_a_symbol_on_two_exchanges_is_read_from_the_freshest() -> None:
    _write_candles("BTC/USDT", [100.0] * 49, [*BASE_VOLUMES[:48], 140.0])
    _write_candles("BTC/USDT", [100.0] * 100, exchange="binance", end=NOW - 10 * HOUR)

    _run()

    assert Insight.objects.get().type == InsightType.VOLUME_SPIKE


# --- confidence, parameters and cost ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["price_move", "rsi", "macd", "bollinger", "volume", "sentiment"])
def test_confidence_is_monotone_and_bounded(kind: str) -> None:
    threshold, half_life = services._CONFIDENCE[kind]
    strengths = threshold + half_life * np.linspace(0, 40, 400)
    values = [services.confidence_for(kind, float(x)) for x in strengths]
    assert values[0] == 0.5
    assert services.confidence_for(kind, threshold + half_life) == 0.75
    assert all(0 <= v <= 1 for v in values)
    assert all(a <= b for a, b in itertools.pairwise(values))


def test_parameters_are_validated() -> None:
    assert AnalysisAgent.validate_parameters({}) == {"min_confidence": 0.55, "cooldown_hours": 6.0}
    assert AnalysisAgent.validate_parameters({"cooldown_hours": 2})["cooldown_hours"] == 2
    with pytest.raises(ValidationError):
        AnalysisAgent.validate_parameters({"min_confidence": "high"})
    with pytest.raises(ValidationError):
        AnalysisAgent.validate_parameters({"lookback": 10})


def test_queries_do_not_grow_with_the_watchlist(settings: Any, django_assert_max_num_queries: Any) -> None:
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT"]
    for symbol in symbols:
        _write_candles(symbol, [100.0] * 49, [*BASE_VOLUMES[:48], 140.0])
        SentimentDataFactory.create_batch(5, symbol=symbol)

    counts = []
    for watchlist in (symbols[:1], symbols):
        settings.WATCHLIST = watchlist
        Insight.objects.all().delete()
        with CaptureQueriesContext(connection) as queries:
            result = _run()
        assert result.counters["insights_created"] == len(watchlist)
        counts.append(len(queries))
    # Candles, sentiment, recent insights, and one insert.
    assert counts[0] == counts[1] <= 4
    with django_assert_max_num_queries(4):
        _run(now=NOW + 7 * HOUR)


def test_insights_detect_is_callable_without_the_agent() -> None:
    _write_candles("BTC/USDT", [100.0] * 49, [*BASE_VOLUMES[:48], 140.0])

    created = services.insights_detect(
        now=NOW, symbols=["BTC/USDT"], timeframe="1h", min_confidence=0.55, cooldown_hours=6
    )

    assert [i.type for i in created] == [InsightType.VOLUME_SPIKE]
    assert created[0].pk is not None


# --- on the simulated market --------------------------------------------------------------------------------


def test_the_simulated_market_yields_a_realistic_mix_of_signals(settings: Any) -> None:
    """Twelve days of the offline twin's candles, analysed hour by hour over the last four as the scanner
    would feed them: the twin must be lively enough to exercise most of the analysis, and the gate and the
    cooldown must keep the feed readable."""
    settings.WATCHLIST = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"]
    exchange = SimulatedExchange(clock=lambda: NOW)
    for symbol in settings.WATCHLIST:
        candles = exchange.fetch_ohlcv(symbol, "1h", since=None, limit=12 * 24)
        _write_candles(symbol, [c.close for c in candles], [c.volume for c in candles])

    totals: Counter[str] = Counter()
    for hour in range(4 * 24, -1, -1):
        totals.update(_run(now=NOW - hour * HOUR).counters)

    created = Counter(Insight.objects.values_list("type", flat=True))
    assert len(created) >= 6, created
    assert totals["dropped_low_confidence"] > 0
    assert totals["dropped_cooldown"] > 0
    # Enough to write about, not so many that the feed is noise: at most a couple a day per symbol and type.
    assert 10 <= created.total() <= 5 * 4 * 2 * len(created), created
    for insight in Insight.objects.all():
        assert 0.55 <= insight.confidence <= 1
        assert insight.expires_at is not None
        assert insight.expires_at - insight.detected_at == services.HORIZONS[insight.type]
