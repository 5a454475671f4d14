"""Exclusive content: the weekly members-only market report, put in the library and announced to members.

Once per ISO week (not before ``report_weekday`` at ``report_hour`` UTC, so a pipeline running every hour does
not publish Monday's half-empty week) the agent writes the week's report from the week's insights: per market,
its move over the week from the candles and its strongest signals with the numbers behind them, and a chart
card for each of the top markets, stored as members-only media attached to the piece. The piece goes into the
library published, keyed by the week's Monday (``exclusive_one_report_per_period``), so a rerun finds it and
never writes a second one.

Then members hear of it: a short teaser with the piece's library link (never its body) goes to the members'
Telegram channel and the members' Discord channel (``TELEGRAM_MEMBERS_CHANNEL_ID``,
``DISCORD_MEMBERS_CHANNEL_ID``; a platform without one is left out, never sent to the public channel). Each
announcement is recorded as members-only published content linked to the piece, which is how a rerun knows it
was sent; the post carries a key per piece and platform for the publishers' own deduplication. A platform that
fails transiently makes the run fail transiently after the others were tried, so the framework's retry
announces only what is missing.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.urls import reverse

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.content import selectors, services
from apps.content.agents.images import WARMUP_CANDLES
from apps.content.agents.repurposing import digest_week
from apps.content.charts import ChartData, label_for, render_chart
from apps.content.models import ExclusiveContent, ExclusiveStatus
from apps.core.resilience import PermanentError, TransientError
from apps.integrations.llm import DEFAULT_KINDS, EVIDENCE_KINDS, format_number
from apps.integrations.publishers import get_publisher
from apps.integrations.types import OutboundPost
from apps.market.models import Insight
from apps.market.selectors import CandleSeries, market_data_series, timeframe_step

MEMBERS_PLATFORMS = ("telegram", "discord")
# More than a week of insights ever holds for a watchlist; the report shows a handful per market anyway.
INSIGHT_LIMIT = 1000

_EVIDENCE_LABELS = {
    "rsi": "RSI",
    "macd": "MACD",
    "zscore": "z-score",
    "change_pct": "change",
    "stddev": "std dev",
}


def members_channel(platform: str) -> str:
    return {
        "telegram": settings.TELEGRAM_MEMBERS_CHANNEL_ID,
        "discord": settings.DISCORD_MEMBERS_CHANNEL_ID,
    }.get(platform, "")


def evidence_line(evidence: Mapping[str, Any]) -> str:
    """The numbers behind an insight, each written the way posts write it (``format_number``), keys in
    alphabetical order so the text does not depend on how the database stores the JSON."""
    parts = []
    for key in sorted(evidence):
        value = evidence[key]
        label = _EVIDENCE_LABELS.get(key, key.replace("_", " "))
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            kind = EVIDENCE_KINDS.get(key, DEFAULT_KINDS)[0]
            parts.append(f"{label} {format_number(value, kind)}")
        elif isinstance(value, str) and value and len(value) <= 40:
            parts.append(f"{label} {value}")
    return " · ".join(parts)


def week_change(series: CandleSeries | None, *, week_start: dt.datetime) -> tuple[float, float, float] | None:
    """(first close, last close, change in percent) over the week: from the close of the candle that ends as
    the week starts (the earliest one in the week when that is missing) to the newest close."""
    if series is None:
        return None
    first = bisect.bisect_left(series.ts, week_start - _step())
    if len(series.close) - first < 2:
        return None
    start, end = float(series.close[first]), float(series.close[-1])
    if not start:
        return None
    return start, end, (end / start - 1.0) * 100.0


def _step() -> dt.timedelta:
    return timeframe_step(settings.MARKET_TIMEFRAME)


def _coin(symbol: str) -> str:
    return symbol.split("/")[0]


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@register
class ExclusiveContentAgent(BaseAgent):
    name = "exclusive_content"
    phase = 3
    description = (
        "Writes the weekly members-only market report from the week's insights (each market's move, its "
        "strongest signals and their numbers, chart cards), puts it in the library once per week and "
        "announces it with a link in the members' Telegram and Discord channels."
    )
    services = MEMBERS_PLATFORMS
    service_policy = "any"
    default_schedule = "0 17 * * 5"
    default_parameters: ClassVar[dict[str, Any]] = {
        # Not before this moment of the ISO week (0 is Monday; hours in UTC).
        "report_weekday": 4,
        "report_hour": 17,
        # Fewer insights in the week make no report.
        "min_insights": 3,
        # Markets covered (those with the strongest signals first), signals per market, markets charted.
        "symbols": 5,
        "insights_per_symbol": 3,
        "charts": 3,
        # Where members hear of the report: the members' channels of these platforms.
        "platforms": list(MEMBERS_PLATFORMS),
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        problems = []
        if not (0 <= params["report_weekday"] <= 6 and 0 <= params["report_hour"] <= 23):
            problems.append("report_weekday runs from 0 (Monday) to 6 and report_hour from 0 to 23")
        if params["symbols"] < 1 or params["insights_per_symbol"] < 1 or params["charts"] < 0:
            problems.append("symbols and insights_per_symbol must be 1 or more, charts 0 or more")
        if params["min_insights"] < 1:
            problems.append("min_insights must be 1 or more")
        if unknown := set(params["platforms"]) - set(MEMBERS_PLATFORMS):
            problems.append(
                f"platforms: only the members' channels of {MEMBERS_PLATFORMS}, not {sorted(unknown)}"
            )
        if problems:
            raise ValidationError(problems)
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        result.counters.update(dict.fromkeys(("reports_created", "charts", "announced"), 0))
        now = ctx.now.astimezone(dt.UTC)
        week, monday = digest_week(now)
        due = monday + dt.timedelta(days=params["report_weekday"], hours=params["report_hour"])
        if now < due:
            result.incr("not_due")
            result.summary = f"the {week} report is not due before {due:%A %H:%M} UTC"
            return result

        report = selectors.exclusive_content_get_for_period(
            kind=ExclusiveContent.Kind.MARKET_REPORT, period_start=monday.date()
        )
        if report is None:
            report = self.write_report(ctx, params, now=now, week=week, monday=monday, result=result)
            if report is None:
                result.summary = f"too few insights for the {week} report; none written"
                return result
        if report.status != ExclusiveStatus.PUBLISHED:
            # The operator took it out of the library (or never put it in): nothing to announce.
            result.incr("report_not_published")
            result.summary = f"the {week} report ({report.slug}) is not published; not announced"
            return result

        self.announce(ctx, params, report, now=now, result=result)
        counters = result.counters
        result.summary = (
            f"{week} report {report.slug}: {'written' if counters['reports_created'] else 'already there'}, "
            f"{counters['charts']} charts, announced on {counters['announced']} platforms"
        )
        return result

    # --- the report ---------------------------------------------------------------------------------------

    def write_report(
        self,
        ctx: AgentContext,
        params: Mapping[str, Any],
        *,
        now: dt.datetime,
        week: str,
        monday: dt.datetime,
        result: AgentResult,
    ) -> ExclusiveContent | None:
        insights = selectors.insight_list_for_report(since=monday, until=now, limit=INSIGHT_LIMIT)
        if len(insights) < params["min_insights"]:
            result.incr("too_few_insights")
            return None
        strongest: dict[str, list[Insight]] = {}
        for insight in insights:  # most confident first, so markets come in order of their best signal
            picks = strongest.setdefault(insight.symbol, [])
            if len(picks) < params["insights_per_symbol"] and all(p.type != insight.type for p in picks):
                picks.append(insight)
        symbols = list(strongest)[: params["symbols"]]

        step = _step()
        series = market_data_series(
            symbols=symbols,
            timeframe=settings.MARKET_TIMEFRAME,
            since=monday - (WARMUP_CANDLES + 1) * step,
            until=now - step,  # the candles closed by now
        )
        media_ids: list[int] = []
        for symbol in symbols[: params["charts"]]:
            media_id = self.chart(symbol, strongest[symbol][0], series.get(symbol), week=week, monday=monday)
            if media_id is None:
                result.incr("no_market_data")
                continue
            if media_id not in media_ids:
                media_ids.append(media_id)
        coins = [_coin(s) for s in symbols]
        year, number = week.split("-W")
        spec = services.PeriodicPieceSpec(
            kind=ExclusiveContent.Kind.MARKET_REPORT,
            period_start=monday.date(),
            title=f"Weekly market report: week {int(number)}, {year}",
            slug=f"weekly-market-report-{year}-w{number}",
            summary=(
                f"The week in {_join(coins)}: each market's move, its strongest signals with the numbers "
                "behind them, and chart cards."
            ),
            body=self.body(symbols, strongest, series, monday=monday, now=now),
            media_ids=media_ids,
        )
        report, created = services.exclusive_content_publish_periodic(spec=spec, now=now)
        result.incr("reports_created" if created else "report_written_elsewhere")
        result.incr("charts", len(media_ids) if created else 0)
        ctx.logger.info("weekly report %s: %s", report.slug, "written" if created else "already there")
        return report

    @staticmethod
    def body(
        symbols: Sequence[str],
        strongest: Mapping[str, Sequence[Insight]],
        series: Mapping[str, CandleSeries],
        *,
        monday: dt.datetime,
        now: dt.datetime,
    ) -> str:
        days = f"{monday.day} {monday:%B} to {now.day} {now:%B %Y}"
        blocks = [
            f"The week of {days} in {len(symbols)} markets: how far each one moved, its strongest signals "
            "and the numbers behind them."
        ]
        for symbol in symbols:
            change = week_change(series.get(symbol), week_start=monday)
            if change is None:
                heading = f"{symbol}: no candles to measure the week's move"
            else:
                start, end, pct = change
                heading = (
                    f"{symbol}: {format_number(pct, 'percent')} on the week, "
                    f"from {format_number(start, 'price')} to {format_number(end, 'price')}"
                )
            lines = [heading]
            for insight in strongest[symbol]:
                lines.append(
                    f"• {label_for(insight.type)}, confidence {format_number(insight.confidence * 100, 'plain')}%: "
                    f"{insight.headline}"
                )
                if numbers := evidence_line(insight.evidence or {}):
                    lines.append(f"  {numbers}")
            blocks.append("\n".join(lines))
        if settings.POST_DISCLAIMER:
            blocks.append(str(settings.POST_DISCLAIMER))
        return "\n\n".join(blocks)

    @staticmethod
    def chart(
        symbol: str, insight: Insight, series: CandleSeries | None, *, week: str, monday: dt.datetime
    ) -> int | None:
        """The market's card over the week (with the indicator of its strongest signal), stored members-only;
        None without two candles in the week."""
        if series is None:
            return None
        first = bisect.bisect_left(series.ts, monday - _step())
        window = len(series.close) - first
        if window < 2:
            return None
        chart = render_chart(
            ChartData(
                symbol=symbol,
                insight_type=insight.type,
                headline=f"Week {week}: {insight.headline}",
                timeframe=settings.MARKET_TIMEFRAME,
                closes=series.close.tolist(),
                volumes=series.volume.tolist(),
                last_candle_at=series.ts[-1],
                evidence=dict(insight.evidence or {}),
                window=window,
                note=str(settings.POST_DISCLAIMER),
            )
        )
        coin = "".join(c for c in _coin(symbol).lower() if c.isalnum()) or "chart"
        media = services.media_chart_store(
            png=chart.png,
            width=chart.width,
            height=chart.height,
            alt_text=chart.alt_text,
            name=f"report-{coin}-{week.lower()}-{chart.sha256[:12]}.png",
            exclusive=True,
        )
        return media.pk

    # --- the announcements --------------------------------------------------------------------------------

    @staticmethod
    def teaser(report: ExclusiveContent) -> str:
        """What members see in their channels: the title, the public summary and the link. Never the body:
        the channels are not the library."""
        url = settings.SITE_URL.rstrip("/") + reverse("portal:library_item", kwargs={"slug": report.slug})
        lines = [f"New in the members' library: {report.title}", report.summary, f"Read it here: {url}"]
        if settings.POST_DISCLAIMER:
            lines.append(str(settings.POST_DISCLAIMER))
        return "\n".join(line for line in lines if line)

    def announce(
        self,
        ctx: AgentContext,
        params: Mapping[str, Any],
        report: ExclusiveContent,
        *,
        now: dt.datetime,
        result: AgentResult,
    ) -> None:
        text = self.teaser(report)
        done = selectors.exclusive_content_announced_platforms(content_id=report.pk)
        retry: TransientError | None = None
        for platform in params["platforms"]:
            if platform in done:
                result.incr("already_announced")
                continue
            channel = members_channel(platform)
            if not channel:
                # Never the publisher's default: that is the public channel.
                result.incr(f"no_members_channel.{platform}")
                ctx.logger.warning("no members' channel is set for %s; report not announced there", platform)
                continue
            if platform == "discord" and _discord_webhook_only():
                # A channel webhook posts to its own (public) channel whatever channel the post names.
                result.incr("discord_webhook_only")
                ctx.logger.warning("Discord posts through a webhook only; the members' channel needs the bot")
                continue
            try:
                publisher = get_publisher(platform)
            except ImproperlyConfigured as exc:
                result.incr(f"misconfigured.{platform}")
                ctx.logger.warning("cannot announce on %s: %s", platform, exc)
                continue
            post = OutboundPost(
                platform=platform,
                text=text,
                idempotency_key=f"exclusive-report-{report.pk}-{platform}",
                channel=channel,
            )
            try:
                published = publisher.publish(post)
            except TransientError as exc:
                retry = retry or exc
                result.incr(f"retry_later.{platform}")
                ctx.logger.warning("announcing %s on %s failed for now: %s", report.slug, platform, exc)
                continue
            except PermanentError as exc:
                result.incr(f"failed.{platform}")
                ctx.logger.error("announcing %s on %s failed: %s", report.slug, platform, exc)
                continue
            services.published_content_record_announcement(
                content_id=report.pk, platform=platform, result=published, text=text, now=now
            )
            result.incr("announced")
            result.incr(f"announced.{platform}")
        if retry is not None:
            # The report and the announcements made are recorded: a retry of the run sends only the rest.
            raise retry


def _discord_webhook_only() -> bool:
    return (
        settings.DISCORD_BACKEND == "api"
        and bool(settings.DISCORD_WEBHOOK_URL)
        and not settings.DISCORD_BOT_TOKEN
    )
