"""The community agents: engagement records what people say to us on X, Telegram and Discord and answers their
questions; analytics reads back how our posts do there.

Both work platform by platform: a platform that fails (an outage, its circuit breaker open, a rejected
request) is counted in ``errors.<platform>`` and the others carry on; only when every platform failed does the
run fail, so that the framework tries it again later.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TypeVar

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.community import selectors
from apps.community.services.analytics import published_metrics_record
from apps.community.services.interactions import interactions_ingest
from apps.community.services.replies import ReplyLimits, question_replies_send
from apps.content.selectors import published_content_list
from apps.core.models import Platform
from apps.core.resilience import CircuitOpenError, IntegrationError, PermanentError, TransientError
from apps.integrations.publishers import get_publisher
from apps.integrations.telegram_polling import telegram_updates_taken
from apps.integrations.types import PostMetrics, Publisher

T = TypeVar("T")

PLATFORMS: tuple[str, ...] = (Platform.X, Platform.TELEGRAM, Platform.DISCORD)
# Discord reports no views: its posts' engagement is normalised by the people active there this long.
DISCORD_AUDIENCE_WINDOW = dt.timedelta(days=30)


class _PerPlatform:
    """Calls to each platform on their own: a failure is counted and logged, and the platform sits out."""

    def __init__(self, ctx: AgentContext, result: AgentResult, what: str) -> None:
        self.ctx = ctx
        self.result = result
        self.what = what
        self.answered: list[str] = []
        self.failed: dict[str, IntegrationError] = {}

    def call(self, platform: str, fn: Callable[[], T]) -> T | None:
        try:
            value = fn()
        except IntegrationError as exc:
            self.result.incr(f"errors.{platform}")
            self.failed[platform] = exc
            self.ctx.logger.warning("%s: %s failed (%s): %s", self.what, platform, type(exc).__name__, exc)
            return None
        self.answered.append(platform)
        return value

    def failed_transiently(self, platform: str) -> bool:
        return isinstance(self.failed.get(platform), TransientError)

    def raise_if_all_failed(self) -> None:
        """Every platform that was called failed: open breakers skip the run, a transient failure anywhere
        asks for a retry, and nothing but rejected requests fails it for good."""
        if not self.failed or self.answered:
            return
        errors = list(self.failed.values())
        message = f"{self.what}: every platform failed ({', '.join(sorted(self.failed))})"
        if all(isinstance(e, CircuitOpenError) for e in errors):
            raise CircuitOpenError(message, service=next(iter(self.failed)))
        if any(isinstance(e, TransientError) for e in errors):
            raise TransientError(message)
        raise PermanentError(message)

    def summary(self) -> str:
        return f"; failed: {', '.join(sorted(self.failed))}" if self.failed else ""


@register
class EngagementAgent(BaseAgent):
    name = "engagement"
    phase = 2
    description = (
        "Records replies, mentions, comments and messages from X, Telegram and Discord as interactions of the "
        "community's people (created on first sight, one person across linked accounts), and answers their "
        "questions within a daily limit per person, from our own insights where it can."
    )
    services = ("x", "telegram", "discord")
    service_policy = "any"
    default_schedule = "*/10 * * * *"
    default_parameters = {
        # Answers one person gets at most in any 24 hours, however many questions they ask.
        "max_replies_per_user_per_day": 2,
        # Answers sent by one run at most; the rest wait for the next run while still recent.
        "max_replies_per_run": 20,
        # Questions older than this are left unanswered: a late answer reads like a bot catching up.
        "max_question_age_hours": 24,
        # An insight older than this is not "the latest read" on a coin any more.
        "max_insight_age_hours": 24,
        # How far back a platform is read the first time, before anything from it is stored.
        "initial_lookback_hours": 168,
        # Each read starts this far before the newest stored message, for messages that arrive late (search
        # indexing, clock skew); what was already stored is recognised by its id.
        "cursor_overlap_minutes": 10,
    }

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        result.counters.update(
            dict.fromkeys(
                (
                    "events",
                    "interactions_new",
                    "users_new",
                    "questions",
                    "bots_ignored",
                    "replies_sent",
                    "replies_skipped_limit",
                    "replies_deferred",
                ),
                0,
            )
        )
        now = ctx.now
        calls = _PerPlatform(ctx, result, "engagement")
        cursors = selectors.interaction_inbound_latest(platforms=PLATFORMS)
        publishers: dict[str, Publisher] = {}
        for platform in PLATFORMS:
            latest = cursors.get(platform)
            since = (
                min(latest, now) - dt.timedelta(minutes=params["cursor_overlap_minutes"])
                if latest is not None
                else now - dt.timedelta(hours=params["initial_lookback_hours"])
            )
            publisher = get_publisher(platform)
            if platform == Platform.TELEGRAM and telegram_updates_taken(now=now):
                # The Telegram bot (webhook or polling) takes the updates and records them as interactions;
                # getUpdates would only be refused. Its questions are answered below all the same.
                publishers[platform] = publisher
                continue
            events = calls.call(platform, functools.partial(publisher.fetch_inbound, since=since))
            if not calls.failed_transiently(platform):
                # A platform that refused the read (say the bot process holds Telegram's updates) may still
                # take our answers to what reached us through other paths.
                publishers[platform] = publisher
            if events is None:
                continue
            ingested = interactions_ingest(events=events, now=now)
            result.incr("events", ingested.events)
            result.incr("interactions_new", ingested.interactions_new)
            result.incr("users_new", ingested.users_new)
            result.incr("questions", ingested.questions_new)
            result.incr("bots_ignored", ingested.bots_ignored)
        calls.raise_if_all_failed()

        replies = question_replies_send(
            publishers=publishers,
            now=now,
            limits=ReplyLimits(
                per_user_per_day=params["max_replies_per_user_per_day"],
                per_run=params["max_replies_per_run"],
                max_question_age=dt.timedelta(hours=params["max_question_age_hours"]),
                max_insight_age=dt.timedelta(hours=params["max_insight_age_hours"]),
            ),
        )
        result.incr("replies_sent", replies.sent)
        result.incr("replies_skipped_limit", replies.skipped_limit)
        result.incr("replies_deferred", replies.deferred)
        for platform, failures in replies.failed.items():
            result.incr(f"errors.{platform}", failures)

        counters = result.counters
        result.summary = (
            f"{counters['events']} events, {counters['interactions_new']} new interactions "
            f"({counters['users_new']} new people, {counters['questions']} questions); "
            f"{counters['replies_sent']} replies sent, {counters['replies_skipped_limit']} over the daily "
            f"limit{calls.summary()}"
        )
        return result


@register
class AnalyticsAgent(BaseAgent):
    name = "analytics"
    phase = 2
    description = (
        "Reads the metrics of recent posts back from X, Telegram and Discord, keeps the latest on each post with "
        "its engagement rate, and records their history and the means and totals per platform and format."
    )
    services = ("x", "telegram", "discord")
    service_policy = "any"
    default_schedule = "5 * * * *"
    default_parameters = {
        # Posts published this long ago or later are read; older ones have settled.
        "lookback_days": 7,
    }

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        now = ctx.now
        posts = list(
            published_content_list()
            .filter(published_at__gte=now - dt.timedelta(days=params["lookback_days"]))
            .only(
                "id", "platform", "format", "external_id", "metrics", "engagement_rate", "metrics_updated_at"
            )
        )
        calls = _PerPlatform(ctx, result, "analytics")
        fetched: dict[str, list[PostMetrics]] = {}
        for platform in PLATFORMS:
            ids = [post.external_id for post in posts if post.platform == platform]
            if not ids:
                continue
            publisher = get_publisher(platform)
            readings = calls.call(platform, functools.partial(publisher.fetch_metrics, ids))
            if readings is not None:
                fetched[platform] = readings
        calls.raise_if_all_failed()

        audience = {}
        if Platform.DISCORD in fetched:
            audience[Platform.DISCORD.value] = selectors.community_active_audience(
                platform=Platform.DISCORD, since=now - DISCORD_AUDIENCE_WINDOW
            )
        recorded = published_metrics_record(posts=posts, fetched=fetched, now=now, audience=audience)
        result.incr("posts", len(posts))
        result.incr("posts_updated", recorded.posts_updated)
        result.incr("snapshots", recorded.snapshots)
        result.summary = (
            f"{recorded.posts_updated} of {len(posts)} recent posts read, {recorded.snapshots} snapshots"
            f"{calls.summary()}"
        )
        return result
