"""Charts drawn on the server as inline SVG: no script, no outside library, nothing the page's Content
Security Policy has to allow, and readable without JavaScript. Colours come from the stylesheet's custom
properties through classes, so the charts follow the theme.

Two kinds: a line chart of series over time (cumulative exposures, bandit weights) and an interval chart
(each variant's effect with its interval against a zero line, the way a forest plot reads).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# Enough distinct series colours for the charts here; more series than this reuse them (the legend names them).
PALETTE_SIZE = 8
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 12, 28


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[dt.datetime, float]]


@dataclass(frozen=True)
class Interval:
    label: str
    effect: float
    low: float
    high: float
    # Decided: the interval excludes zero after the correction for multiple comparisons.
    significant: bool = False
    note: str = ""


def _n(value: float) -> str:
    """A coordinate as SVG wants it (format_html escapes its arguments to strings first)."""
    return f"{value:.1f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def percent(value: float) -> str:
    return f"{value:+.1%}" if value else "0%"


def share(value: float) -> str:
    return f"{value:.0%}"


def count(value: float) -> str:
    return f"{value:,.0f}"


def _date_ticks(start: dt.datetime, end: dt.datetime, count: int = 5) -> list[dt.datetime]:
    if end <= start:
        return [start]
    step = (end - start) / (count - 1)
    return [start + step * i for i in range(count)]


def line_chart(
    series: Sequence[Series],
    *,
    label: str,
    value_format: Callable[[float], str] = count,
    width: int = 640,
    height: int = 220,
    y_min: float | None = None,
) -> SafeString:
    """Series over time, with axes, a legend and each point's value in its tooltip. ``label`` is what a
    screen reader hears; an empty chart says there is nothing yet."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return format_html('<p class="chart-empty muted small">{}: nothing measured yet.</p>', label)
    times = [when for s in drawn for when, _ in s.points]
    values = [value for s in drawn for _, value in s.points]
    start, end = min(times), max(times)
    ticks = nice_ticks(min(values) if y_min is None else min(y_min, *values), max(values))
    low, high = ticks[0], ticks[-1]
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - MARGIN_BOTTOM
    span = (end - start).total_seconds() or 1.0

    def x(when: dt.datetime) -> float:
        return MARGIN_LEFT + plot_w * (when - start).total_seconds() / span

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h * (1 - (value - low) / ((high - low) or 1.0))

    grid = format_html_join(
        "",
        '<line class="chart__grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<text class="chart__tick" x="{}" y="{}" text-anchor="end">{}</text>',
        (
            (
                MARGIN_LEFT,
                width - MARGIN_RIGHT,
                _n(y(t)),
                _n(y(t)),
                MARGIN_LEFT - 6,
                _n(y(t) + 4),
                value_format(t),
            )
            for t in ticks
        ),
    )
    multi_day = (end - start) >= dt.timedelta(days=2)
    x_axis = format_html_join(
        "",
        '<text class="chart__tick" x="{}" y="{}" text-anchor="middle">{}</text>',
        (
            (_n(x(t)), height - 8, t.strftime("%b %d") if multi_day else t.strftime("%H:%M"))
            for t in _date_ticks(start, end)
        ),
    )
    lines = []
    for index, s in enumerate(drawn):
        colour = index % PALETTE_SIZE
        path = " ".join(f"{x(w):.1f},{y(v):.1f}" for w, v in s.points)
        dots = format_html_join(
            "",
            '<circle class="chart__dot chart--c{}" cx="{}" cy="{}" r="2.5"><title>{}: {} at {}</title></circle>',
            (
                (colour, _n(x(w)), _n(y(v)), s.label, value_format(v), w.strftime("%Y-%m-%d %H:%M"))
                for w, v in s.points
            ),
        )
        lines.append(
            format_html(
                '<polyline class="chart__line chart--c{}" points="{}" fill="none"/>{}', colour, path, dots
            )
        )
    legend = format_html_join(
        "",
        '<li><span class="chart__swatch chart--c{}" aria-hidden="true"></span>{} <span class="muted">{}</span></li>',
        ((i % PALETTE_SIZE, s.label, value_format(s.points[-1][1])) for i, s in enumerate(drawn)),
    )
    return format_html(
        '<figure class="chart"><svg class="chart__svg" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        "{}{}{}</svg>"
        '<figcaption><ul class="chart__legend">{}</ul></figcaption></figure>',
        width,
        height,
        label,
        grid,
        x_axis,
        mark_safe("".join(lines)),  # noqa: S308 - every piece was built by format_html above
        legend,
    )


def interval_chart(
    rows: Sequence[Interval],
    *,
    label: str,
    value_format: Callable[[float], str] = percent,
    width: int = 640,
    row_height: int = 30,
) -> SafeString:
    """Each row's effect as a dot and its interval as a bar, against a dashed zero line: a bar clear of zero
    is a difference; the colour says whether it survived the correction."""
    if not rows:
        return format_html('<p class="chart-empty muted small">{}: no results yet.</p>', label)
    label_w = 150
    bounds = [v for r in rows for v in (r.low, r.high, r.effect) if math.isfinite(v)] + [0.0]
    ticks = nice_ticks(min(bounds), max(bounds))
    low, high = ticks[0], ticks[-1]
    # Room on the right for the last tick's label, centred on the plot's edge.
    plot_left, plot_right = label_w, width - MARGIN_RIGHT - 24
    height = MARGIN_TOP + row_height * len(rows) + MARGIN_BOTTOM

    def x(value: float) -> float:
        clipped = min(max(value, low), high)
        return plot_left + (plot_right - plot_left) * (clipped - low) / ((high - low) or 1.0)

    axis = format_html_join(
        "",
        '<text class="chart__tick" x="{}" y="{}" text-anchor="middle">{}</text>',
        ((_n(x(t)), height - 8, value_format(t)) for t in ticks),
    )
    zero = format_html(
        '<line class="chart__zero" x1="{}" x2="{}" y1="{}" y2="{}"/>',
        _n(x(0.0)),
        _n(x(0.0)),
        MARGIN_TOP,
        height - MARGIN_BOTTOM,
    )
    drawn = format_html_join(
        "",
        '<g class="chart__row{}"><text class="chart__label" x="4" y="{}">{}</text>'
        '<line class="chart__interval" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<circle class="chart__effect" cx="{}" cy="{}" r="4"/>'
        "<title>{}: {} ({} to {}){}</title></g>",
        (
            (
                " chart__row--significant" if r.significant else "",
                _n(MARGIN_TOP + row_height * i + row_height / 2 + 4),
                r.label,
                _n(x(r.low)),
                _n(x(r.high)),
                _n(MARGIN_TOP + row_height * i + row_height / 2),
                _n(MARGIN_TOP + row_height * i + row_height / 2),
                _n(x(r.effect)),
                _n(MARGIN_TOP + row_height * i + row_height / 2),
                r.label,
                value_format(r.effect),
                value_format(r.low),
                value_format(r.high),
                f"; {r.note}" if r.note else "",
            )
            for i, r in enumerate(rows)
        ),
    )
    return format_html(
        '<figure class="chart"><svg class="chart__svg" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        "{}{}{}</svg></figure>",
        width,
        height,
        label,
        zero,
        axis,
        drawn,
    )
