"""Exchanges: the real ccxt client against a fake Binance on loopback (candles and tickers parsed exactly,
429s waited out, a 5xx storm opening the breaker), and the simulated twin (deterministic, incremental, and
rich enough in signals for the analysis agent)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import statistics
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.core.models import CircuitBreakerState
from apps.core.resilience import (
    CircuitOpenError,
    PermanentError,
    RateLimited,
    RetryPolicy,
    TransientError,
)
from apps.integrations import exchanges
from apps.integrations.exchanges import CcxtExchange, SimulatedExchange, get_exchange
from apps.integrations.market_simulator import simulate_ohlcv
from apps.integrations.types import Candle, Ticker

if TYPE_CHECKING:
    from pytest_django.fixtures import Settings

UTC = dt.UTC
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
WATCHLIST = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"]
NOW = dt.datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _ms(ts: dt.datetime) -> int:
    return int(ts.timestamp() * 1000)


def _market(base: str, quote: str = "USDT") -> dict[str, object]:
    """One entry of Binance's GET /api/v3/exchangeInfo, as Binance sends it."""
    return {
        "symbol": f"{base}{quote}",
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.00001000",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.00001000",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": "0.00001000",
            },
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": _ms(NOW),
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ],
    "exchangeFilters": [],
    "symbols": [_market(s.split("/")[0]) for s in WATCHLIST],
}


def _kline(open_time: dt.datetime, o: str, h: str, lo: str, c: str, v: str) -> list[object]:
    """A row of GET /api/v3/klines: strings for prices and volumes, as Binance sends them."""
    close_ms = _ms(open_time + dt.timedelta(hours=1)) - 1
    return [_ms(open_time), o, h, lo, c, v, close_ms, "0", 1200, "0", "0", "0"]


@pytest.fixture(autouse=True)
def _fresh_ccxt_clients() -> Iterator[None]:
    # The client (and its loaded markets) is cached per process; each test talks to its own fake.
    exchanges._ccxt_exchange.cache_clear()
    yield
    exchanges._ccxt_exchange.cache_clear()


