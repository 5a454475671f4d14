"""The market scanner on the offline twins (the settings' defaults): a bounded first backfill, nothing new on
a repeat, only what is new later on, and the rest of the scan when one source fails."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.agents.base import AgentContext, AgentResult
from apps.core.resilience import CircuitOpenError, IntegrationError, PermanentError, TransientError
from apps.integrations.exchanges import SimulatedExchange
from apps.integrations.news import FileNewsSource, get_news_sources
from apps.integrations.sentiment import label_for, score_text
from apps.integrations.social import FileSocialSource, query_for
from apps.integrations.types import Article, Candle, SocialPost
from apps.market import selectors, services
from apps.market.agents import MarketScannerAgent
from apps.market.models import MarketData, NewsArticle, SentimentData

pytestmark = pytest.mark.django_db

# 08:20: the last complete hour, 07:00-08:00, has fixture posts about each of the three coins.
NOW = dt.datetime(2025, 3, 10, 8, 20, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
WATCHLIST = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


@pytest.fixture(autouse=True)
def _twins(settings: Any) -> None:
    settings.EXCHANGE_BACKEND = "simulated"
    settings.NEWS_BACKEND = "files"
    settings.SOCIAL_BACKEND = "files"
    settings.WATCHLIST = WATCHLIST
    settings.MARKET_TIMEFRAME = "1h"


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dt.datetime | None, int]]:
    """(symbol, since, candles returned) for every candle fetch of the simulated exchange."""
    calls: list[tuple[str, dt.datetime | None, int]] = []
    original = SimulatedExchange.fetch_ohlcv

    def spy(self: SimulatedExchange, symbol: str, timeframe: str, *, since: Any, limit: int) -> list[Candle]:
        candles = original(self, symbol, timeframe, since=since, limit=limit)
        if timeframe == "1h" and limit != 24:  # fetch_tickers reads the last 24 candles through here too
            calls.append((symbol, since, len(candles)))
        return candles

    monkeypatch.setattr(SimulatedExchange, "fetch_ohlcv", spy)
    return calls


def _scan(**parameters: Any) -> AgentResult:
    ctx = AgentContext(
        run_id=1, agent_name="market_scanner", trigger="manual", now=timezone.now(), parameters=parameters
    )
    return MarketScannerAgent().execute(ctx)


def _table_counts() -> tuple[int, int, int]:
    return MarketData.objects.count(), NewsArticle.objects.count(), SentimentData.objects.count()


def _expected_windows(end: dt.datetime) -> dict[str, list[float]]:
    """Scores of the twin's posts per symbol in the hour before ``end``, worked out without the scanner."""
    social = FileSocialSource()
    scores = {}
    for symbol in WATCHLIST:
        posts = social.search(query_for(symbol), since=end - HOUR, limit=100)
        if in_window := [score_text(p.text) for p in posts if p.created_at < end]:
            scores[symbol] = in_window
    return scores


def _articles_since(since: dt.datetime) -> set[tuple[str, str]]:
    return {(a.source, a.guid) for s in get_news_sources() for a in s.fetch(since=since)}


# --- incremental, idempotent ingestion ----------------------------------------------------------------------


def test_first_run_backfills_a_bounded_history(clock: Any, fetched: list[Any]) -> None:
    result = _scan()

    top = NOW.replace(minute=0)
    assert result.counters["candles_upserted"] == 3 * 500
    assert fetched == [(symbol, None, 500) for symbol in WATCHLIST]
    for symbol in WATCHLIST:
        stored = MarketData.objects.filter(exchange="simulated", symbol=symbol, timeframe="1h")
        assert stored.count() == 500
        # Closed candles only: the newest opened an hour before the current one.
        assert list(stored.order_by("ts").values_list("ts", flat=True)[:1]) == [top - 500 * HOUR]
        assert stored.order_by("-ts").first().ts == top - HOUR  # type: ignore[union-attr]

    assert result.counters["tickers"] == 3
    tickers = selectors.market_ticker_latest(symbols=WATCHLIST)
    assert sorted(tickers) == WATCHLIST
    assert tickers["BTC/USDT"].last == MarketData.objects.get(symbol="BTC/USDT", ts=top - HOUR).close

    expected_articles = _articles_since(NOW - 72 * HOUR)
    assert expected_articles
    assert result.counters["articles_new"] == len(expected_articles) == NewsArticle.objects.count()
    for article in NewsArticle.objects.all():
        text = f"{article.title}\n{article.summary}"
        assert article.sentiment_score == score_text(text)
        assert article.sentiment_label == label_for(article.sentiment_score)
        assert set(article.symbols) <= set(WATCHLIST)
    assert NewsArticle.objects.exclude(symbols=[]).exists()

    expected = _expected_windows(top)
    assert sorted(expected) == WATCHLIST
    assert result.counters["sentiment_windows"] == 3
    for symbol, scores in expected.items():
        row = SentimentData.objects.get(symbol=symbol)
        assert (row.source, row.window_start, row.window_end) == ("files", top - HOUR, top)
        assert row.sample_size == len(scores) == row.positive + row.neutral + row.negative
        assert row.score == round(sum(scores) / len(scores), 4)
        assert row.positive == sum(label_for(s) == "bullish" for s in scores)
        assert row.negative == sum(label_for(s) == "bearish" for s in scores)

    assert "errors.exchange" not in result.counters
    assert result.summary.startswith("1500 candles, 3 tickers")


