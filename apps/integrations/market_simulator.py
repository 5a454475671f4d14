"""A seeded market simulator: candles with volatility clustering, drifting trends and volume spikes.

Deterministic for a given symbol, timeframe and candle time, so re-running it over the same range gives the
same candles (ingestion and the demo seed can upsert without churn).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random

from apps.integrations.types import Candle

TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}

# Rough price levels so the demo reads like a real market.
_BASE_PRICES = {"BTC": 64000.0, "ETH": 3100.0, "SOL": 145.0, "XRP": 0.55, "DOGE": 0.14, "ADA": 0.45}


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - simulation, not security


def simulate_ohlcv(symbol: str, timeframe: str, end: dt.datetime, count: int, seed: int = 7) -> list[Candle]:
    """``count`` candles of ``timeframe`` ending at (and excluding) ``end``, aligned to the timeframe.

    The path is a random walk whose volatility follows a GARCH-like recursion, whose drift changes regime now
    and then, and whose volume spikes when the move is large; every candle is derived from a generator seeded
    by the symbol and the whole-epoch candle index, so overlapping ranges agree.
    """
    step = TIMEFRAME_SECONDS[timeframe]
    end_index = int(end.timestamp()) // step
    start_index = end_index - count
    base = _BASE_PRICES.get(symbol.split("/")[0].upper(), 10.0 + _rng(symbol).random() * 90)
    # Walk a fixed warm-up from a reference index so that overlapping windows share the same path.
    anchor = start_index - (start_index % 4096)
    price = base * (0.8 + 0.4 * _rng(symbol, seed, "anchor", anchor).random())
    base_vol = 0.006 * math.sqrt(step / 3600)
    vol = base_vol
    drift = 0.0
    candles: list[Candle] = []
    for index in range(anchor, end_index):
        r = _rng(symbol, seed, timeframe, index)
        if r.random() < 0.01:
            drift = r.gauss(0, 0.00025) * step / 3600
        shock = r.gauss(0, 1)
        ret = drift + vol * shock
        # Volatility clusters: big moves raise the next candle's volatility, then it decays to a floor.
        vol = min(0.08, 0.82 * vol + 0.12 * abs(ret) + 0.08 * base_vol)
        open_ = price
        close = max(open_ * math.exp(ret), 1e-9)
        wick = abs(r.gauss(0, vol / 2))
        high = max(open_, close) * (1 + wick)
        low = min(open_, close) * (1 - abs(r.gauss(0, vol / 2)))
        spike = 4.0 if r.random() < 0.02 else 1.0
        # Quote-currency turnover of a few million an hour, expressed in base units.
        volume = 4e6 * step / 3600 / close * (1 + 25 * abs(ret)) * spike * (0.7 + 0.6 * r.random())
        price = close
        if index >= start_index:
            ts = dt.datetime.fromtimestamp(index * step, tz=dt.UTC)
            candles.append(Candle(ts, open_, high, low, close, round(volume, 6)))
    return candles