@pytest.fixture
def binance(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/api/v3/exchangeInfo").respond_with_json(EXCHANGE_INFO)
    return httpserver


def _client(server: HTTPServer, *, policy: RetryPolicy = FAST, timeout: float = 5.0) -> CcxtExchange:
    return CcxtExchange(
        "binance",
        api_url=server.url_for("/"),
        timeout_seconds=timeout,
        policy=policy,
        clock=lambda: NOW,
    )


def _requests_to(server: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in server.log if request.path == path]


# --- ccxt against a fake Binance ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_ccxt_candles_are_parsed_exactly_and_the_open_candle_is_dropped(binance: HTTPServer) -> None:
    t0 = dt.datetime(2024, 5, 1, 10, tzinfo=UTC)
    binance.expect_request("/api/v3/klines").respond_with_json(
        [
            _kline(t0, "63000.01", "63510.00", "62880.50", "63400.50", "812.34500000"),
            _kline(
                t0 + dt.timedelta(hours=1), "63400.50", "63999.99", "63350.00", "63912.10", "1024.00100000"
            ),
            # Still forming at 12:30: it would change, so it is not handed out.
            _kline(
                t0 + dt.timedelta(hours=2), "63912.10", "64100.00", "63900.00", "64050.00", "301.20000000"
            ),
        ]
    )

    candles = _client(binance).fetch_ohlcv("BTC/USDT", "1h", since=t0, limit=3)

    assert candles == [
        Candle(t0, 63000.01, 63510.0, 62880.5, 63400.5, 812.345),
        Candle(t0 + dt.timedelta(hours=1), 63400.5, 63999.99, 63350.0, 63912.1, 1024.001),
    ]
    (request,) = _requests_to(binance, "/api/v3/klines")
    assert request.args.to_dict() == {
        "symbol": "BTCUSDT",
        "interval": "1h",
        "startTime": str(_ms(t0)),
        "limit": "3",
    }
    # Only the spot market list was loaded: no futures or options exchangeInfo.
    assert [r.path for r, _ in binance.log] == ["/api/v3/exchangeInfo", "/api/v3/klines"]


@pytest.mark.django_db
def test_ccxt_tickers_are_parsed_exactly(binance: HTTPServer) -> None:
    def ticker(symbol: str, last: str, pct: str, quote_volume: str) -> dict[str, object]:
        return {
            "symbol": symbol,
            "priceChange": "0",
            "priceChangePercent": pct,
            "weightedAvgPrice": last,
            "prevClosePrice": last,
            "lastPrice": last,
            "lastQty": "0.01",
            "bidPrice": last,
            "bidQty": "1.0",
            "askPrice": last,
            "askQty": "1.0",
            "openPrice": last,
            "highPrice": last,
            "lowPrice": last,
            "volume": "1000.0",
            "quoteVolume": quote_volume,
            "openTime": _ms(NOW - dt.timedelta(days=1)),
            "closeTime": _ms(NOW),
            "firstId": 1,
            "lastId": 2,
            "count": 2,
        }

    binance.expect_request("/api/v3/ticker/24hr").respond_with_json(
        [
            ticker("BTCUSDT", "63912.10", "1.502", "1264000000.55"),
            ticker("ETHUSDT", "3012.45", "-2.310", "603000000.00"),
        ]
    )

    tickers = _client(binance).fetch_tickers(["BTC/USDT", "ETH/USDT"])

    assert tickers == [
        Ticker("BTC/USDT", 63912.1, 1.502, 1264000000.55, NOW),
        Ticker("ETH/USDT", 3012.45, -2.31, 603000000.0, NOW),
    ]
    (request,) = _requests_to(binance, "/api/v3/ticker/24hr")
    assert json.loads(request.args["symbols"]) == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.django_db
def test_a_429_is_waited_out_for_as_long_as_binance_asks(binance: HTTPServer) -> None:
    t0 = dt.datetime(2024, 5, 1, 10, tzinfo=UTC)
    binance.expect_oneshot_request("/api/v3/klines").respond_with_json(
        {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
        },
        status=429,
        headers={"Retry-After": "1"},
    )
    binance.expect_request("/api/v3/klines").respond_with_json(
        [_kline(t0, "1.0", "2.0", "0.5", "1.5", "10.0")]
    )

    started = time.monotonic()
    candles = _client(binance).fetch_ohlcv("BTC/USDT", "1h", since=t0, limit=1)

    assert time.monotonic() - started >= 1.0
    assert candles == [Candle(t0, 1.0, 2.0, 0.5, 1.5, 10.0)]
    assert len(_requests_to(binance, "/api/v3/klines")) == 2
    # Being told to wait is not an outage.
    assert CircuitBreakerState.objects.get(service="exchange").consecutive_failures == 0


@pytest.mark.django_db
def test_a_long_wait_goes_back_to_the_caller(binance: HTTPServer) -> None:
    binance.expect_request("/api/v3/klines").respond_with_json(
        {"code": -1003, "msg": "Way too much request weight used; IP banned until 1714567800000."},
        status=418,
        headers={"Retry-After": "600"},
    )

    with pytest.raises(RateLimited) as caught:
        _client(binance).fetch_ohlcv("BTC/USDT", "1h", since=None, limit=5)

    assert caught.value.retry_after == 600.0
    assert caught.value.service == "exchange"
    assert len(_requests_to(binance, "/api/v3/klines")) == 1


@pytest.mark.django_db
def test_a_5xx_storm_opens_the_breaker_and_later_calls_never_reach_the_exchange(
    binance: HTTPServer, settings: Settings
) -> None:
    settings.CIRCUIT_BREAKER_FAILURES = 5
    binance.expect_request("/api/v3/klines").respond_with_data("Service Unavailable", status=503)
    client = _client(binance, policy=RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.001))

    with pytest.raises(TransientError) as caught:
        client.fetch_ohlcv("BTC/USDT", "1h", since=None, limit=5)
    assert not isinstance(caught.value, CircuitOpenError)
    assert len(_requests_to(binance, "/api/v3/klines")) == 5

    row = CircuitBreakerState.objects.get(service="exchange")
    assert row.state == CircuitBreakerState.State.OPEN
    assert row.consecutive_failures == 5
    assert "503" in row.last_error

    with pytest.raises(CircuitOpenError):
        client.fetch_ohlcv("BTC/USDT", "1h", since=None, limit=5)
    with pytest.raises(CircuitOpenError):
        client.fetch_tickers(["BTC/USDT"])
    assert len(_requests_to(binance, "/api/v3/klines")) == 5
    assert _requests_to(binance, "/api/v3/ticker/24hr") == []


@pytest.mark.django_db
def test_bad_symbols_are_permanent_and_not_retried(binance: HTTPServer) -> None:
    binance.expect_request("/api/v3/klines").respond_with_json(
        {"code": -1121, "msg": "Invalid symbol."}, status=400
    )
    client = _client(binance)

    # Unknown to the market list: ccxt refuses before asking.
    with pytest.raises(PermanentError):
        client.fetch_ohlcv("NOPE/USDT", "1h", since=None, limit=5)
    assert _requests_to(binance, "/api/v3/klines") == []

    # Known to us, refused by the exchange.
    with pytest.raises(PermanentError, match="Invalid symbol"):
        client.fetch_ohlcv("BTC/USDT", "1h", since=None, limit=5)
    assert len(_requests_to(binance, "/api/v3/klines")) == 1
    assert CircuitBreakerState.objects.get(service="exchange").consecutive_failures == 0