def test_a_second_run_finds_nothing_new(clock: Any, fetched: list[Any]) -> None:
    _scan()
    before = _table_counts()
    fetched.clear()

    result = _scan()

    assert _table_counts() == before
    assert result.counters == {
        "candles_upserted": 0,
        "tickers": 3,
        "articles_new": 0,
        "sentiment_windows": 0,
    }
    top = NOW.replace(minute=0)
    # Asked only for candles after the newest stored one, and there are none yet.
    assert fetched == [(symbol, top, 0) for symbol in WATCHLIST]


def test_a_later_run_fetches_only_what_is_new(clock: Any, fetched: list[Any]) -> None:
    _scan()
    candles, articles, windows = _table_counts()
    fetched.clear()
    clock.shift(3 * HOUR)

    result = _scan()

    assert result.counters["candles_upserted"] == 3 * 3
    assert [n for _, _, n in fetched] == [3, 3, 3]
    assert MarketData.objects.count() == candles + 9
    # The news twin re-dates its items as time passes, but they are the same articles.
    assert result.counters["articles_new"] == 0
    assert NewsArticle.objects.count() == articles
    # The hour that has just completed, 10:00-11:00, is the only new sentiment window.
    top = (NOW + 3 * HOUR).replace(minute=0)
    expected = _expected_windows(top)
    assert expected
    assert result.counters["sentiment_windows"] == len(expected)
    assert SentimentData.objects.count() == windows + len(expected)
    assert dict(SentimentData.objects.filter(window_end=top).values_list("symbol", "sample_size")) == {
        symbol: len(scores) for symbol, scores in expected.items()
    }


def test_a_long_absence_is_bounded_by_the_backfill(clock: Any, fetched: list[Any]) -> None:
    _scan(backfill_candles=30)
    fetched.clear()
    clock.shift(72 * HOUR)

    result = _scan(backfill_candles=30)

    assert result.counters["candles_upserted"] == 3 * 30
    top = (NOW + 72 * HOUR).replace(minute=0)
    assert fetched == [(symbol, top - 30 * HOUR, 30) for symbol in WATCHLIST]


def test_queries_do_not_grow_with_the_watchlist(settings: Any, clock: Any) -> None:
    counts = []
    for watchlist in (WATCHLIST[:1], WATCHLIST):
        settings.WATCHLIST = watchlist
        _scan(backfill_candles=30)
        with CaptureQueriesContext(connection) as queries:
            _scan(backfill_candles=30)
        counts.append(len(queries))
    assert counts[0] == counts[1]


# --- one source failing -------------------------------------------------------------------------------------


def _raise(error: IntegrationError) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


@pytest.mark.parametrize(
    "error",
    [
        TransientError("feed timed out", service="news"),
        PermanentError("feed gone", service="news"),
    ],
    ids=["transient", "permanent"],
)
def test_one_news_feed_failing_leaves_the_rest_of_the_scan(
    clock: Any, monkeypatch: pytest.MonkeyPatch, error: IntegrationError
) -> None:
    original = FileNewsSource.fetch
    failing = "coinherald.example"
    others = {key for key in _articles_since(NOW - 72 * HOUR) if key[0] != failing}
    assert others

    def fetch(self: FileNewsSource, *, since: dt.datetime | None) -> list[Article]:
        if self.name == failing:
            raise error
        return original(self, since=since)

    monkeypatch.setattr(FileNewsSource, "fetch", fetch)

    result = _scan(backfill_candles=48)

    assert result.counters["errors.news"] == 1
    assert set(NewsArticle.objects.values_list("source", "guid")) == others
    assert result.counters["articles_new"] == len(others)
    assert result.counters["candles_upserted"] == MarketData.objects.count() == 3 * 48
    assert result.counters["tickers"] == 3
    assert result.counters["sentiment_windows"] == SentimentData.objects.count() == 3
    assert result.summary.endswith("failed: news")


