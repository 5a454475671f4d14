"""A seeded market simulator: candles with volatility clustering, drifting trends, news-driven bursts, a shared
market factor and volume spikes.

Deterministic for a given symbol, timeframe and candle time, so re-running it over the same range gives the
same candles (ingestion and the demo seed can upsert without churn), and any two windows agree where they
overlap.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import random
from dataclasses import dataclass

from apps.integrations.types import Candle

TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


@dataclass(frozen=True, slots=True)
class _Profile:
    price: float  # a rough price level, so the demo reads like a real market
    turnover: float  # quote-currency volume per hour
    volatility: float  # relative to BTC's
    beta: float  # how much of the move is the whole market's


_PROFILES = {
    "BTC": _Profile(64000.0, 60e6, 1.0, 0.9),
    "ETH": _Profile(3100.0, 30e6, 1.2, 0.85),
    "SOL": _Profile(145.0, 12e6, 1.7, 0.75),
    "XRP": _Profile(0.55, 8e6, 1.5, 0.7),
    "DOGE": _Profile(0.14, 6e6, 2.0, 0.7),
    "ADA": _Profile(0.45, 4e6, 1.6, 0.7),
}

# The path is generated in blocks of this many candles. Each block is a function of its index alone and is
# bridged to the next block's opening level, so windows that start in different blocks still agree and the
# price never jumps at a block boundary.
_BLOCK = 2048


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - simulation, not security


def _profile(symbol: str) -> _Profile:
    asset = symbol.split("/")[0].upper()
    if asset in _PROFILES:
        return _PROFILES[asset]
    r = _rng("profile", symbol)
    return _Profile(10.0 + r.random() * 90, 2e6, 1.8, 0.65)


def _level(symbol: str, seed: int, timeframe: str, block: int) -> float:
    """The price a block opens at: the asset's level with a slow, lognormal wander from block to block."""
    return _profile(symbol).price * math.exp(_rng(symbol, seed, timeframe, "level", block).gauss(0, 0.15))


@dataclass(frozen=True, slots=True)
class _MarketStep:
    shock: float  # the whole market's standard-normal move this candle
    burst: float  # extra return of a market-wide burst (macro news, liquidations), 0 when there is none
    burst_volume: float


@functools.lru_cache(maxsize=32)
def _market(seed: int, timeframe: str, block: int) -> tuple[_MarketStep, ...]:
    hours = TIMEFRAME_SECONDS[timeframe] / 3600
    steps = []
    left, move, volume = 0, 0.0, 1.0
    for index in range(block * _BLOCK, (block + 1) * _BLOCK):
        r = _rng("market", seed, timeframe, index)
        shock = r.gauss(0, 1)
        if left == 0 and r.random() < 0.002:
            left = r.randint(3, 6)
            move = r.choice((-1.0, 1.0)) * r.uniform(0.005, 0.01) * math.sqrt(hours)
            volume = r.uniform(2.0, 4.0)
        if left:
            left -= 1
            steps.append(_MarketStep(shock, move, volume))
        else:
            steps.append(_MarketStep(shock, 0.0, 1.0))
    return tuple(steps)


@functools.lru_cache(maxsize=128)
def _block(symbol: str, timeframe: str, seed: int, block: int) -> tuple[Candle, ...]:
    step = TIMEFRAME_SECONDS[timeframe]
    hours = step / 3600
    profile = _profile(symbol)
    base_vol = 0.006 * profile.volatility * math.sqrt(hours)
    own_share = math.sqrt(1 - profile.beta**2)
    first = block * _BLOCK
    market = _market(seed, timeframe, block)

    returns: list[float] = []
    details: list[tuple[float, float, float]] = []
    vol = base_vol
    drift = 0.0
    burst_left, burst_move, burst_volume = 0, 0.0, 1.0
    for offset in range(_BLOCK):
        r = _rng(symbol, seed, timeframe, first + offset)
        m = market[offset]
        if r.random() < 0.01:
            # A new trend regime: small next to the noise on one candle, decisive over days.
            drift = r.gauss(0, 0.00025) * hours
        if burst_left == 0 and r.random() < 0.004:
            # A coin-specific story (listing, hack, ETF headline): several candles one way on heavy volume.
            burst_left = r.randint(3, 8)
            burst_move = (
                r.choice((-1.0, 1.0)) * r.uniform(0.004, 0.009) * profile.volatility * math.sqrt(hours)
            )
            burst_volume = r.uniform(2.5, 5.0)
        ret = drift + vol * (profile.beta * m.shock + own_share * r.gauss(0, 1)) + profile.beta * m.burst
        activity = m.burst_volume
        if burst_left:
            burst_left -= 1
            ret += burst_move
            activity = max(activity, burst_volume)
        # Volatility clusters: big moves raise the next candle's volatility, then it decays to a floor.
        vol = min(0.08, 0.82 * vol + 0.12 * abs(ret) + 0.08 * base_vol)
        spike = 4.0 if r.random() < 0.02 else 1.0
        volume_factor = (1 + 25 * abs(ret)) * max(spike, activity) * (0.7 + 0.6 * r.random())
        returns.append(ret)
        details.append((abs(r.gauss(0, vol / 2)), abs(r.gauss(0, vol / 2)), volume_factor))

    opening = _level(symbol, seed, timeframe, block)
    closing = _level(symbol, seed, timeframe, block + 1)
    bridge = (math.log(closing / opening) - sum(returns)) / _BLOCK
    candles = []
    price = opening
    for offset, (ret, (wick_up, wick_down, volume_factor)) in enumerate(zip(returns, details, strict=True)):
        ts = dt.datetime.fromtimestamp((first + offset) * step, tz=dt.UTC)
        open_ = price
        # The last close is the next block's opening level exactly, not up to rounding.
        close = closing if offset == _BLOCK - 1 else max(open_ * math.exp(ret + bridge), 1e-9)
        high = max(open_, close) * (1 + wick_up)
        low = min(open_, close) * (1 - wick_down)
        # Busier while Europe and America are both awake.
        session = 1 + 0.35 * math.sin(2 * math.pi * (ts.hour - 8) / 24) if step < 86400 else 1.0
        volume = profile.turnover * hours / close * volume_factor * session
        candles.append(Candle(ts, open_, high, low, close, round(volume, 6)))
        price = close
    return tuple(candles)


def simulate_ohlcv(symbol: str, timeframe: str, end: dt.datetime, count: int, seed: int = 7) -> list[Candle]:
    """``count`` candles of ``timeframe`` ending at (and excluding) ``end``, aligned to the timeframe.

    The path is a random walk whose volatility follows a GARCH-like recursion, whose drift changes regime now
    and then, with bursts of one-directional moves on heavy volume (for one coin, or market-wide), a market
    factor every coin shares in part, and a daily rhythm in volume.
    """
    step = TIMEFRAME_SECONDS[timeframe]
    end_index = int(end.timestamp()) // step
    start_index = end_index - max(0, count)
    candles: list[Candle] = []
    for block in range(start_index // _BLOCK, (end_index - 1) // _BLOCK + 1):
        first = block * _BLOCK
        lo, hi = max(start_index, first) - first, min(end_index, first + _BLOCK) - first
        if lo < hi:
            candles.extend(_block(symbol, timeframe, seed, block)[lo:hi])
    return candles
