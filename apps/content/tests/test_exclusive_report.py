"""The weekly members' report: written from the week's insights and candles with exact numbers, stored once per
ISO week with its members-only charts, announced once per platform in the members' channels (a teaser with the
link, never the body), and never visible in the public feeds."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import Client
from PIL import Image
from pytest_django.fixtures import Settings

from apps.agents.base import AgentContext
from apps.agents.models import AgentRun, AgentRunStatus
from apps.agents.services import agent_run_create, agent_run_execute
from apps.content.agents import exclusive
from apps.content.agents.exclusive import ExclusiveContentAgent
from apps.content.factories import PublishedContentFactory
from apps.content.models import Audience, ExclusiveContent, ExclusiveStatus, Media, PublishedContent
from apps.content.selectors import member_file_get
from apps.core.resilience import TransientError
from apps.integrations.models import OutboxMessage
from apps.integrations.publishers import get_publisher
from apps.integrations.types import OutboundPost, Publisher, PublishResult
from apps.market.factories import InsightFactory, MarketDataFactory
from apps.market.models import InsightStatus, InsightType

pytestmark = pytest.mark.django_db

# Friday of ISO week 2025-W10, after the report's time (Friday 17:00 UTC).
NOW = dt.datetime(2025, 3, 7, 18, 0, tzinfo=dt.UTC)
MONDAY = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
SLUG = "weekly-market-report-2025-w10"
LINK = f"https://coinlink.example/library/{SLUG}/"
TELEGRAM_MEMBERS, DISCORD_MEMBERS = "-1009990001", "5550001"


@pytest.fixture(autouse=True)
def _report_settings(settings: Settings) -> None:
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"
    settings.MARKET_TIMEFRAME = "1h"
    settings.POST_DISCLAIMER = "Not financial advice."
    settings.SITE_URL = "https://coinlink.example/"
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.DISCORD_CHANNEL_ID = "4440001"
    settings.TELEGRAM_MEMBERS_CHANNEL_ID = TELEGRAM_MEMBERS
    settings.DISCORD_MEMBERS_CHANNEL_ID = DISCORD_MEMBERS


def _candles(symbol: str, *, start: float, end: float) -> None:
    """Hourly candles from well before the week (flat at ``start``) to the last one closed by NOW, the week's
    closes rising in a straight line from ``start`` (the candle that closes as the week opens) to ``end``."""
    anchor = MONDAY - HOUR
    last = NOW - HOUR
    week_candles = int((last - anchor) / HOUR)
    ts = anchor - 130 * HOUR
    while ts <= last:
        step = int((ts - anchor) / HOUR)
        close = start if step <= 0 else start + (end - start) * step / week_candles
        if ts == last:
            close = end
        MarketDataFactory.create(symbol=symbol, ts=ts, open=close, close=close, volume=100.0 + step % 7)
        ts += HOUR


def _insight(
    symbol: str, kind: str, confidence: float, headline: str, evidence: dict[str, Any], **kw: Any
) -> None:
    InsightFactory.create(
        symbol=symbol,
        type=kind,
        confidence=confidence,
        headline=headline,
        evidence=evidence,
        detected_at=kw.pop("detected_at", MONDAY + dt.timedelta(days=2)),
        status=kw.pop("status", InsightStatus.USED),
        **kw,
    )


@pytest.fixture
def week() -> None:
    _candles("BTC/USDT", start=100.0, end=110.0)
    _candles("ETH/USDT", start=2000.0, end=1950.0)
    _insight(
        "BTC/USDT",
        InsightType.RSI_OVERBOUGHT,
        0.9,
        "BTC RSI at 74.1",
        {"rsi": 74.123, "period": 14, "close": 110.0, "threshold": 70},
    )
    _insight(
        "BTC/USDT",
        InsightType.VOLUME_SPIKE,
        0.8,
        "BTC volume 3.2x its average",
        {"volume": 1_250_000.0, "mean_volume": 400_000.0, "ratio": 3.2, "zscore": 4.2},
    )
    # A weaker signal of a type BTC already has: the report shows each type once.
    _insight("BTC/USDT", InsightType.RSI_OVERBOUGHT, 0.7, "BTC RSI at 71.0", {"rsi": 71.0})
    _insight(
        "ETH/USDT",
        InsightType.MACD_BEARISH_CROSS,
        0.85,
        "ETH MACD crosses below its signal",
        {"macd": -1.5, "signal": -0.75, "histogram": -0.75, "close": 1950.0},
    )
    _insight(
        "SOL/USDT",
        InsightType.PRICE_MOVE,
        0.6,
        "SOL up 5.50% in 24h",
        {"change_pct": 5.5, "window_hours": 24, "close": 150.25},
    )
    # Noise and last week's news never make the report.
    _insight(
        "DOGE/USDT",
        InsightType.VOLUME_SPIKE,
        0.99,
        "discarded",
        {"ratio": 9.0},
        status=InsightStatus.DISCARDED,
    )
    _insight("XRP/USDT", InsightType.PRICE_MOVE, 0.95, "last week", {}, detected_at=MONDAY - HOUR)


EXPECTED_BODY = "\n\n".join(
    [
        "The week of 3 March to 7 March 2025 in 3 markets: how far each one moved, its strongest signals and the "
        "numbers behind them.",
        "\n".join(
            [
                "BTC/USDT: +10.00% on the week, from 100.00 to 110.00",
                "• RSI overbought, confidence 90%: BTC RSI at 74.1",
                "  close 110.00 · period 14 · RSI 74.12 · threshold 70",
                "• Volume spike, confidence 80%: BTC volume 3.2x its average",
                "  mean volume 400.00K · ratio 3.2x · volume 1.25M · z-score 4.20",
            ]
        ),
        "\n".join(
            [
                "ETH/USDT: -2.50% on the week, from 2,000.00 to 1,950.00",
                "• MACD bearish cross, confidence 85%: ETH MACD crosses below its signal",
                "  close 1,950.00 · histogram -0.75 · MACD -1.50 · signal -0.75",
            ]
        ),
        "\n".join(
            [
                "SOL/USDT: no candles to measure the week's move",
                "• Price move, confidence 60%: SOL up 5.50% in 24h",
                "  change +5.50% · close 150.25 · window hours 24",
            ]
        ),
        "Not financial advice.",
    ]
)
EXPECTED_TEASER = "\n".join(
    [
        "New in the members' library: Weekly market report: week 10, 2025",
        "The week in BTC, ETH and SOL: each market's move, its strongest signals with the numbers behind them, "
        "and chart cards.",
        f"Read it here: {LINK}",
        "Not financial advice.",
    ]
)


def _run(now: dt.datetime = NOW, **parameters: Any) -> dict[str, int]:
    ctx = AgentContext(
        run_id=1, agent_name=ExclusiveContentAgent.name, trigger="schedule", now=now, parameters=parameters
    )
    return dict(ExclusiveContentAgent().execute(ctx).counters)


def test_report_is_written_from_the_weeks_insights_and_candles(week: None) -> None:
    counters = _run()

    report = ExclusiveContent.objects.get()
    assert counters == {
        "reports_created": 1,
        "charts": 2,
        "no_market_data": 1,
        "announced": 2,
        "announced.telegram": 1,
        "announced.discord": 1,
    }
    assert (report.kind, report.status, report.period_start, report.published_at) == (
        ExclusiveContent.Kind.MARKET_REPORT,
        ExclusiveStatus.PUBLISHED,
        dt.date(2025, 3, 3),
        NOW,
    )
    assert (report.slug, report.title, report.required_entitlement) == (
        SLUG,
        "Weekly market report: week 10, 2025",
        "portal.premium",
    )
    assert report.body == EXPECTED_BODY


def test_charts_are_members_only_media_attached_to_the_report(week: None) -> None:
    _run()

    report = ExclusiveContent.objects.get()
    charts = list(report.media.order_by("pk"))
    assert [m.alt_text.split(":")[0] for m in charts] == ["Chart of BTC/USDT", "Chart of ETH/USDT"]
    assert list(Media.objects.order_by("pk")) == charts
    for media in charts:
        assert (media.kind, media.is_exclusive, media.content_type) == (Media.Kind.CHART, True, "image/png")
        with media.file.open("rb") as handle:
            image = Image.open(io.BytesIO(handle.read()))
        assert (image.format, image.size) == ("PNG", (media.width, media.height))
        # Served by the portal to library members only.
        member_file = member_file_get(media_id=media.pk)
        assert member_file is not None
        assert member_file.opened_by == frozenset({"portal.premium"})
    # The card's header shows the same move over the same candles as the report.
    assert "+10.00% across them" in charts[0].alt_text
    assert "-2.50% across them" in charts[1].alt_text


def test_members_are_told_in_their_channels_with_the_link_and_never_the_body(week: None) -> None:
    _run()

    report = ExclusiveContent.objects.get()
    sent = list(OutboxMessage.objects.order_by("platform").values_list("platform", "channel", "text", "kind"))
    assert sent == [
        ("discord", DISCORD_MEMBERS, EXPECTED_TEASER, OutboxMessage.Kind.POST),
        ("telegram", TELEGRAM_MEMBERS, EXPECTED_TEASER, OutboxMessage.Kind.POST),
    ]
    for paragraph in report.body.split("\n\n")[:-1]:  # the disclaimer is the only line they share
        assert paragraph not in EXPECTED_TEASER
    assert "74.12" not in EXPECTED_TEASER
    announcements = PublishedContent.objects.order_by("platform")
    assert [(a.platform, a.audience, a.exclusive_content_id, a.text) for a in announcements] == [
        ("discord", Audience.MEMBERS, report.pk, EXPECTED_TEASER),
        ("telegram", Audience.MEMBERS, report.pk, EXPECTED_TEASER),
    ]
    assert {a.external_id for a in announcements} == set(
        OutboxMessage.objects.values_list("external_id", flat=True)
    )


def test_rerunning_in_the_same_week_writes_and_sends_nothing_more(week: None) -> None:
    _run()
    before = {
        model.__name__: model.objects.count()
        for model in (ExclusiveContent, Media, OutboxMessage, PublishedContent)
    }
    report = ExclusiveContent.objects.get()

    counters = _run(NOW + dt.timedelta(days=1, hours=3))

    after = {
        model.__name__: model.objects.count()
        for model in (ExclusiveContent, Media, OutboxMessage, PublishedContent)
    }
    assert before == after == {"ExclusiveContent": 1, "Media": 2, "OutboxMessage": 2, "PublishedContent": 2}
    assert counters == {"reports_created": 0, "charts": 0, "announced": 0, "already_announced": 2}
    assert ExclusiveContent.objects.get().updated_at == report.updated_at


def test_next_week_gets_its_own_report(week: None) -> None:
    _run()
    _insight(
        "BTC/USDT",
        InsightType.RSI_OVERSOLD,
        0.8,
        "BTC RSI at 28.0",
        {"rsi": 28.0},
        detected_at=NOW + dt.timedelta(days=4),
    )

    counters = _run(NOW + dt.timedelta(days=7), min_insights=1)

    assert counters["reports_created"] == 1
    assert list(ExclusiveContent.objects.order_by("period_start").values_list("period_start", "slug")) == [
        (dt.date(2025, 3, 3), SLUG),
        (dt.date(2025, 3, 10), "weekly-market-report-2025-w11"),
    ]
    assert OutboxMessage.objects.count() == 4


def test_nothing_before_the_weeks_report_time(week: None) -> None:
    counters = _run(dt.datetime(2025, 3, 7, 16, 59, tzinfo=dt.UTC))

    assert counters == {"reports_created": 0, "charts": 0, "announced": 0, "not_due": 1}
    assert ExclusiveContent.objects.count() == Media.objects.count() == OutboxMessage.objects.count() == 0


def test_a_quiet_week_makes_no_report() -> None:
    _insight("BTC/USDT", InsightType.RSI_OVERSOLD, 0.8, "BTC RSI at 28.0", {"rsi": 28.0})

    counters = _run()

    assert counters == {"reports_created": 0, "charts": 0, "announced": 0, "too_few_insights": 1}
    assert ExclusiveContent.objects.count() == OutboxMessage.objects.count() == 0


def test_a_platform_without_a_members_channel_is_left_out_not_sent_publicly(
    week: None, settings: Settings
) -> None:
    settings.DISCORD_MEMBERS_CHANNEL_ID = ""

    counters = _run()

    assert counters["announced"] == 1
    assert counters["no_members_channel.discord"] == 1
    assert list(OutboxMessage.objects.values_list("platform", "channel")) == [("telegram", TELEGRAM_MEMBERS)]


def test_an_unpublished_report_is_not_announced(week: None) -> None:
    ExclusiveContent.objects.create(
        kind=ExclusiveContent.Kind.MARKET_REPORT,
        period_start=MONDAY.date(),
        title="Held back",
        slug="held-back",
        body="...",
        status=ExclusiveStatus.DRAFT,
    )

    counters = _run()

    assert counters["report_not_published"] == 1
    assert ExclusiveContent.objects.count() == 1
    assert OutboxMessage.objects.count() == 0


class _FlakyDiscord:
    platform = "discord"

    def publish(self, post: OutboundPost) -> PublishResult:
        raise TransientError("discord answered 503", service="discord")


def _publishers(discord_down: bool) -> Callable[[str], Publisher]:
    def pick(platform: str) -> Publisher:
        if platform == "discord" and discord_down:
            return _FlakyDiscord()  # type: ignore[return-value]
        return get_publisher(platform)

    return pick


def test_a_platform_down_fails_the_run_transiently_and_the_retry_sends_only_the_rest(
    week: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exclusive, "get_publisher", _publishers(discord_down=True))

    with pytest.raises(TransientError):
        _run()

    assert ExclusiveContent.objects.count() == 1
    assert list(PublishedContent.objects.values_list("platform", flat=True)) == ["telegram"]

    monkeypatch.setattr(exclusive, "get_publisher", _publishers(discord_down=False))
    counters = _run(NOW + dt.timedelta(minutes=1))

    assert counters == {
        "reports_created": 0,
        "charts": 0,
        "announced": 1,
        "announced.discord": 1,
        "already_announced": 1,
    }
    assert sorted(OutboxMessage.objects.values_list("platform", flat=True)) == ["discord", "telegram"]


def test_runs_through_the_framework_on_its_schedule(week: None) -> None:
    run = agent_run_create(agent_name="exclusive_content", trigger="schedule")

    with time_machine.travel(NOW, tick=False):
        outcome = agent_run_execute(run_id=run.pk)

    run = AgentRun.objects.get(pk=run.pk)
    assert outcome.status == run.status == AgentRunStatus.SUCCEEDED
    assert run.summary == f"2025-W10 report {SLUG}: written, 2 charts, announced on 2 platforms"
    assert ExclusiveContentAgent.phase == 3
    assert (ExclusiveContentAgent.default_schedule, ExclusiveContentAgent.services) == (
        "0 17 * * 5",
        ("telegram", "discord"),
    )


def test_public_platforms_are_refused_as_announcement_targets() -> None:
    with pytest.raises(ValidationError):
        ExclusiveContentAgent.validate_parameters({"platforms": ["telegram", "x"]})


# --- members-only posts stay out of the public feeds -------------------------------------------------------


def test_members_announcements_never_show_in_the_public_api_or_on_the_home_page(
    week: None, client: Client
) -> None:
    public = PublishedContentFactory.create(text="Public BTC post", published_at=NOW - dt.timedelta(days=1))
    with time_machine.travel(NOW, tick=False):
        _run()
    announcements = list(PublishedContent.objects.filter(audience=Audience.MEMBERS))
    assert len(announcements) == 2

    listing = client.get("/api/v1/published-content/")
    per_platform = client.get("/api/v1/published-content/", {"platform": "telegram"})
    detail = client.get(f"/api/v1/published-content/{announcements[0].pk}/")
    home = client.get("/").content.decode()

    assert [post["id"] for post in listing.json()["results"]] == [public.pk]
    assert per_platform.json()["results"] == []
    assert detail.status_code == 404
    assert "Public BTC post" in home
    assert "New in the members" not in home
    assert SLUG not in home
