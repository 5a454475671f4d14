"""Content repurposing: the posts that did best become plans in other formats, and each week's top insights
become a digest for Telegram and Discord. The creation agent drafts both like any other plan.

A post is repurposed into a given platform and format once: a query leaves out what was done, and the
``content_plans_repurpose_once`` constraint settles a race. Only a post planned from an insight is
repurposed (its evidence is what the new text's numbers are checked against), never a repurposing or a digest
itself, and never onto a platform that already carried the insight, so an insight still gets at most one post
per platform. Plans take the strategist's posting slots, caps and quiet hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.exceptions import ValidationError

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.content import selectors, services
from apps.content.agents.strategist import PLATFORM_FORMATS, Schedule, strategist_schedule
from apps.core.models import Platform


def impressions_of(metrics: Mapping[str, Any]) -> int | None:
    """How many people saw a post: X reports impressions, Telegram views; Discord neither."""
    for key in ("impressions", "views"):
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None


def _platform_format(key: object) -> bool:
    platform, _, format = str(key).partition(":")
    return format in PLATFORM_FORMATS.get(platform, ())


def digest_week(now: dt.datetime) -> tuple[str, dt.datetime]:
    """The ISO week of ``now`` ("2025-W10") and the moment it started (Monday 00:00 UTC)."""
    now = now.astimezone(dt.UTC)
    year, week, _ = now.isocalendar()
    monday = dt.datetime.combine(now.date() - dt.timedelta(days=now.weekday()), dt.time(), dt.UTC)
    return f"{year}-W{week:02d}", monday


@register
class ContentRepurposingAgent(BaseAgent):
    name = "content_repurposing"
    phase = 2
    description = (
        "Turns the best-performing recent posts into other formats (an X thread into a Telegram long post) "
        "and plans a weekly digest of the top insights for Telegram and Discord; never repeats one."
    )
    default_parameters: ClassVar[dict[str, Any]] = {
        # Posts published within this many days are considered.
        "days": 7.0,
        # Impressions (X) or views (Telegram) a post needs; 0 lets posts without the figure in (Discord).
        "min_impressions": 500,
        "min_engagement_rate": 0.0,
        # New repurposing plans per run.
        "max_plans": 3,
        # "platform:format" of a post → the "platform:format"s it is turned into.
        "targets": {
            "x:x_thread": ["telegram:long_post"],
            "x:single_post": ["telegram:long_post"],
            "telegram:telegram_chart_post": ["x:x_thread"],
            "discord:discord_embed": ["x:x_thread"],
        },
        "digest_platforms": ["telegram", "discord"],
        # The digest is planned from this UTC weekday (Monday is 0) and hour on, once per ISO week.
        "digest_weekday": 4,
        "digest_hour": 16,
        "digest_size": 5,
        "digest_min_items": 3,
        # Best posts read per run before the impressions filter.
        "candidates": 100,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        problems = []
        for source, targets in params["targets"].items():
            if not _platform_format(source) or not (
                isinstance(targets, list) and all(_platform_format(t) for t in targets)
            ):
                problems.append(f"targets.{source}: each side is a platform:format such as x:x_thread")
        if unknown := set(params["digest_platforms"]) - set(Platform.values):
            problems.append(f"digest_platforms: unknown {sorted(unknown)}")
        if not (0 <= params["digest_weekday"] <= 6 and 0 <= params["digest_hour"] <= 23):
            problems.append("digest_weekday runs from 0 (Monday) to 6 and digest_hour from 0 to 23")
        if problems:
            raise ValidationError(problems)
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        result.counters.update(dict.fromkeys(("repurposing_plans", "digest_plans"), 0))
        schedule = strategist_schedule(now=ctx.now)
        self.repurpose(ctx.now, params, schedule, result)
        self.digest(ctx.now, params, schedule, result)
        counters = result.counters
        result.summary = (
            f"{counters['repurposing_plans']} repurposing plans, {counters['digest_plans']} digest plans"
        )
        return result

    @staticmethod
    def repurpose(
        now: dt.datetime, params: Mapping[str, Any], schedule: Schedule, result: AgentResult
    ) -> None:
        posts = selectors.published_content_list_best(
            since=now - dt.timedelta(days=params["days"]),
            min_engagement_rate=params["min_engagement_rate"],
            limit=params["candidates"],
        )
        done = selectors.content_plan_repurposed_targets(post_ids=[p.pk for p in posts])
        covered = selectors.insight_planned_platforms(
            insight_ids={p.draft.plan.insight_id for p in posts if p.draft and p.draft.plan.insight_id}
        )
        created = 0
        for post in posts:
            impressions = impressions_of(post.metrics or {})
            if params["min_impressions"] and (impressions is None or impressions < params["min_impressions"]):
                result.incr("below_min_impressions")
                continue
            # The selector only returns posts drafted from an insight's plan.
            assert post.draft is not None
            source = post.draft.plan
            insight_id = source.insight_id
            assert insight_id is not None
            for target in params["targets"].get(f"{post.platform}:{post.format}", []):
                if created >= params["max_plans"]:
                    return
                platform, _, format = target.partition(":")
                if (post.pk, platform, format) in done:
                    result.incr("already_repurposed")
                    continue
                if platform in covered.get(insight_id, set()):
                    result.incr("insight_already_on_platform")
                    continue
                when = schedule.next_free(platform)
                if when is None:
                    result.incr(f"no_slot.{platform}")
                    continue
                plan = services.content_plan_create_repurposing(
                    source=post,
                    insight_id=insight_id,
                    platform=platform,
                    format=format,
                    scheduled_for=when,
                    priority=source.priority,
                    weights={
                        "repurposed_from": post.pk,
                        "source": f"{post.platform}:{post.format}",
                        "engagement_rate": post.engagement_rate,
                        "impressions": impressions,
                    },
                    topic=source.topic,
                )
                if plan is None:
                    result.incr("already_repurposed")
                    continue
                schedule.book(platform, when)
                done.add((post.pk, platform, format))
                covered.setdefault(insight_id, set()).add(platform)
                created += 1
                result.incr("repurposing_plans")

    @staticmethod
    def digest(now: dt.datetime, params: Mapping[str, Any], schedule: Schedule, result: AgentResult) -> None:
        now = now.astimezone(dt.UTC)
        weekday, hour = params["digest_weekday"], params["digest_hour"]
        if now.weekday() < weekday or (now.weekday() == weekday and now.hour < hour):
            return
        week, monday = digest_week(now)
        platforms = [
            p
            for p in params["digest_platforms"]
            if not selectors.content_plan_digest_exists(platform=p, week=week)
        ]
        if not platforms:
            return
        insights = selectors.insight_list_for_digest(since=monday, until=now, limit=params["digest_size"])
        if len(insights) < params["digest_min_items"]:
            result.incr("digest_too_few_insights")
            return
        coins = list(dict.fromkeys(i.symbol.split("/")[0] for i in insights))
        for platform in platforms:
            when = schedule.next_free(platform)
            if when is None:
                result.incr(f"no_slot.{platform}")
                continue
            services.content_plan_create_digest(
                platform=platform,
                week=week,
                insight_ids=[i.pk for i in insights],
                scheduled_for=when,
                priority=max(i.confidence for i in insights),
                topic=f"Weekly digest {week}: {', '.join(coins)}",
            )
            schedule.book(platform, when)
            result.incr("digest_plans")