def test_an_open_circuit_stops_the_whole_service(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def refused(self: FileSocialSource, query: str, *, since: Any, limit: int) -> list[SocialPost]:
        calls.append(query)
        raise CircuitOpenError("social is unavailable (circuit open)", service="social")

    monkeypatch.setattr(FileSocialSource, "search", refused)

    result = _scan(backfill_candles=48)

    assert len(calls) == 1
    assert result.counters["errors.social"] == 1
    assert result.counters["sentiment_windows"] == 0
    assert not SentimentData.objects.exists()
    assert result.counters["candles_upserted"] == 3 * 48
    assert result.counters["articles_new"] > 0


def test_an_exchange_outage_is_tried_once_and_the_rest_goes_on(
    clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def down(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise TransientError("exchange timed out", service="exchange")

    monkeypatch.setattr(SimulatedExchange, "fetch_ohlcv", down)

    result = _scan()

    # An outage: the remaining symbols and the tickers would only fail the same way after their retries.
    assert len(calls) == 1
    assert result.counters["errors.exchange"] == 1
    assert (result.counters["candles_upserted"], result.counters["tickers"]) == (0, 0)
    assert not MarketData.objects.exists()
    assert result.counters["articles_new"] == NewsArticle.objects.count() > 0
    assert result.counters["sentiment_windows"] == 3
    # The framework marks such a run (and its pipeline run) degraded rather than a clean success.
    assert result.degraded_reason() == "errors.exchange=1"


def test_a_bad_symbol_fails_alone(settings: Any, clock: Any) -> None:
    settings.WATCHLIST = ["BTC/USDT", "NOT-A-SYMBOL"]

    result = _scan(backfill_candles=10)

    # Its candles fail permanently, and so does the tickers call that includes it; BTC's candles are in.
    assert result.counters["errors.exchange"] == 2
    assert result.counters["candles_upserted"] == 10
    assert set(MarketData.objects.values_list("symbol", flat=True)) == {"BTC/USDT"}


def test_everything_failing_raises_for_a_retry(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimulatedExchange, "fetch_ohlcv", _raise(TransientError("down", service="exchange")))
    monkeypatch.setattr(FileNewsSource, "fetch", _raise(TransientError("down", service="news")))
    monkeypatch.setattr(FileSocialSource, "search", _raise(CircuitOpenError("open", service="social")))

    with pytest.raises(TransientError, match="every source failed"):
        _scan()

    assert _table_counts() == (0, 0, 0)


def test_parameters_are_validated() -> None:
    assert MarketScannerAgent.validate_parameters({})["backfill_candles"] == 500
    assert MarketScannerAgent.default_schedule == "*/15 * * * *"
    assert MarketScannerAgent.services == ("exchange", "news", "social")
    with pytest.raises(Exception, match="backfill_candles must be int"):
        MarketScannerAgent.validate_parameters({"backfill_candles": "500"})


# --- the write services -------------------------------------------------------------------------------------


def test_candle_upsert_replaces_by_natural_key_and_skips_the_forming_candle() -> None:
    ts = NOW.replace(minute=0) - HOUR
    first = Candle(ts, 1.0, 2.0, 0.5, 1.5, 10.0)
    forming = Candle(ts + HOUR, 1.5, 1.6, 1.4, 1.55, 1.0)

    assert (
        services.market_data_upsert(
            exchange="x", timeframe="1h", candles={"BTC/USDT": [first, forming]}, now=NOW
        )
        == 1
    )
    revised = Candle(ts, 1.0, 2.5, 0.5, 2.2, 12.0)
    assert (
        services.market_data_upsert(exchange="x", timeframe="1h", candles={"BTC/USDT": [revised]}, now=NOW)
        == 1
    )

    row = MarketData.objects.get()
    assert (row.ts, row.high, row.close, row.volume) == (ts, 2.5, 2.2, 12.0)


def test_news_ingest_counts_only_new_articles() -> None:
    article = Article(
        source="wire",
        guid="a-1",
        title="Bitcoin rallies as ETF inflows surge",
        url="https://news.example.com/a-1",
        published_at=NOW,
        summary="Ether follows.",
    )

    assert services.news_articles_ingest(articles=[article, article], watchlist=WATCHLIST) == 1
    assert services.news_articles_ingest(articles=[article], watchlist=WATCHLIST) == 0

    stored = NewsArticle.objects.get()
    assert stored.symbols == ["BTC/USDT", "ETH/USDT"]
    assert stored.sentiment_label == "bullish"


def test_sentiment_record_aggregates_the_window_and_replaces_it() -> None:
    end = NOW.replace(minute=0)
    texts = ["BTC to the moon, bullish", "BTC crash incoming, bearish", "BTC at 64k"]
    posts = [SocialPost(str(i), text, end - dt.timedelta(minutes=10 + i)) for i, text in enumerate(texts)]
    outside = SocialPost("late", "BTC mooning", end)

    written = services.sentiment_data_record(
        source="x",
        window_start=end - HOUR,
        window_end=end,
        posts={"BTC/USDT": [*posts, outside], "ETH/USDT": []},
    )

    assert written == 1
    row = SentimentData.objects.get()
    scores = [score_text(t) for t in texts]
    assert (row.sample_size, row.positive, row.neutral, row.negative) == (3, 1, 1, 1)
    assert row.score == round(sum(scores) / 3, 4)

    services.sentiment_data_record(
        source="x", window_start=end - HOUR, window_end=end, posts={"BTC/USDT": posts[:1]}
    )
    assert SentimentData.objects.get().sample_size == 1