@pytest.mark.django_db
def test_a_slow_exchange_times_out_as_a_transient_error(binance: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response("[]", content_type="application/json")

    binance.expect_request("/api/v3/klines").respond_with_handler(slow)
    client = _client(binance, timeout=0.2, policy=RetryPolicy(max_attempts=1))

    with pytest.raises(TransientError):
        client.fetch_ohlcv("BTC/USDT", "1h", since=None, limit=5)
    assert CircuitBreakerState.objects.get(service="exchange").consecutive_failures == 1


def test_the_api_url_override_rebases_every_endpoint_and_keeps_paths() -> None:
    urls = {
        "public": "https://api.binance.com/api/v3",
        "fapiPublic": "https://fapi.binance.com/fapi/v1",
        "nested": {"rest": "https://api.example.com/v2?x=1"},
        "weight": 1,
    }
    assert exchanges._rebase(urls, "http://127.0.0.1:9/") == {
        "public": "http://127.0.0.1:9/api/v3",
        "fapiPublic": "http://127.0.0.1:9/fapi/v1",
        "nested": {"rest": "http://127.0.0.1:9/v2?x=1"},
        "weight": 1,
    }
    assert exchanges._rebase("https://api.kraken.com", "http://127.0.0.1:9/kraken") == (
        "http://127.0.0.1:9/kraken"
    )


def test_get_exchange_follows_the_settings(settings: Settings) -> None:
    settings.EXCHANGE_BACKEND = "simulated"
    assert isinstance(get_exchange(), SimulatedExchange)

    settings.EXCHANGE_BACKEND = "ccxt"
    settings.EXCHANGE_ID = "kraken"
    settings.EXCHANGE_API_URL = "http://127.0.0.1:9"
    client = get_exchange()
    assert isinstance(client, CcxtExchange)
    assert client.name == "kraken"
    assert client._exchange.urls["api"] == {
        "public": "http://127.0.0.1:9",
        "private": "http://127.0.0.1:9",
        "zendesk": "http://127.0.0.1:9/api/v2/help_center/en-us/articles",
    }

    settings.EXCHANGE_ID = "Exchange"  # a ccxt attribute, but not an exchange
    with pytest.raises(ImproperlyConfigured, match="not a ccxt exchange"):
        get_exchange()


# --- the simulated twin -------------------------------------------------------------------------------------


def test_simulated_candles_are_closed_aligned_and_deterministic() -> None:
    now = dt.datetime(2026, 3, 4, 15, 42, tzinfo=UTC)
    exchange = SimulatedExchange(clock=lambda: now)

    first = exchange.fetch_ohlcv("BTC/USDT", "1h", since=None, limit=48)
    again = SimulatedExchange(clock=lambda: now).fetch_ohlcv("BTC/USDT", "1h", since=None, limit=48)

    assert first == again
    assert len(first) == 48
    assert first[-1].ts == dt.datetime(2026, 3, 4, 14, tzinfo=UTC)  # 15:00 is still forming
    assert all(b.ts - a.ts == dt.timedelta(hours=1) for a, b in itertools.pairwise(first))
    # A continuous path: each candle opens where the last one closed, and high/low bound the body.
    assert all(b.open == a.close for a, b in itertools.pairwise(first))
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in first)
    assert all(c.volume > 0 for c in first)


def test_simulated_incremental_fetch_returns_only_newer_candles() -> None:
    clock = {"now": dt.datetime(2026, 3, 4, 15, 42, tzinfo=UTC)}
    exchange = SimulatedExchange(clock=lambda: clock["now"])
    stored = exchange.fetch_ohlcv("ETH/USDT", "1h", since=None, limit=24)

    clock["now"] += dt.timedelta(hours=3)
    newer = exchange.fetch_ohlcv("ETH/USDT", "1h", since=stored[-1].ts + dt.timedelta(hours=1), limit=100)

    assert [c.ts for c in newer] == [stored[-1].ts + dt.timedelta(hours=n) for n in (1, 2, 3)]
    assert newer[0].open == stored[-1].close
    # since is inclusive, like ccxt; nothing newer means nothing.
    assert exchange.fetch_ohlcv("ETH/USDT", "1h", since=newer[-1].ts, limit=100) == [newer[-1]]
    assert exchange.fetch_ohlcv("ETH/USDT", "1h", since=clock["now"], limit=100) == []
    # The overlap agrees with a fresh full fetch.
    full = exchange.fetch_ohlcv("ETH/USDT", "1h", since=None, limit=27)
    assert full == stored + newer


