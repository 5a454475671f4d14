"""Exchanges: candles and 24h tickers from a real exchange through ccxt, or from the seeded simulator offline.

Both hand back closed candles only (the one still forming would be revised on the next fetch) and read
``since`` inclusively, as ccxt does: a candle that opens at ``since`` is returned.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from apps.core.resilience import (
    PermanentError,
    RateLimited,
    RetryPolicy,
    TransientError,
    guarded_call,
    retry_after_from_headers,
)
from apps.integrations.market_simulator import TIMEFRAME_SECONDS, simulate_ohlcv
from apps.integrations.types import Candle, ExchangeClient, Ticker

SERVICE = "exchange"
# When an exchange says "slow down" without saying for how long.
DEFAULT_RATE_LIMIT_WAIT = 10.0
DEFAULT_POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0)
T = TypeVar("T")


def _utc_from_ms(ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _check_symbol(symbol: str) -> None:
    base, _, quote = symbol.partition("/")
    if not base or not quote or "/" in quote:
        raise PermanentError(f"{symbol!r} is not a BASE/QUOTE symbol", service=SERVICE)


# --- offline twin -------------------------------------------------------------------------------------------


class SimulatedExchange:
    """The seeded market from ``market_simulator``: the same candles for the same times on every call."""

    name = "simulated"

    def __init__(self, *, clock: Callable[[], dt.datetime] = timezone.now, seed: int = 7) -> None:
        self._clock = clock
        self._seed = seed

    def _step(self, timeframe: str) -> int:
        try:
            return TIMEFRAME_SECONDS[timeframe]
        except KeyError:
            raise PermanentError(f"unsupported timeframe {timeframe!r}", service=SERVICE) from None

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since: dt.datetime | None, limit: int
    ) -> list[Candle]:
        _check_symbol(symbol)
        step = self._step(timeframe)
        # The candle in progress is not closed yet, so the newest one we hand out ends at the current boundary.
        end_index = int(self._clock().timestamp()) // step
        start_index = end_index - limit if since is None else math.ceil(since.timestamp() / step)
        stop_index = min(end_index, start_index + limit)
        if stop_index <= start_index:
            return []
        end = dt.datetime.fromtimestamp(stop_index * step, tz=dt.UTC)
        return simulate_ohlcv(symbol, timeframe, end, stop_index - start_index, seed=self._seed)

    def fetch_tickers(self, symbols: list[str]) -> list[Ticker]:
        tickers = []
        for symbol in symbols:
            day = self.fetch_ohlcv(symbol, "1h", since=None, limit=24)
            last = day[-1]
            tickers.append(
                Ticker(
                    symbol=symbol,
                    last=last.close,
                    change_24h_pct=round((last.close / day[0].open - 1) * 100, 4),
                    quote_volume_24h=round(sum(c.volume * c.close for c in day), 2),
                    ts=last.ts + dt.timedelta(hours=1),
                )
            )
        return tickers


# --- ccxt ---------------------------------------------------------------------------------------------------


def _rebase(urls: Any, base: str) -> Any:
    """Every URL in an exchange's ``urls['api']`` (a string, or a dict of them, possibly nested) with its
    scheme and host replaced by ``base``, keeping the path: ``https://api.binance.com/api/v3`` becomes
    ``http://127.0.0.1:8082/api/v3``."""
    if isinstance(urls, str):
        parts = urlsplit(urls)
        return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    if isinstance(urls, Mapping):
        return {key: _rebase(value, base) for key, value in urls.items()}
    return urls


class _LastResponse(threading.local):
    status: int | None = None
    headers: Mapping[str, str] = {}


