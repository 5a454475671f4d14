"""The market agents: the scanner ingests candles, tickers, news and social sentiment; the analysis turns them
into insights."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.core.resilience import CircuitOpenError, IntegrationError, TransientError
from apps.integrations.exchanges import get_exchange
from apps.integrations.news import get_news_sources
from apps.integrations.social import get_social_source, query_for
from apps.integrations.types import Candle
from apps.market import selectors, services

T = TypeVar("T")


class _Scan:
    """One scan's bookkeeping: which outside services answered, which failed, and the counters.

    A transient failure (a timeout, an outage) stops further calls to that client (the exchange, one news
    feed, the social search) for the rest of the scan, since they would fail the same way after burning their
    retries; an open circuit stops the whole service; a permanent failure (say an unknown symbol) affects that
    call only.
    """

    def __init__(self, ctx: AgentContext, result: AgentResult) -> None:
        self.ctx = ctx
        self.result = result
        self.answered: set[str] = set()
        self.down: dict[str, IntegrationError] = {}
        self.failed: set[str] = set()

    def call(self, service: str, client: str, what: str, fn: Callable[[], T]) -> T | None:
        """``fn()``, or None when it fails or ``client`` (one host of ``service``) is known to be down."""
        if service in self.down or client in self.down:
            return None
        try:
            value = fn()
        except IntegrationError as exc:
            self.result.incr(f"errors.{service}")
            self.failed.add(service)
            # An open breaker speaks for the whole service; a timeout only for the host that timed out (one
            # news feed failing says nothing about the others).
            if isinstance(exc, CircuitOpenError):
                self.down[service] = exc
            elif isinstance(exc, TransientError):
                self.down[client] = exc
            self.ctx.logger.warning("market scan: %s failed (%s): %s", what, type(exc).__name__, exc)
            return None
        self.answered.add(service)
        return value


@register
class MarketScannerAgent(BaseAgent):
    name = "market_scanner"
    phase = 1
    description = (
        "Ingests candles and 24h tickers for the watchlist, news with sentiment, and hourly social sentiment "
        "per symbol. Idempotent and incremental; one source failing does not stop the others."
    )
    services = ("exchange", "news", "social")
    service_policy = "any"
    default_schedule = "*/15 * * * *"
    default_parameters = {
        # Candles fetched for a symbol with none stored yet (and the most fetched after a long outage).
        "backfill_candles": 500,
        # News fetched from a source with nothing stored yet.
        "news_backfill_hours": 72,
        # Posts read per symbol and hour; a busier hour is judged on this many.
        "social_limit": 100,
    }

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        result.counters.update(
            dict.fromkeys(("candles_upserted", "tickers", "articles_new", "sentiment_windows"), 0)
        )
        scan = _Scan(ctx, result)
        watchlist: list[str] = list(settings.WATCHLIST)
        timeframe: str = settings.MARKET_TIMEFRAME

        self._scan_market(scan, watchlist, timeframe, params["backfill_candles"])
        self._scan_news(scan, watchlist, dt.timedelta(hours=params["news_backfill_hours"]))
        self._scan_social(scan, watchlist, params["social_limit"])

        counters = result.counters
        result.summary = (
            f"{counters['candles_upserted']} candles, {counters['tickers']} tickers, "
            f"{counters['articles_new']} new articles, {counters['sentiment_windows']} sentiment windows"
        )
        if scan.failed:
            result.summary += f"; failed: {', '.join(sorted(scan.failed))}"
        if scan.failed and not scan.answered:
            # Nothing came in at all: let the framework retry the whole scan later.
            raise TransientError(f"market scan: every source failed ({', '.join(sorted(scan.failed))})")
        return result

    def _scan_market(self, scan: _Scan, watchlist: list[str], timeframe: str, backfill: int) -> None:
        now = scan.ctx.now
        exchange = get_exchange()
        step = selectors.timeframe_step(timeframe)
        latest = selectors.market_data_latest_ts(
            exchange=exchange.name, timeframe=timeframe, symbols=watchlist
        )
        # The open time of the newest candle that can have closed, aligned to the timeframe as exchanges are.
        current = dt.datetime.fromtimestamp(
            now.timestamp() // step.total_seconds() * step.total_seconds(), dt.UTC
        )
        oldest_wanted = current - backfill * step
        fetched: dict[str, list[Candle]] = {}
        for symbol in watchlist:
            last = latest.get(symbol)
            # Never reach back further than a backfill would, however long the scanner was away.
            since = None if last is None else max(last + step, oldest_wanted)
            candles = scan.call(
                "exchange",
                f"exchange:{exchange.name}",
                f"candles {symbol}",
                lambda symbol=symbol, since=since: exchange.fetch_ohlcv(  # type: ignore[misc]
                    symbol, timeframe, since=since, limit=backfill
                ),
            )
            if candles:
                fetched[symbol] = candles
        scan.result.incr(
            "candles_upserted",
            services.market_data_upsert(
                exchange=exchange.name, timeframe=timeframe, candles=fetched, now=now
            ),
        )
        tickers = scan.call(
            "exchange", f"exchange:{exchange.name}", "tickers", lambda: exchange.fetch_tickers(watchlist)
        )
        if tickers:
            scan.result.incr("tickers", services.market_tickers_store(tickers=tickers))

    def _scan_news(self, scan: _Scan, watchlist: list[str], backfill: dt.timedelta) -> None:
        sources = get_news_sources()
        latest = selectors.news_article_latest_published(sources=[s.name for s in sources])
        for source in sources:
            since = latest.get(source.name, scan.ctx.now - backfill)
            articles = scan.call(
                "news",
                f"news:{source.name}",
                f"news from {source.name}",
                lambda source=source, since=since: source.fetch(since=since),  # type: ignore[misc]
            )
            if articles:
                scan.result.incr(
                    "articles_new", services.news_articles_ingest(articles=articles, watchlist=watchlist)
                )

    def _scan_social(self, scan: _Scan, watchlist: list[str], limit: int) -> None:
        social = get_social_source()
        # The last complete hour: a window still filling up would be judged on part of its posts.
        window_end = scan.ctx.now.replace(minute=0, second=0, microsecond=0)
        window_start = window_end - dt.timedelta(hours=1)
        done = selectors.sentiment_data_symbols_with_window(
            source=social.name, window_start=window_start, window_end=window_end, symbols=watchlist
        )
        posts = {}
        for symbol in watchlist:
            if symbol in done:
                continue
            found = scan.call(
                "social",
                f"social:{social.name}",
                f"posts about {symbol}",
                lambda symbol=symbol: social.search(  # type: ignore[misc]
                    query_for(symbol), since=window_start, limit=limit
                ),
            )
            if found is not None:
                posts[symbol] = found
        scan.result.incr(
            "sentiment_windows",
            services.sentiment_data_record(
                source=social.name, window_start=window_start, window_end=window_end, posts=posts
            ),
        )


@register
class AnalysisAgent(BaseAgent):
    name = "analysis"
    phase = 1
    description = (
        "Computes returns, RSI, MACD, Bollinger bands, volume spikes and sentiment shifts on the newest data "
        "and records the strong, non-repeating ones as insights."
    )
    depends_on = ("market_scanner",)
    default_parameters = {
        # Signals below this confidence are noise for the content pipeline.
        "min_confidence": 0.55,
        # Hours during which the same type of insight for the same symbol is not repeated.
        "cooldown_hours": 6.0,
    }

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        keys = ("symbols", "signals", "insights_created", "dropped_low_confidence", "dropped_cooldown")
        result.counters.update(dict.fromkeys(keys, 0))
        services.insights_detect(
            now=ctx.now,
            symbols=list(settings.WATCHLIST),
            timeframe=settings.MARKET_TIMEFRAME,
            min_confidence=params["min_confidence"],
            cooldown_hours=params["cooldown_hours"],
            counters=result.counters,
        )
        counters = result.counters
        result.summary = (
            f"{counters['symbols']} symbols, {counters['signals']} signals: {counters['insights_created']} "
            f"insights, {counters['dropped_low_confidence']} too weak, {counters['dropped_cooldown']} cooling down"
        )
        return result
