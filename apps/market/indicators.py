"""Technical indicators over candle arrays, vectorised with NumPy.

Every function takes a 1-D float array ordered oldest first and returns an array of the same length, with NaN
where the indicator is not defined yet (its warm-up), so callers index the newest value with ``[-1]`` and
compare with ``[-2]`` for crossovers without off-by-one bookkeeping.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# Powers of the decay factor grow like d**-n inside ``ema``; splitting the series into blocks over which they
# stay below 1e100 keeps the closed form far from float64 overflow (about 1e308) for any series length.
_MAX_GROWTH_LOG = 100 * math.log(10)


def _as_array(values: ArrayLike) -> FloatArray:
    array: FloatArray = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError("indicators take a one-dimensional series")
    return array


def ema(values: ArrayLike, alpha: float, *, initial: float) -> FloatArray:
    """The recursion ``y[t] = (1 - alpha) * y[t-1] + alpha * x[t]`` with ``y[-1] = initial``, for every t.

    The recursion is linear, so it has the closed form ``y[t] = d**(t+1) * (initial + alpha * sum_k x[k] d**-(k+1))``
    with ``d = 1 - alpha``: a cumulative sum instead of a Python loop.
    """
    x = _as_array(values)
    if not 0 < alpha <= 1:
        raise ValueError("alpha must be in (0, 1]")
    if alpha == 1:
        return x.copy()
    decay = 1.0 - alpha
    block = max(1, int(_MAX_GROWTH_LOG / -math.log(decay)))
    out = np.empty_like(x)
    carry = initial
    for start in range(0, len(x), block):
        chunk = x[start : start + block]
        steps = np.arange(1, len(chunk) + 1, dtype=np.float64)
        growth = decay**-steps
        out[start : start + len(chunk)] = (carry + alpha * np.cumsum(chunk * growth)) / growth
        carry = out[start + len(chunk) - 1]
    return out


def sma_seeded_ema(values: ArrayLike, period: int) -> FloatArray:
    """The exponential moving average with ``alpha = 2 / (period + 1)``, seeded with the simple mean of the
    first ``period`` values (the usual charting convention); NaN before that. Leading NaNs in ``values`` are
    skipped, so an EMA of an indicator that itself warms up (the MACD signal line) starts where it does."""
    return _seeded(values, period, alpha=2.0 / (period + 1))


def _seeded(values: ArrayLike, period: int, *, alpha: float) -> FloatArray:
    x = _as_array(values)
    out = np.full_like(x, np.nan)
    defined = np.flatnonzero(~np.isnan(x))
    if period < 1 or len(defined) < period:
        return out
    first = int(defined[0])
    seed_at = first + period - 1
    out[seed_at] = x[first : seed_at + 1].mean()
    out[seed_at + 1 :] = ema(x[seed_at + 1 :], alpha, initial=float(out[seed_at]))
    return out


def pct_change(closes: ArrayLike, window: int) -> FloatArray:
    """Percentage change of each close against the close ``window`` candles earlier."""
    c = _as_array(closes)
    out = np.full_like(c, np.nan)
    if window < 1 or len(c) <= window:
        return out
    out[window:] = (c[window:] / c[:-window] - 1.0) * 100.0
    return out


def rsi(closes: ArrayLike, period: int = 14) -> FloatArray:
    """Wilder's relative strength index: average gain and loss over the first ``period`` changes, then
    Wilder's smoothing (``alpha = 1 / period``). Defined from index ``period``.

    No losses in the averaging window reads 100; no movement at all reads 50 (no evidence either way).
    """
    c = _as_array(closes)
    out = np.full_like(c, np.nan)
    if period < 1 or len(c) <= period:
        return out
    change = np.diff(c)
    gains = np.clip(change, 0.0, None)
    losses = np.clip(-change, 0.0, None)
    avg_gain = _seeded(gains, period, alpha=1.0 / period)[period - 1 :]
    avg_loss = _seeded(losses, period, alpha=1.0 / period)[period - 1 :]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where(avg_loss == 0, np.where(avg_gain == 0, 50.0, 100.0), value)
    out[period:] = value
    return out


def macd(
    closes: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line (fast EMA minus slow EMA), its signal line (EMA of the MACD line) and the histogram (their
    difference). A crossover is the histogram changing sign between two candles."""
    c = _as_array(closes)
    line = sma_seeded_ema(c, fast) - sma_seeded_ema(c, slow)
    signal_line = sma_seeded_ema(line, signal)
    return line, signal_line, line - signal_line


def bollinger(
    closes: ArrayLike, period: int = 20, k: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Bollinger bands: the ``period`` simple moving average (middle) and ``k`` population standard
    deviations above (upper) and below (lower) it, the current close included in its own window, as charting
    packages draw them. Returns (middle, upper, lower, stddev)."""
    c = _as_array(closes)
    middle = np.full_like(c, np.nan)
    std = np.full_like(c, np.nan)
    if period >= 1 and len(c) >= period:
        windows = sliding_window_view(c, period)
        middle[period - 1 :] = windows.mean(axis=1)
        std[period - 1 :] = windows.std(axis=1)
    return middle, middle + k * std, middle - k * std, std


def zscore_vs_trailing(values: ArrayLike, window: int) -> FloatArray:
    """How many standard deviations each value lies from the mean of the ``window`` values before it (the
    value itself excluded, so a spike does not dilute its own baseline). NaN where the baseline does not
    vary, since no spread can be measured against it."""
    v = _as_array(values)
    out = np.full_like(v, np.nan)
    if window < 2 or len(v) <= window:
        return out
    baselines = sliding_window_view(v, window)[:-1]
    mean = baselines.mean(axis=1)
    std = baselines.std(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[window:] = np.where(std > 0, (v[window:] - mean) / std, np.nan)
    return out