@functools.lru_cache(maxsize=4)
def _ccxt_exchange(exchange_id: str, api_url: str, timeout_seconds: float) -> tuple[Any, _LastResponse]:
    """One client per configuration and process, so the market list (``load_markets``, a large download on
    most exchanges) is fetched once rather than on every scan."""
    if exchange_id not in ccxt.exchanges:
        raise ImproperlyConfigured(f"EXCHANGE_ID {exchange_id!r} is not a ccxt exchange")
    exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True, "timeout": int(timeout_seconds * 1000)})
    # We only read spot markets; loading the derivatives markets too would triple the start-up requests.
    fetch_markets = exchange.options.get("fetchMarkets")
    if isinstance(fetch_markets, dict) and "spot" in fetch_markets.get("types", []):
        fetch_markets["types"] = ["spot"]
    elif isinstance(fetch_markets, list) and "spot" in fetch_markets:
        exchange.options["fetchMarkets"] = ["spot"]
    if api_url:
        exchange.urls["api"] = _rebase(exchange.urls["api"], api_url)
    # ccxt's errors do not carry the HTTP status (binance raises DDoSProtection for a 429) nor the headers;
    # a response hook remembers both for the translation of the error.
    last = _LastResponse()

    def remember(response: requests.Response, *args: object, **kwargs: object) -> None:
        last.status = response.status_code
        last.headers = response.headers

    exchange.session.hooks["response"].append(remember)
    return exchange, last


class CcxtExchange:
    """A real exchange through ccxt. Errors become ``apps.core.resilience`` errors; every request goes
    through the "exchange" circuit breaker with retries."""

    def __init__(
        self,
        exchange_id: str,
        *,
        api_url: str = "",
        timeout_seconds: float = 10.0,
        policy: RetryPolicy = DEFAULT_POLICY,
        clock: Callable[[], dt.datetime] = timezone.now,
    ) -> None:
        self.name = exchange_id
        self._exchange, self._last = _ccxt_exchange(exchange_id, api_url, timeout_seconds)
        self._policy = policy
        self._clock = clock

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since: dt.datetime | None, limit: int
    ) -> list[Candle]:
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        rows = self._call(lambda: self._exchange.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit))
        step_ms = self._exchange.parse_timeframe(timeframe) * 1000
        now_ms = self._clock().timestamp() * 1000
        return [
            Candle(_utc_from_ms(ts), float(o), float(h), float(lo), float(c), float(v or 0.0))
            for ts, o, h, lo, c, v in rows
            if ts + step_ms <= now_ms
        ]

    def fetch_tickers(self, symbols: list[str]) -> list[Ticker]:
        raw = self._call(lambda: self._exchange.fetch_tickers(symbols))
        tickers = []
        for symbol in symbols:
            if (ticker := raw.get(symbol)) is None or ticker.get("last") is None:
                continue
            ts = ticker.get("timestamp")
            tickers.append(
                Ticker(
                    symbol=symbol,
                    last=float(ticker["last"]),
                    change_24h_pct=ticker.get("percentage"),
                    quote_volume_24h=ticker.get("quoteVolume"),
                    ts=_utc_from_ms(ts) if ts is not None else self._clock(),
                )
            )
        return tickers

    def _call(self, fn: Callable[[], T]) -> T:
        return guarded_call(SERVICE, lambda: self._translated(fn), policy=self._policy)

    def _translated(self, fn: Callable[[], T]) -> T:
        self._last.status, self._last.headers = None, {}
        try:
            return fn()
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
            if isinstance(exc, ccxt.RateLimitExceeded) or self._last.status in {418, 429}:
                wait = retry_after_from_headers(self._last.headers)
                raise RateLimited(
                    str(exc),
                    retry_after=DEFAULT_RATE_LIMIT_WAIT if wait is None else wait,
                    service=SERVICE,
                ) from exc
            raise TransientError(str(exc), service=SERVICE) from exc
        except ccxt.OperationFailed as exc:  # network errors, timeouts, maintenance, garbled responses
            raise TransientError(str(exc), service=SERVICE) from exc
        except ccxt.BaseError as exc:  # bad symbol, bad request, authentication, unsupported
            raise PermanentError(str(exc), service=SERVICE) from exc


def get_exchange() -> ExchangeClient:
    backend = settings.EXCHANGE_BACKEND
    if backend == "simulated":
        return SimulatedExchange()
    if backend == "ccxt":
        return CcxtExchange(
            settings.EXCHANGE_ID,
            api_url=settings.EXCHANGE_API_URL,
            timeout_seconds=settings.EXCHANGE_TIMEOUT_SECONDS,
        )
    raise ImproperlyConfigured(f"EXCHANGE_BACKEND must be simulated or ccxt, not {backend!r}")
