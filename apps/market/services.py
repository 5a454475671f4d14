"""Writes to the market intelligence rows: ingestion of candles, tickers, news and social sentiment, and the
insights the analysis draws from them."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.cache import cache
from django.utils import timezone

from apps.integrations.news import symbols_in
from apps.integrations.sentiment import label_for, score_text
from apps.integrations.types import Article, Candle, SocialPost, Ticker
from apps.market import indicators, selectors
from apps.market.models import (
    Insight,
    InsightStatus,
    InsightType,
    MarketData,
    NewsArticle,
    SentimentData,
    SentimentLabel,
)
from apps.market.selectors import CandleSeries, SentimentWindow, timeframe_step


def insight_discard(*, insight_ids: Iterable[int]) -> int:
    """Keep new insights out of content planning; returns how many changed. Insights already planned or used
    are left alone: content exists for them."""
    return Insight.objects.filter(pk__in=list(insight_ids), status=InsightStatus.NEW).update(
        status=InsightStatus.DISCARDED, updated_at=timezone.now()
    )


# --- ingestion ----------------------------------------------------------------------------------------------

# Tickers are a live view, not history: the cache (shared by every process) holds the newest per symbol, and
# one that is not refreshed within this long is better absent than shown as current.
TICKER_TTL_SECONDS = 60 * 60


def market_data_upsert(
    *, exchange: str, timeframe: str, candles: Mapping[str, Sequence[Candle]], now: dt.datetime
) -> int:
    """Store candles per symbol, replacing any stored under the same natural key; returns how many were
    written. Candles still forming at ``now`` are left out, so every stored candle is final."""
    step = timeframe_step(timeframe)
    rows = [
        MarketData(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            ts=c.ts,
            open=c.open,
            high=c.high,
            low=c.low,
            close=c.close,
            volume=c.volume,
        )
        for symbol, series in candles.items()
        for c in series
        if c.ts + step <= now
    ]
    MarketData.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["exchange", "symbol", "timeframe", "ts"],
        update_fields=["open", "high", "low", "close", "volume", "ingested_at"],
    )
    return len(rows)


def market_tickers_store(*, tickers: Iterable[Ticker]) -> int:
    """Remember the newest 24h ticker per symbol for the live views; returns how many were stored."""
    entries = {selectors.TICKER_CACHE_KEY.format(symbol=t.symbol): t for t in tickers}
    cache.set_many(entries, timeout=TICKER_TTL_SECONDS)
    return len(entries)


def news_articles_ingest(*, articles: Iterable[Article], watchlist: Sequence[str]) -> int:
    """Store articles not seen before, each scored for sentiment and tagged with the watchlist symbols it
    mentions; returns how many were new. Articles already stored are left as they are."""
    by_key = {(a.source, a.guid): a for a in articles}
    if not by_key:
        return 0
    sources = {source for source, _ in by_key}
    guids = {guid for _, guid in by_key}
    known = set(NewsArticle.objects.filter(source__in=sources, guid__in=guids).values_list("source", "guid"))
    rows = []
    for key, article in by_key.items():
        if key in known:
            continue
        text = f"{article.title}\n{article.summary}"
        score = score_text(text)
        rows.append(
            NewsArticle(
                source=article.source[:100],
                guid=article.guid[:500],
                title=article.title[:500],
                summary=article.summary,
                url=article.url[:1000],
                author=article.author[:200],
                published_at=article.published_at,
                symbols=symbols_in(text, watchlist),
                sentiment_score=score,
                sentiment_label=label_for(score),
            )
        )
    # A concurrent scan may have stored some of these since we looked; the natural key keeps one of each.
    NewsArticle.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    return len(rows)


def sentiment_data_record(
    *,
    source: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
    posts: Mapping[str, Iterable[SocialPost]],
) -> int:
    """Aggregate each symbol's posts created in [window_start, window_end) into one sentiment row (mean
    compound score and label counts), replacing a stored row for the same window; returns how many rows were
    written. A symbol with no posts in the window gets no row: a mean of nothing is not a neutral mood."""
    rows = []
    for symbol, symbol_posts in posts.items():
        scores = [score_text(p.text) for p in symbol_posts if window_start <= p.created_at < window_end]
        if not scores:
            continue
        labels: Counter[str] = Counter(label_for(s) for s in scores)
        rows.append(
            SentimentData(
                symbol=symbol,
                source=source,
                window_start=window_start,
                window_end=window_end,
                sample_size=len(scores),
                score=round(math.fsum(scores) / len(scores), 4),
                positive=labels[SentimentLabel.BULLISH],
                neutral=labels[SentimentLabel.NEUTRAL],
                negative=labels[SentimentLabel.BEARISH],
            )
        )
    SentimentData.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["symbol", "source", "window_start", "window_end"],
        update_fields=["sample_size", "score", "positive", "neutral", "negative"],
    )
    return len(rows)


# --- analysis -----------------------------------------------------------------------------------------------
#
# Confidence. Every signal has a strength x in its own natural unit and a threshold t below which it is not a
# signal at all. Its confidence is
#
#     confidence = 1 - 0.5 * 2 ** (-(x - t) / h)
#
# 0.5 at the threshold, rising strictly with x towards 1 (reached only by rounding to 4 places): each further
# h of strength halves the remaining doubt (t + h → 0.75, t + 2h → 0.875). With the default gate of 0.55 a
# signal needs x >= t + 0.152 h. Thresholds and half-lives are set so that on the simulated market, as on a
# real one, a handful of signals a day per symbol pass the gate. Per type:
#
# | type                  | strength x                                                  | t    | h    |
# | price_move            | |change %| / sqrt(window hours) (random-walk scaling, so one  | 2.0  | 1.0  |
# |                       | scale serves 1h, 4h and 24h; the strongest window is kept)  |      |      |
# | rsi_overbought        | RSI(14) - 70                                                | 0    | 5    |
# | rsi_oversold          | 30 - RSI(14)                                                | 0    | 5    |
# | macd_*_cross          | |histogram| / close, in basis points: how decisively the     | 1.0  | 4.0  |
# |                       | lines parted on the crossing candle                         |      |      |
# | bollinger_breakout_*  | distance of the close beyond the band, in standard devs     | 0    | 0.5  |
# | volume_spike          | z-score of the volume vs the trailing 48 candles            | 3.0  | 1.0  |
# | sentiment_shift       | |latest window score - mean of the previous windows|        | 0.15 | 0.10 |

RSI_PERIOD = 14
RSI_OVERBOUGHT, RSI_OVERSOLD = 70.0, 30.0
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_PERIOD, BOLLINGER_K = 20, 2.0
VOLUME_WINDOW = 48
PRICE_WINDOWS_HOURS = (1, 4, 24)
# Enough history for every indicator above to have warmed up; Wilder's smoothing needs several periods.
LOOKBACK_CANDLES = 200
# Sentiment: the baseline is the mean of up to this many earlier windows, and needs at least the minimum.
SENTIMENT_BASELINE_WINDOWS = 24
SENTIMENT_MIN_BASELINE = 3
# A mean over a handful of posts swings on one loud account.
SENTIMENT_MIN_SAMPLE = 10

_CONFIDENCE = {
    "price_move": (2.0, 1.0),
    "rsi": (0.0, 5.0),
    "macd": (1.0, 4.0),
    "bollinger": (0.0, 0.5),
    "volume": (3.0, 1.0),
    "sentiment": (0.15, 0.10),
}

# How long an insight stays worth talking about: a volume spike is old news within hours, an RSI or MACD
# reading describes the trend for about a day.
HORIZONS: dict[str, dt.timedelta] = {
    InsightType.PRICE_MOVE: dt.timedelta(hours=12),
    InsightType.RSI_OVERBOUGHT: dt.timedelta(hours=24),
    InsightType.RSI_OVERSOLD: dt.timedelta(hours=24),
    InsightType.MACD_BULLISH_CROSS: dt.timedelta(hours=24),
    InsightType.MACD_BEARISH_CROSS: dt.timedelta(hours=24),
    InsightType.BOLLINGER_BREAKOUT_UP: dt.timedelta(hours=12),
    InsightType.BOLLINGER_BREAKOUT_DOWN: dt.timedelta(hours=12),
    InsightType.VOLUME_SPIKE: dt.timedelta(hours=6),
    InsightType.SENTIMENT_SHIFT: dt.timedelta(hours=12),
}


def confidence_for(kind: str, strength: float) -> float:
    """The documented mapping above, rounded to 4 places; ``kind`` is a row of ``_CONFIDENCE``."""
    threshold, half_life = _CONFIDENCE[kind]
    return round(1.0 - 0.5 * 2.0 ** (-(strength - threshold) / half_life), 4)


def _price(value: float) -> float:
    """Prices, volumes and MACD values to 6 significant digits: meaningful for BTC at 64,000 and DOGE at 0.14."""
    return float(f"{value:.6g}")


def _ratio(value: float) -> float:
    """Percentages, RSI, z-scores and multiples to 2 decimals."""
    return round(float(value), 2)


def _score(value: float) -> float:
    """Sentiment scores to 3 decimals."""
    return round(float(value), 3)


@dataclass(frozen=True, slots=True)
class Signal:
    type: InsightType
    symbol: str
    timeframe: str
    confidence: float
    headline: str
    evidence: dict[str, Any]


def _coin(symbol: str) -> str:
    return symbol.split("/")[0]


def _candle_signals(symbol: str, timeframe: str, series: CandleSeries) -> list[Signal]:
    """Signals of the newest candle in ``series`` (compared with the one before it for crossovers)."""
    close, volume = series.close, series.volume
    step = timeframe_step(timeframe)
    last = float(close[-1])
    coin = _coin(symbol)
    found: list[Signal] = []

    def signal(kind: InsightType, confidence: float, headline: str, evidence: dict[str, Any]) -> None:
        found.append(Signal(kind, symbol, timeframe, confidence, headline, evidence))

    best_move: tuple[float, int, float] | None = None
    for hours in PRICE_WINDOWS_HOURS:
        window = dt.timedelta(hours=hours)
        candles, remainder = divmod(window, step)
        # A window shorter than a candle cannot be measured; one whose start is missing would be mislabelled.
        if (
            remainder
            or candles < 1
            or len(close) <= candles
            or series.ts[-1 - candles] != series.ts[-1] - window
        ):
            continue
        change = float(indicators.pct_change(close[-1 - candles :], candles)[-1])
        strength = abs(change) / math.sqrt(hours)
        if strength >= _CONFIDENCE["price_move"][0] and (best_move is None or strength > best_move[0]):
            best_move = (strength, hours, change)
    if best_move is not None:
        strength, hours, change = best_move
        signal(
            InsightType.PRICE_MOVE,
            confidence_for("price_move", strength),
            f"{coin} {'up' if change >= 0 else 'down'} {abs(change):.1f}% in {hours}h",
            {"close": _price(last), "change_pct": _ratio(change), "window_hours": hours},
        )

    rsi = float(indicators.rsi(close, RSI_PERIOD)[-1])
    if rsi >= RSI_OVERBOUGHT or rsi <= RSI_OVERSOLD:
        overbought = rsi >= RSI_OVERBOUGHT
        signal(
            InsightType.RSI_OVERBOUGHT if overbought else InsightType.RSI_OVERSOLD,
            confidence_for("rsi", rsi - RSI_OVERBOUGHT if overbought else RSI_OVERSOLD - rsi),
            f"{coin} RSI({RSI_PERIOD}) at {rsi:.1f}: {'overbought' if overbought else 'oversold'}",
            {
                "rsi": _ratio(rsi),
                "period": RSI_PERIOD,
                "close": _price(last),
                "threshold": RSI_OVERBOUGHT if overbought else RSI_OVERSOLD,
            },
        )

    line, signal_line, hist = indicators.macd(close, MACD_FAST, MACD_SLOW, MACD_SIGNAL)
    if len(hist) >= 2 and not np.isnan(hist[-2:]).any():
        previous, current = float(hist[-2]), float(hist[-1])
        bullish = previous <= 0 < current
        if bullish or previous >= 0 > current:
            strength = abs(current) / last * 10_000
            if strength >= _CONFIDENCE["macd"][0]:
                signal(
                    InsightType.MACD_BULLISH_CROSS if bullish else InsightType.MACD_BEARISH_CROSS,
                    confidence_for("macd", strength),
                    f"{coin} MACD crossed {'above' if bullish else 'below'} its signal line",
                    {
                        "macd": _price(line[-1]),
                        "signal": _price(signal_line[-1]),
                        "histogram": _price(current),
                        "close": _price(last),
                    },
                )

    middle, upper, lower, std = (
        float(a[-1]) for a in indicators.bollinger(close, BOLLINGER_PERIOD, BOLLINGER_K)
    )
    if std > 0 and (last > upper or last < lower):
        up = last > upper
        signal(
            InsightType.BOLLINGER_BREAKOUT_UP if up else InsightType.BOLLINGER_BREAKOUT_DOWN,
            confidence_for("bollinger", (last - upper if up else lower - last) / std),
            f"{coin} closed {'above its upper' if up else 'below its lower'} Bollinger band",
            {
                "close": _price(last),
                "upper": _price(upper),
                "lower": _price(lower),
                "middle": _price(middle),
                "period": BOLLINGER_PERIOD,
                "stddev": BOLLINGER_K,
            },
        )

    zscore = float(indicators.zscore_vs_trailing(volume[-1 - VOLUME_WINDOW :], VOLUME_WINDOW)[-1])
    if zscore >= _CONFIDENCE["volume"][0]:
        mean_volume = float(volume[-1 - VOLUME_WINDOW : -1].mean())
        window_hours = VOLUME_WINDOW * step / dt.timedelta(hours=1)
        signal(
            InsightType.VOLUME_SPIKE,
            confidence_for("volume", zscore),
            f"{coin} volume {zscore:.1f}σ above its {window_hours:g}h average",
            {
                "volume": _price(volume[-1]),
                "mean_volume": _price(mean_volume),
                "zscore": _ratio(zscore),
                "ratio": _ratio(volume[-1] / mean_volume),
                "close": _price(last),
            },
        )
    return found


def _sentiment_signal(
    symbol: str, source: str, windows: Sequence[SentimentWindow], *, now: dt.datetime
) -> Signal | None:
    """A shift of the newest window (``windows[0]``) against the mean of the earlier ones. The newest must
    have ended within two window lengths: an old window's shift was news when it was new."""
    latest, baseline = windows[0], windows[1 : 1 + SENTIMENT_BASELINE_WINDOWS]
    length = latest.window_end - latest.window_start
    if now - latest.window_end >= 2 * length:
        return None
    if latest.sample_size < SENTIMENT_MIN_SAMPLE or len(baseline) < SENTIMENT_MIN_BASELINE:
        return None
    previous = math.fsum(w.score for w in baseline) / len(baseline)
    delta = latest.score - previous
    if abs(delta) < _CONFIDENCE["sentiment"][0]:
        return None
    timeframe = next((tf for tf in ("1m", "5m", "15m", "1h", "4h", "1d") if timeframe_step(tf) == length), "")
    return Signal(
        InsightType.SENTIMENT_SHIFT,
        symbol,
        timeframe,
        confidence_for("sentiment", abs(delta)),
        f"{_coin(symbol)} sentiment on {source} {'jumps' if delta > 0 else 'drops'} to "
        f"{latest.score:+.2f} from {previous:+.2f}",
        {
            "score": _score(latest.score),
            "previous_score": _score(previous),
            "delta": _score(delta),
            "sample_size": latest.sample_size,
            "source": source,
        },
    )


