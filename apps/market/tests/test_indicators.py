"""Indicators against values worked by hand and against straightforward loop implementations."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from apps.market import indicators

# Wilder's 14-period example series (the one charting tutorials use).
WILDER_CLOSES = [
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28,
    46.28, 46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45, 45.78, 45.35, 44.03, 44.18,
    44.22, 44.57, 43.42, 42.66, 43.13,
]  # fmt: skip
# The same example computed without rounding intermediate averages (tutorial spreadsheets round the first
# averages to 0.24 and 0.10 and so print 70.53 first; the exact series below is what TA-Lib gives).
WILDER_RSI = [
    70.46, 66.25, 66.48, 69.35, 66.29, 57.92, 62.88, 63.21, 56.01, 62.34, 54.67, 50.39, 40.02, 41.49,
    41.90, 45.50, 37.32, 33.09, 37.79,
]  # fmt: skip


def _random_walk(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))


def _loop_ema(values: list[float], period: int) -> list[float]:
    """EMA seeded with the mean of the first ``period`` defined values: the textbook loop."""
    out = [math.nan] * len(values)
    first = next(i for i, v in enumerate(values) if not math.isnan(v))
    seed_at = first + period - 1
    if seed_at >= len(values):
        return out
    out[seed_at] = sum(values[first : seed_at + 1]) / period
    alpha = 2 / (period + 1)
    for i in range(seed_at + 1, len(values)):
        out[i] = alpha * values[i] + (1 - alpha) * out[i - 1]
    return out


def test_rsi_first_value_is_the_hand_computed_wilder_average() -> None:
    # First 14 changes: gains sum to 3.34, losses to 1.40; RS = 3.34 / 1.40.
    first = 100 - 100 / (1 + 3.34 / 1.40)
    # Next change is -0.28: Wilder's smoothing keeps 13/14 of each average and adds 1/14 of the new change.
    second = 100 - 100 / (1 + (3.34 / 14 * 13 / 14) / ((1.40 / 14 * 13 + 0.28) / 14))

    values = indicators.rsi(WILDER_CLOSES, 14)

    assert np.isnan(values[:14]).all()
    assert values[14] == pytest.approx(first, abs=1e-9)
    assert values[15] == pytest.approx(second, abs=1e-9)
    assert round(first, 2) == 70.46


def test_rsi_matches_the_reference_series() -> None:
    assert np.round(indicators.rsi(WILDER_CLOSES, 14)[14:], 2).tolist() == WILDER_RSI


def test_rsi_edges_read_100_without_losses_and_50_without_movement() -> None:
    assert indicators.rsi(list(range(1, 20)), 14)[-1] == 100.0
    assert indicators.rsi([5.0] * 20, 14)[-1] == 50.0
    assert np.isnan(indicators.rsi([1.0] * 14, 14)).all()


def test_ema_closed_form_matches_the_recursion_over_long_series() -> None:
    # Long enough that the closed form has to work block by block to stay clear of overflow.
    x = _random_walk(6000)
    for alpha in (1 / 14, 2 / 13, 2 / 27, 0.2, 0.9):
        y, expected = 42.0, []
        for value in x:
            y = (1 - alpha) * y + alpha * value
            expected.append(y)
        assert np.allclose(indicators.ema(x, alpha, initial=42.0), expected, rtol=0, atol=1e-9)


def test_macd_matches_loops() -> None:
    closes = _random_walk(120).tolist()
    fast, slow = _loop_ema(closes, 12), _loop_ema(closes, 26)
    line = [f - s for f, s in zip(fast, slow, strict=True)]
    signal = _loop_ema(line, 9)

    got_line, got_signal, got_hist = indicators.macd(np.array(closes))

    assert np.isnan(got_line[:25]).all()
    assert not np.isnan(got_line[25])
    assert np.isnan(got_signal[:33]).all()
    assert not np.isnan(got_signal[33])
    assert np.allclose(got_line[25:], line[25:], rtol=0, atol=1e-10)
    assert np.allclose(got_signal[33:], signal[33:], rtol=0, atol=1e-10)
    assert np.allclose(got_hist[33:], np.array(line[33:]) - np.array(signal[33:]), rtol=0, atol=1e-10)


def test_macd_crossover_on_a_turning_series() -> None:
    # Falling for 40 candles then rising: the histogram goes from negative to positive exactly once.
    closes = [100 - i for i in range(40)] + [60 + 2 * i for i in range(1, 30)]
    _, _, hist = indicators.macd(closes)
    signs = np.sign(hist[~np.isnan(hist)])
    assert signs[0] == -1
    assert signs[-1] == 1
    assert np.count_nonzero(np.diff(signs) > 0) == 1


def test_bollinger_matches_loops() -> None:
    closes = _random_walk(60).tolist()
    middle, upper, lower, std = indicators.bollinger(np.array(closes), 20, 2.0)

    assert np.isnan(middle[:19]).all()
    for i in range(19, 60):
        window = closes[i - 19 : i + 1]
        mean, sd = statistics.fmean(window), statistics.pstdev(window)
        assert middle[i] == pytest.approx(mean, abs=1e-9)
        assert std[i] == pytest.approx(sd, abs=1e-9)
        assert upper[i] == pytest.approx(mean + 2 * sd, abs=1e-9)
        assert lower[i] == pytest.approx(mean - 2 * sd, abs=1e-9)


def test_bollinger_by_hand() -> None:
    # Ten closes at 9 and ten at 11: mean 10, population standard deviation exactly 1.
    closes = [9.0, 11.0] * 10
    middle, upper, lower, std = indicators.bollinger(closes, 20, 2.0)
    assert (middle[-1], upper[-1], lower[-1], std[-1]) == (10.0, 12.0, 8.0, 1.0)


def test_volume_zscore_by_hand_and_against_a_loop() -> None:
    # Baseline alternates 90 and 110 (mean 100, population stddev 10); then 300 is 20 sigma above it.
    volumes = [90.0, 110.0] * 24 + [300.0]
    assert indicators.zscore_vs_trailing(volumes, 48)[-1] == pytest.approx(20.0)

    series = _random_walk(80).tolist()
    z = indicators.zscore_vs_trailing(np.array(series), 24)
    assert np.isnan(z[:24]).all()
    for i in range(24, 80):
        base = series[i - 24 : i]
        expected = (series[i] - statistics.fmean(base)) / statistics.pstdev(base)
        assert z[i] == pytest.approx(expected, abs=1e-9)


def test_volume_zscore_is_undefined_against_a_flat_baseline() -> None:
    assert np.isnan(indicators.zscore_vs_trailing([100.0] * 10 + [500.0], 10)[-1])


def test_pct_change() -> None:
    closes = [100.0, 102.0, 99.0, 103.0, 110.0]
    changes = indicators.pct_change(closes, 1)
    assert np.isnan(changes[0])
    assert changes[1:].tolist() == pytest.approx([2.0, -2.941176470588, 4.040404040404, 6.796116504854])
    assert indicators.pct_change(closes, 4)[-1] == pytest.approx(10.0)
    assert np.isnan(indicators.pct_change(closes, 5)).all()
