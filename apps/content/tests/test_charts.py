"""Chart cards: a valid PNG of the expected size, the same bytes for the same data and different ones for
different insight types; the image agent draws one chart per insight and reuses it across its drafts."""

from __future__ import annotations

import datetime as dt
import io
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pytest_django.fixtures import Settings

from apps.agents.base import AgentContext
from apps.content.agents.images import ImageGenerationAgent
from apps.content.charts import ChartData, render_chart
from apps.content.factories import ContentDraftFactory, ContentPlanFactory
from apps.content.models import ContentDraft, DraftStatus, Media
from apps.market.factories import InsightFactory
from apps.market.models import Insight, MarketData

NOW = dt.datetime(2025, 3, 3, 10, 30, tzinfo=dt.UTC)
DETECTED = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)


def _series(n: int = 200, seed: int = 0) -> tuple[list[float], list[float]]:
    closes = [60000 * (1 + 0.02 * math.sin((i + seed) / 7) + 0.0004 * i) for i in range(n)]
    volumes = [100 + 20 * math.cos(i / 3) for i in range(n)]
    volumes[-1] = 900
    return closes, volumes


def _data(insight_type: str = "rsi_oversold", **fields: Any) -> ChartData:
    closes, volumes = _series()
    defaults: dict[str, Any] = {
        "symbol": "BTC/USDT",
        "insight_type": insight_type,
        "headline": "BTC RSI(14) at 27.4: oversold",
        "timeframe": "1h",
        "closes": closes,
        "volumes": volumes,
        "last_candle_at": DETECTED - dt.timedelta(hours=1),
        "evidence": {"rsi": 27.4, "period": 14, "close": closes[-1], "threshold": 30},
        "note": "Not financial advice.",
    }
    return ChartData(**{**defaults, **fields})


TYPES = [
    "price_move",
    "rsi_overbought",
    "rsi_oversold",
    "macd_bullish_cross",
    "macd_bearish_cross",
    "bollinger_breakout_up",
    "bollinger_breakout_down",
    "volume_spike",
    "sentiment_shift",
]


@pytest.mark.parametrize("insight_type", TYPES)
def test_a_chart_is_a_png_of_the_expected_size(insight_type: str) -> None:
    chart = render_chart(_data(insight_type))

    image = Image.open(io.BytesIO(chart.png))
    image.verify()
    assert image.format == "PNG"
    assert image.size == (chart.width, chart.height) == (1200, 675)
    assert chart.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert chart.alt_text.startswith("Chart of BTC/USDT: closing price over the last 72 1h candles")
    assert len(chart.alt_text) <= 300


def test_the_same_data_gives_the_same_bytes_and_other_types_other_bytes() -> None:
    first = render_chart(_data("bollinger_breakout_up"))
    again = render_chart(_data("bollinger_breakout_up"))
    shas = {render_chart(_data(t)).sha256 for t in TYPES}

    assert first.png == again.png
    assert first.sha256 == again.sha256
    assert len(shas) == len(TYPES)


def test_other_candles_give_other_bytes() -> None:
    closes, volumes = _series(seed=5)
    assert render_chart(_data()).sha256 != render_chart(_data(closes=closes, volumes=volumes)).sha256


def test_the_brand_colours_are_on_the_card() -> None:
    image = Image.open(io.BytesIO(render_chart(_data("price_move")).png)).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1_000_000) or []}
    assert (11, 16, 32) in colours  # --bg
    assert (247, 183, 51) in colours  # --accent, the price line


def test_a_chart_needs_two_candles() -> None:
    with pytest.raises(ValueError, match="two candles"):
        render_chart(_data(closes=[1.0], volumes=[1.0]))
    assert render_chart(_data(closes=[1.0, 1.0], volumes=[1.0, 1.0])).width == 1200


# --- the agent ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _private_media(settings: Settings, tmp_path: Path) -> None:
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    settings.MARKET_TIMEFRAME = "1h"