def insights_detect(
    *,
    now: dt.datetime,
    symbols: Sequence[str],
    timeframe: str,
    min_confidence: float = 0.55,
    cooldown_hours: float = 6,
    counters: Counter[str] | None = None,
) -> list[Insight]:
    """Turn the newest closed candle and sentiment window of each symbol into insights; returns those created.

    A signal below ``min_confidence`` is dropped, and so is one whose (symbol, type) already has an insight
    detected within ``cooldown_hours`` (whatever became of it), so the feed does not repeat itself. Data that
    has gone stale (the scanner stopped) yields nothing: its signals were reported when it was fresh.
    ``counters`` (when given) receives symbols, symbols_stale, signals, dropped_low_confidence,
    dropped_cooldown and insights_created. A fixed handful of queries, whatever the number of symbols.
    """
    tally: Counter[str] = Counter() if counters is None else counters
    step = timeframe_step(timeframe)
    newest_closed = now - step
    candles = selectors.market_data_series(
        symbols=symbols,
        timeframe=timeframe,
        since=newest_closed - (LOOKBACK_CANDLES - 1) * step,
        until=newest_closed,
    )
    sentiment = selectors.sentiment_data_recent(
        symbols=symbols, since=now - (SENTIMENT_BASELINE_WINDOWS + 2) * dt.timedelta(hours=1), until=now
    )
    cooling = selectors.insight_recent_keys(symbols=symbols, since=now - dt.timedelta(hours=cooldown_hours))

    signals: list[Signal] = []
    for symbol in symbols:
        series = candles.get(symbol)
        # Fresh: the newest candle closed within the last two candle lengths (one missed scan is tolerated).
        if series is not None and series.ts[-1] + 3 * step > now:
            tally["symbols"] += 1
            signals += _candle_signals(symbol, timeframe, series)
        else:
            tally["symbols_stale"] += 1
    for (symbol, source), windows in sentiment.items():
        if (found := _sentiment_signal(symbol, source, windows, now=now)) is not None:
            signals.append(found)

    rows = []
    for found in signals:
        tally["signals"] += 1
        if found.confidence < min_confidence:
            tally["dropped_low_confidence"] += 1
        elif (found.symbol, found.type) in cooling:
            tally["dropped_cooldown"] += 1
        else:
            cooling.add((found.symbol, found.type))
            rows.append(
                Insight(
                    type=found.type,
                    symbol=found.symbol,
                    timeframe=found.timeframe,
                    confidence=found.confidence,
                    headline=found.headline[:200],
                    evidence=found.evidence,
                    status=InsightStatus.NEW,
                    detected_at=now,
                    expires_at=now + HORIZONS[found.type],
                )
            )
    created = Insight.objects.bulk_create(rows)
    tally["insights_created"] += len(created)
    return created