def test_simulated_windows_agree_across_the_generators_block_boundary() -> None:
    step = 3600 * 2048
    boundary = dt.datetime.fromtimestamp((int(NOW.timestamp()) // step) * step, tz=UTC)
    long = simulate_ohlcv("SOL/USDT", "1h", boundary + dt.timedelta(hours=10), 40)
    inside = simulate_ohlcv("SOL/USDT", "1h", boundary + dt.timedelta(hours=5), 5)
    before = simulate_ohlcv("SOL/USDT", "1h", boundary, 30)

    assert long == before + inside + long[35:]
    assert long[30].ts == boundary
    assert long[30].open == long[29].close  # no jump where the blocks meet


def test_simulated_tickers_summarise_the_last_day_of_candles() -> None:
    now = dt.datetime(2026, 3, 4, 15, 42, tzinfo=UTC)
    exchange = SimulatedExchange(clock=lambda: now)
    day = exchange.fetch_ohlcv("XRP/USDT", "1h", since=None, limit=24)

    (ticker,) = exchange.fetch_tickers(["XRP/USDT"])

    assert ticker.symbol == "XRP/USDT"
    assert ticker.last == day[-1].close
    assert ticker.change_24h_pct == round((day[-1].close / day[0].open - 1) * 100, 4)
    assert ticker.quote_volume_24h == round(sum(c.volume * c.close for c in day), 2)
    assert ticker.ts == dt.datetime(2026, 3, 4, 15, tzinfo=UTC)


def test_simulated_rejects_what_an_exchange_would() -> None:
    exchange = SimulatedExchange(clock=lambda: NOW)
    with pytest.raises(PermanentError):
        exchange.fetch_ohlcv("BTCUSDT", "1h", since=None, limit=5)
    with pytest.raises(PermanentError):
        exchange.fetch_ohlcv("BTC/USDT", "7m", since=None, limit=5)


def _ema(values: list[float], span: int) -> list[float]:
    k = 2 / (span + 1)
    out = [values[0]]
    for value in values[1:]:
        out.append(out[-1] + k * (value - out[-1]))
    return out


def _rsi(closes: list[float], period: int = 14) -> list[float]:
    gains = [max(0.0, b - a) for a, b in itertools.pairwise(closes)]
    losses = [max(0.0, a - b) for a, b in itertools.pairwise(closes)]
    avg_gain, avg_loss = sum(gains[:period]) / period, sum(losses[:period]) / period
    out = []
    for gain, loss in zip(gains[period:], losses[period:], strict=True):
        avg_gain = (avg_gain * (period - 1) + gain) / period
        avg_loss = (avg_loss * (period - 1) + loss) / period
        out.append(100 - 100 / (1 + avg_gain / avg_loss) if avg_loss else 100.0)
    return out


@pytest.mark.parametrize(
    "now",
    [
        dt.datetime(2025, 2, 10, tzinfo=UTC),
        dt.datetime(2025, 9, 1, 6, tzinfo=UTC),
        dt.datetime(2026, 11, 21, 12, tzinfo=UTC),
    ],
)
def test_three_weeks_of_simulated_market_hold_the_signals_analysis_looks_for(now: dt.datetime) -> None:
    exchange = SimulatedExchange(clock=lambda: now)
    for symbol in WATCHLIST:
        candles = exchange.fetch_ohlcv(symbol, "1h", since=None, limit=21 * 24)
        closes = [c.close for c in candles]
        volumes = [c.volume for c in candles]

        rsi = _rsi(closes)
        macd = [fast - slow for fast, slow in zip(_ema(closes, 12), _ema(closes, 26), strict=True)]
        signal = _ema(macd, 9)
        crosses = sum(
            1 for i in range(35, len(macd)) if (macd[i] - signal[i]) * (macd[i - 1] - signal[i - 1]) < 0
        )
        breakouts = 0
        spikes = 0
        for i in range(20, len(candles)):
            window = closes[i - 20 : i]
            middle, band = statistics.fmean(window), 2 * statistics.pstdev(window)
            breakouts += not middle - band <= closes[i] <= middle + band
            spikes += volumes[i] > 3 * statistics.fmean(volumes[i - 20 : i])

        assert any(value > 70 or value < 30 for value in rsi), symbol
        assert crosses >= 5, symbol
        assert breakouts >= 5, symbol
        assert spikes >= 1, symbol
