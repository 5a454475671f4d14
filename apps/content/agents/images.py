"""Image generation: the chart card of an insight, attached to its drafts whose format shows one.

One chart per insight: the card is drawn from the candles up to the moment the insight was detected (what the
analysis saw), so it never changes afterwards; it is stored once (media are found again by their sha256) and
reused by every draft of the insight.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, ClassVar

from django.conf import settings

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.content import limits, selectors, services
from apps.content.charts import ChartData, render_chart
from apps.content.models import ContentDraft, ContentFormat, Media
from apps.market.models import Insight
from apps.market.selectors import market_data_series, timeframe_step

# Candles before the first one drawn, so the indicators (Wilder's RSI, MACD's slow EMA) have settled.
WARMUP_CANDLES = 120


@register
class ImageGenerationAgent(BaseAgent):
    name = "image_generation"
    phase = 2
    description = (
        "Draws each insight's chart card (price line with the indicator that fired) as a PNG, stores it once "
        "and attaches it to the insight's Telegram chart posts and Discord embeds."
    )
    depends_on = ("content_creation",)
    default_parameters: ClassVar[dict[str, Any]] = {
        # Candles drawn on the card.
        "candles": 72,
        # X single posts carry the chart too.
        "x_single_post_chart": False,
        "batch_size": 100,
    }

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        result.counters.update(dict.fromkeys(("charts_drawn", "charts_reused", "drafts_attached"), 0))
        formats = set(limits.IMAGE_FORMATS)
        if params["x_single_post_chart"]:
            formats.add(ContentFormat.SINGLE_POST)
        drafts = [
            d
            for d in selectors.content_draft_list_needing_chart(formats=formats, limit=params["batch_size"])
            # A single post wants a chart only on X (and only when asked for).
            if d.format != ContentFormat.SINGLE_POST or d.platform == "x"
        ]
        by_insight: dict[int, list[ContentDraft]] = defaultdict(list)
        for draft in drafts:
            assert draft.plan.insight_id is not None  # the selector's filter
            by_insight[draft.plan.insight_id].append(draft)
        for insight_id, group in by_insight.items():
            insight = group[0].plan.insight
            assert insight is not None
            media = selectors.media_chart_for_insight(insight_id=insight_id)
            if media is not None:
                result.incr("charts_reused")
            else:
                media = self.chart(insight, candles=params["candles"])
                if media is None:
                    result.incr("no_market_data")
                    ctx.logger.info("no candles to chart insight #%s (%s)", insight.pk, insight.symbol)
                    continue
                result.incr("charts_drawn")
            result.incr(
                "drafts_attached",
                services.content_draft_attach_image(draft_ids=[d.pk for d in group], media_id=media.pk),
            )
        counters = result.counters
        result.summary = (
            f"{counters['charts_drawn']} charts drawn, {counters['charts_reused']} reused, "
            f"{counters['drafts_attached']} drafts given their chart"
        )
        return result

    @staticmethod
    def chart_data(insight: Insight, *, candles: int) -> ChartData | None:
        """The card's data, or None without at least two candles to draw."""
        timeframe = insight.timeframe or settings.MARKET_TIMEFRAME
        step = timeframe_step(timeframe)
        # The newest closed candle when the insight was detected, as the analysis read it.
        until = insight.detected_at - step
        series = market_data_series(
            symbols=[insight.symbol],
            timeframe=timeframe,
            since=until - (candles + WARMUP_CANDLES) * step,
            until=until,
        ).get(insight.symbol)
        if series is None or len(series.close) < 2:
            return None
        return ChartData(
            symbol=insight.symbol,
            insight_type=insight.type,
            headline=insight.headline,
            timeframe=timeframe,
            closes=series.close.tolist(),
            volumes=series.volume.tolist(),
            last_candle_at=series.ts[-1],
            evidence=dict(insight.evidence or {}),
            window=candles,
            note=str(settings.POST_DISCLAIMER),
        )

    def chart(self, insight: Insight, *, candles: int) -> Media | None:
        data = self.chart_data(insight, candles=candles)
        if data is None:
            return None
        chart = render_chart(data)
        day = insight.detected_at.astimezone(dt.UTC).strftime("%Y%m%d")
        coin = "".join(c for c in insight.symbol.split("/")[0].lower() if c.isalnum()) or "chart"
        return services.media_chart_store(
            png=chart.png,
            width=chart.width,
            height=chart.height,
            alt_text=chart.alt_text,
            name=f"chart-{coin}-{day}-{insight.pk}-{chart.sha256[:12]}.png",
        )