def _candles(symbol: str = "BTC/USDT", n: int = 200) -> None:
    closes, volumes = _series(n)
    last = DETECTED - dt.timedelta(hours=1)
    MarketData.objects.bulk_create(
        [
            MarketData(
                exchange="binance",
                symbol=symbol,
                timeframe="1h",
                ts=last - dt.timedelta(hours=n - 1 - i),
                open=close,
                high=close * 1.001,
                low=close * 0.999,
                close=close,
                volume=volume,
            )
            for i, (close, volume) in enumerate(zip(closes, volumes, strict=True))
        ]
    )


def _insight(**fields: Any) -> Insight:
    return InsightFactory.create(
        **{"detected_at": DETECTED, "expires_at": NOW + dt.timedelta(hours=12), "timeframe": "1h", **fields}
    )


def _draft(insight: Insight, platform: str, format: str, **fields: Any) -> ContentDraft:
    plan = ContentPlanFactory.create(insight=insight, platform=platform, format=format)
    return ContentDraftFactory.create(plan=plan, status=fields.pop("status", DraftStatus.APPROVED), **fields)


def _run(**parameters: Any) -> dict[str, int]:
    ctx = AgentContext(
        run_id=1, agent_name=ImageGenerationAgent.name, trigger="manual", now=NOW, parameters=parameters
    )
    return dict(ImageGenerationAgent().execute(ctx).counters)


@pytest.mark.django_db
def test_one_chart_per_insight_shared_by_its_drafts() -> None:
    _candles()
    insight = _insight()
    telegram = _draft(insight, "telegram", "telegram_chart_post")
    discord = _draft(insight, "discord", "discord_embed", status=DraftStatus.PENDING_REVIEW)
    x = _draft(insight, "x", "single_post")

    counters = _run()

    assert counters["charts_drawn"] == 1
    assert counters["drafts_attached"] == 2
    media = Media.objects.get()
    assert media.kind == Media.Kind.CHART
    assert (media.width, media.height, media.content_type) == (1200, 675, "image/png")
    png = media.file.read()
    assert media.size_bytes == len(png)
    assert media.sha256 == render_chart(ImageGenerationAgent.chart_data(insight, candles=72)).sha256  # type: ignore[arg-type]
    assert Image.open(io.BytesIO(png)).size == (1200, 675)
    assert media.alt_text.startswith("Chart of BTC/USDT")
    assert "30 and 70" in media.alt_text
    assert {d.pk: d.image_id for d in ContentDraft.objects.all()} == {
        telegram.pk: media.pk,
        discord.pk: media.pk,
        x.pk: None,  # an X single post gets a chart only when asked for
    }


@pytest.mark.django_db
def test_running_again_or_for_a_later_draft_reuses_the_chart() -> None:
    _candles()
    insight = _insight()
    _draft(insight, "telegram", "telegram_chart_post")
    _run()
    # More candles arrive after the insight; a new draft still gets the same card.
    MarketData.objects.create(
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="1h",
        ts=DETECTED,
        open=1,
        high=1,
        low=1,
        close=1,
        volume=1,
    )
    later = _draft(insight, "x", "single_post")

    counters = _run(x_single_post_chart=True)

    assert counters["charts_drawn"] == 0
    assert counters["charts_reused"] == 1
    assert Media.objects.count() == 1
    later.refresh_from_db()
    assert later.image == Media.objects.get()


@pytest.mark.django_db
def test_the_same_card_is_stored_once_even_without_a_draft_link() -> None:
    _candles()
    first = _insight()
    _draft(first, "telegram", "telegram_chart_post")
    _run()
    ContentDraft.objects.update(image=None)

    assert _run()["charts_drawn"] == 1
    assert Media.objects.count() == 1


@pytest.mark.django_db
def test_drafts_on_their_way_out_and_insights_without_candles_are_left_alone() -> None:
    _candles()
    published = _draft(_insight(), "telegram", "telegram_chart_post", status=DraftStatus.PUBLISHING)
    no_data = _draft(_insight(symbol="ZZZ/USDT"), "discord", "discord_embed")

    counters = _run()

    assert counters["no_market_data"] == 1
    assert counters["charts_drawn"] == 0
    assert Media.objects.count() == 0
    assert ContentDraft.objects.get(pk=published.pk).image is None
    assert ContentDraft.objects.get(pk=no_data.pk).image is None
