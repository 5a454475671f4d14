"""Chart cards: a PNG drawn with Pillow alone (no plotting library) in the brand's colours
(``static/css/coinlink.css``), showing an insight's price line over its last candles with the indicator that
fired: Bollinger bands for a breakout, an RSI panel with its 30/70 lines, a MACD panel, a volume panel for a
volume spike, the move's window for a price move, the sentiment before and now for a sentiment shift.

Rendering is deterministic: the same data gives the same bytes (no timestamps in the file, fonts bundled with
Pillow), so a chart's sha256 identifies it and re-rendering never makes a second file. The card is drawn at
twice its size and scaled down, which gives smooth lines without an anti-aliasing renderer.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from apps.integrations.llm import format_number
from apps.market import indicators

WIDTH, HEIGHT = 1200, 675  # 16:9, what X, Telegram and Discord show uncropped
SCALE = 2

# The brand palette of static/css/coinlink.css.
BG = "#0b1020"
SURFACE = "#131a2e"
RAISED = "#1a2340"
BORDER = "#2a3558"
TEXT = "#e8ecf6"
MUTED = "#a9b3cc"
ACCENT = "#f7b733"
LINK = "#7dd3fc"
SUCCESS = "#4ade80"
DANGER = "#f87171"

_LABELS = {
    "price_move": "Price move",
    "rsi_overbought": "RSI overbought",
    "rsi_oversold": "RSI oversold",
    "macd_bullish_cross": "MACD bullish cross",
    "macd_bearish_cross": "MACD bearish cross",
    "bollinger_breakout_up": "Bollinger breakout",
    "bollinger_breakout_down": "Bollinger breakdown",
    "volume_spike": "Volume spike",
    "sentiment_shift": "Sentiment shift",
}


@dataclass(frozen=True)
class ChartData:
    """What a card shows. ``closes`` and ``volumes`` run oldest first and may reach further back than the
    ``window`` candles drawn, so the indicators are warmed up where the card starts."""

    symbol: str
    insight_type: str
    headline: str
    timeframe: str
    closes: Sequence[float]
    volumes: Sequence[float]
    last_candle_at: dt.datetime
    evidence: Mapping[str, Any]
    window: int = 72
    note: str = ""


@dataclass(frozen=True)
class Chart:
    png: bytes
    width: int
    height: int
    sha256: str
    alt_text: str


def label_for(insight_type: str) -> str:
    return _LABELS.get(insight_type, insight_type.replace("_", " ").capitalize())


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font (Aileron), the same on every machine.
    return ImageFont.load_default(size=size * SCALE)


def _number(evidence: Mapping[str, Any], key: str, default: float) -> float:
    value = evidence.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _fit_text(draw: ImageDraw.ImageDraw, text: str, size: int, width: float) -> str:
    font = _font(size)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


class _Panel:
    """A plotting area in card pixels: maps candle index and value to (scaled) image coordinates."""

    def __init__(self, box: tuple[int, int, int, int], count: int, low: float, high: float) -> None:
        self.left, self.top, self.right, self.bottom = box
        self.count = max(count, 2)
        if not high > low:
            spread = abs(high) * 0.01 or 1.0
            low, high = low - spread, high + spread
        self.low, self.high = low, high

    def x(self, index: float) -> int:
        return round((self.left + (self.right - self.left) * index / (self.count - 1)) * SCALE)

    def y(self, value: float) -> int:
        share = (value - self.low) / (self.high - self.low)
        return round((self.bottom - (self.bottom - self.top) * share) * SCALE)

    def points(self, values: Sequence[float]) -> list[tuple[int, int]]:
        return [(self.x(i), self.y(v)) for i, v in enumerate(values) if math.isfinite(v)]


def _box(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    left, top, right, bottom = box
    draw.rounded_rectangle(
        (left * SCALE, top * SCALE, right * SCALE, bottom * SCALE),
        radius=12 * SCALE,
        fill=SURFACE,
        outline=BORDER,
        width=SCALE,
    )


def _dashed(
    draw: ImageDraw.ImageDraw, y: int, x0: int, x1: int, colour: str, width: int = 2, dash: int = 10
) -> None:
    x = x0
    while x < x1:
        draw.line((x, y, min(x + dash * SCALE, x1), y), fill=colour, width=width * SCALE)
        x += 2 * dash * SCALE


def _line(draw: ImageDraw.ImageDraw, points: list[tuple[int, int]], colour: str, width: int) -> None:
    if len(points) >= 2:
        draw.line(points, fill=colour, width=width * SCALE, joint="curve")


def _label(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, colour: str, anchor: str = "la"
) -> None:
    draw.text((xy[0] * SCALE, xy[1] * SCALE), text, font=_font(size), fill=colour, anchor=anchor)


def _shown(values: Sequence[float] | np.ndarray, window: int) -> list[float]:
    return [float(v) for v in list(values)[-window:]]


def render_chart(data: ChartData, *, width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """The card as PNG bytes, with its size, sha256 and a description for people who cannot see it."""
    closes = np.asarray(list(data.closes), dtype=np.float64)
    if len(closes) < 2:
        raise ValueError("a chart needs at least two candles")
    volumes = np.asarray(list(data.volumes), dtype=np.float64)
    window = min(data.window, len(closes))
    shown = _shown(closes, window)
    kind = data.insight_type
    evidence = data.evidence

    image = Image.new("RGBA", (width * SCALE, height * SCALE), BG)
    draw = ImageDraw.Draw(image)
    margin = 40
    right_edge = width - margin

    # Header: symbol, the change across the card, the headline; the brand and the signal on the right.
    change = (shown[-1] / shown[0] - 1.0) * 100.0 if shown[0] else 0.0
    _label(draw, (margin, 28), data.symbol, 44, TEXT)
    symbol_width = draw.textlength(data.symbol, font=_font(44)) / SCALE
    _label(
        draw,
        (margin + symbol_width + 20, 42),
        format_number(change, "percent"),
        30,
        SUCCESS if change >= 0 else DANGER,
    )
    _label(draw, (right_edge, 30), "COINLINK", 24, ACCENT, anchor="ra")
    signal = label_for(kind)
    pill_width = draw.textlength(signal, font=_font(18)) / SCALE + 28
    draw.rounded_rectangle(
        ((right_edge - pill_width) * SCALE, 66 * SCALE, right_edge * SCALE, 98 * SCALE),
        radius=16 * SCALE,
        fill=RAISED,
        outline=BORDER,
        width=SCALE,
    )
    _label(draw, (right_edge - pill_width / 2, 82), signal, 18, TEXT, anchor="mm")
    headline = _fit_text(draw, data.headline, 22, (right_edge - pill_width - 30 - margin) * SCALE)
    _label(draw, (margin, 90), headline, 22, MUTED)

    has_subpanel = kind.startswith(("rsi_", "macd_")) or kind in {"volume_spike", "sentiment_shift"}
    price_box = (margin, 130, right_edge, 430 if has_subpanel else 600)
    sub_box = (margin, 445, right_edge, 600)
    plot_right = right_edge - 110  # room for the price scale

    # Price panel, with Bollinger bands on a breakout.
    bands: tuple[list[float], list[float], list[float]] | None = None
    if kind.startswith("bollinger_"):
        period = int(_number(evidence, "period", 20))
        k = _number(evidence, "stddev", 2.0)
        middle, upper, lower, _ = indicators.bollinger(closes, period, k)
        bands = (_shown(upper, window), _shown(lower, window), _shown(middle, window))
    visible = shown + [v for series in (bands or ()) for v in series if math.isfinite(v)]
    low, high = min(visible), max(visible)
    pad = (high - low) * 0.08
    _box(draw, price_box)
    price = _Panel(
        (price_box[0] + 16, price_box[1] + 18, plot_right, price_box[3] - 18), window, low - pad, high + pad
    )
    for step in range(5):
        value = price.low + (price.high - price.low) * (0.1 + 0.2 * step)
        y = price.y(value)
        draw.line((price.left * SCALE, y, plot_right * SCALE, y), fill=BORDER, width=max(1, SCALE // 2))
        _label(draw, (right_edge - 14, y / SCALE), format_number(value, "price"), 16, MUTED, anchor="rm")

    if kind == "price_move":
        hours = _number(evidence, "window_hours", 0.0)
        per_candle = _timeframe_hours(data.timeframe)
        candles = round(hours / per_candle) if per_candle else 0
        if 0 < candles < window:
            start = price.x(window - 1 - candles)
            shade = Image.new("RGBA", image.size, (0, 0, 0, 0))
            ImageDraw.Draw(shade).rectangle(
                (start, price.top * SCALE, price.x(window - 1), price.bottom * SCALE),
                fill=(247, 183, 51, 40),
            )
            image.alpha_composite(shade)
            draw = ImageDraw.Draw(image)
            draw.line((start, price.top * SCALE, start, price.bottom * SCALE), fill=ACCENT, width=SCALE)

    if bands is not None:
        band_upper, band_lower, band_middle = bands
        top_points, bottom_points = price.points(band_upper), price.points(band_lower)
        if len(top_points) >= 2 and len(bottom_points) >= 2:
            fill = Image.new("RGBA", image.size, (0, 0, 0, 0))
            ImageDraw.Draw(fill).polygon(top_points + bottom_points[::-1], fill=(125, 211, 252, 36))
            image.alpha_composite(fill)
            draw = ImageDraw.Draw(image)
        _line(draw, top_points, LINK, 2)
        _line(draw, bottom_points, LINK, 2)
        for i in range(0, len(band_middle) - 1, 2):
            a, b = band_middle[i], band_middle[i + 1]
            if math.isfinite(a) and math.isfinite(b):
                draw.line((price.x(i), price.y(a), price.x(i + 1), price.y(b)), fill=MUTED, width=SCALE)

    _line(draw, price.points(shown), ACCENT, 3)
    last_x, last_y = price.x(window - 1), price.y(shown[-1])
    draw.ellipse(
        (last_x - 7 * SCALE, last_y - 7 * SCALE, last_x + 7 * SCALE, last_y + 7 * SCALE), fill=ACCENT
    )

    if has_subpanel:
        _box(draw, sub_box)
        inner = (sub_box[0] + 16, sub_box[1] + 16, plot_right, sub_box[3] - 16)
        if kind.startswith("rsi_"):
            _rsi_panel(draw, inner, closes, window, int(_number(evidence, "period", 14)), right_edge)
        elif kind.startswith("macd_"):
            _macd_panel(draw, inner, closes, window, right_edge)
        elif kind == "volume_spike":
            _volume_panel(draw, inner, volumes, window, right_edge)
        else:
            _sentiment_panel(draw, sub_box, evidence)

    stamp = data.last_candle_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    _label(draw, (margin, 630), f"{data.timeframe} candles · last {window} · {stamp}", 18, MUTED)
    if data.note:
        _label(draw, (right_edge, 630), data.note, 18, MUTED, anchor="ra")

    final = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    final.save(buffer, format="PNG")
    png = buffer.getvalue()
    return Chart(
        png=png,
        width=width,
        height=height,
        sha256=hashlib.sha256(png).hexdigest(),
        alt_text=_alt_text(data, window, change),
    )


def _timeframe_hours(timeframe: str) -> float:
    units = {"m": 1 / 60, "h": 1.0, "d": 24.0}
    try:
        return int(timeframe[:-1]) * units[timeframe[-1]]
    except (KeyError, ValueError, IndexError):
        return 0.0


def _rsi_panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    closes: np.ndarray,
    window: int,
    period: int,
    right_edge: int,
) -> None:
    panel = _Panel(box, window, 0.0, 100.0)
    draw.rectangle((panel.left * SCALE, panel.y(70), panel.right * SCALE, panel.y(30)), fill=RAISED)
    for level, colour in ((70, DANGER), (30, SUCCESS)):
        _dashed(draw, panel.y(level), panel.left * SCALE, panel.right * SCALE, colour)
        _label(draw, (right_edge - 14, panel.y(level) / SCALE), str(level), 16, colour, anchor="rm")
    _label(draw, (panel.left + 8, panel.top + 2), f"RSI({period})", 16, MUTED)
    _line(draw, panel.points(_shown(indicators.rsi(closes, period), window)), LINK, 2)


def _macd_panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    closes: np.ndarray,
    window: int,
    right_edge: int,
) -> None:
    line, signal, histogram = (_shown(series, window) for series in indicators.macd(closes))
    values = [v for v in (*line, *signal, *histogram) if math.isfinite(v)] or [0.0]
    extent = max(abs(min(values)), abs(max(values))) * 1.1 or 1.0
    panel = _Panel(box, window, -extent, extent)
    zero = panel.y(0.0)
    draw.line((panel.left * SCALE, zero, panel.right * SCALE, zero), fill=BORDER, width=SCALE)
    half = max(1, round((panel.right - panel.left) / window * 0.35 * SCALE))
    for i, value in enumerate(histogram):
        if math.isfinite(value):
            x = panel.x(i)
            top, bottom = sorted((zero, panel.y(value)))
            draw.rectangle((x - half, top, x + half, bottom), fill=SUCCESS if value >= 0 else DANGER)
    _line(draw, panel.points(line), LINK, 2)
    _line(draw, panel.points(signal), TEXT, 2)
    _label(draw, (panel.left + 8, panel.top + 2), "MACD", 16, MUTED)
    _label(draw, (right_edge - 14, zero / SCALE), "0", 16, MUTED, anchor="rm")


def _volume_panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    volumes: np.ndarray,
    window: int,
    right_edge: int,
) -> None:
    shown = _shown(volumes, window) if len(volumes) else [0.0] * window
    highest = max(shown) or 1.0
    panel = _Panel(box, len(shown), 0.0, highest * 1.05)
    half = max(1, round((panel.right - panel.left) / len(shown) * 0.35 * SCALE))
    for i, value in enumerate(shown):
        x = panel.x(i)
        colour = ACCENT if i == len(shown) - 1 else BORDER
        draw.rectangle((x - half, panel.y(value), x + half, panel.bottom * SCALE), fill=colour)
    baseline = shown[:-1] or shown
    mean = sum(baseline) / len(baseline)
    _dashed(draw, panel.y(mean), panel.left * SCALE, panel.right * SCALE, LINK)
    _label(draw, (panel.left + 8, panel.top + 2), "Volume", 16, MUTED)
    _label(draw, (right_edge - 14, panel.y(mean) / SCALE), "avg", 16, LINK, anchor="rm")


def _sentiment_panel(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], evidence: Mapping[str, Any]
) -> None:
    left, top, right, bottom = box
    centre = (left + 160 + right - 40) / 2
    half_width = (right - 40 - (left + 160)) / 2
    rows = (("Before", _number(evidence, "previous_score", 0.0)), ("Now", _number(evidence, "score", 0.0)))
    _label(draw, (left + 20, top + 12), "Sentiment, -1 to +1", 16, MUTED)
    for index, (name, score) in enumerate(rows):
        y = top + 50 + index * 48
        score = max(-1.0, min(1.0, score))
        _label(draw, (left + 20, y + 14), name, 20, TEXT, anchor="lm")
        draw.rectangle(
            ((centre - half_width) * SCALE, y * SCALE, (centre + half_width) * SCALE, (y + 28) * SCALE),
            fill=RAISED,
        )
        end = centre + half_width * score
        x0, x1 = sorted((centre, end))
        draw.rectangle(
            (x0 * SCALE, y * SCALE, max(x1, x0 + 1) * SCALE, (y + 28) * SCALE),
            fill=SUCCESS if score >= 0 else DANGER,
        )
    draw.line(
        (centre * SCALE, (top + 44) * SCALE, centre * SCALE, (bottom - 10) * SCALE), fill=MUTED, width=SCALE
    )


_INDICATOR_WORDS = {
    "price_move": "with the window of the move shaded",
    "rsi_overbought": "with the RSI below it, its 30 and 70 lines marked, reading overbought",
    "rsi_oversold": "with the RSI below it, its 30 and 70 lines marked, reading oversold",
    "macd_bullish_cross": "with the MACD line, signal line and histogram below it, crossing upwards",
    "macd_bearish_cross": "with the MACD line, signal line and histogram below it, crossing downwards",
    "bollinger_breakout_up": "inside its Bollinger bands, the last close above the upper band",
    "bollinger_breakout_down": "inside its Bollinger bands, the last close below the lower band",
    "volume_spike": "with volume bars below it, the last bar far above the dashed average",
    "sentiment_shift": "with bars of social sentiment before and now below it",
}


def _alt_text(data: ChartData, window: int, change: float) -> str:
    words = _INDICATOR_WORDS.get(data.insight_type, "")
    text = (
        f"Chart of {data.symbol}: closing price over the last {window} {data.timeframe} candles, "
        f"{format_number(change, 'percent')} across them{', ' + words if words else ''}."
    )
    room = 300 - len(text) - 1
    if room > 20 and data.headline:
        headline = data.headline if len(data.headline) <= room else data.headline[: room - 1].rstrip() + "…"
        text = f"{text} {headline}"
    return text[:300]
