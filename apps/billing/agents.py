"""The billing app's agents."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from django.core.exceptions import ValidationError

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.billing.kpis import MAX_PERIOD_DAYS, kpi_report
from apps.billing.services.conversion import (
    OfferTerms,
    ScoreFormula,
    conversion_attempts_mark_ignored,
    conversion_offers_resend,
    conversion_offers_send,
    conversion_targets_choose,
    offer_plan_get,
    publishers_for,
)
from apps.billing.services.kpi_snapshots import kpi_snapshots_record, snapshot_hour
from apps.billing.services.onboarding import STEPS, onboarding_run
from apps.community.models import InteractionKind
from apps.community.selectors import (
    ACTIVE_DAY_POINTS,
    DEFAULT_INTERACTION_WEIGHTS,
    OLDER_FACTOR,
    RECENT_DAYS,
)
from apps.community.services.scoring import community_user_scores_store
from apps.core.resilience import breaker


@register
class KpiSnapshotAgent(BaseAgent):
    name = "kpi_snapshot"
    # The performance-analytics piece of the self-learning phase: it runs after the money agents, so a
    # pipeline's snapshot includes what they just did.
    phase = 4
    description = (
        "Records the KPIs (MRR per currency, active members, trials, churn, the offer funnel) as hourly "
        "performance snapshots; a second run in the same hour replaces that hour's figures."
    )
    default_schedule = "2 * * * *"
    default_parameters: ClassVar[dict[str, Any]] = {
        # Churn and the funnel look back this many days.
        "period_days": 30,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        if not 1 <= params["period_days"] <= MAX_PERIOD_DAYS:
            raise ValidationError(f"period_days must be from 1 to {MAX_PERIOD_DAYS}")
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        report = kpi_report(period_days=params["period_days"], now=ctx.now)
        written = kpi_snapshots_record(report=report)
        result = AgentResult()
        result.incr("snapshots", written)
        mrr = ", ".join(f"{amount} {currency}" for currency, amount in report.mrr_minor.items()) or "none"
        result.summary = (
            f"{written} snapshots for {snapshot_hour(report.as_of):%Y-%m-%d %H}:00 UTC: MRR (minor units) {mrr}, "
            f"{report.active_members} active members, {report.trials} trials"
        )
        return result


@register
class ConversionAgent(BaseAgent):
    name = "conversion"
    phase = 3
    description = (
        "Scores every community member's engagement (recency, frequency and kind of interaction, in SQL), "
        "stores it, and offers the best-scoring people who are not members yet a trial or promotion code by "
        "direct message where they engage most, with a tracked link and the copy of their A/B variant; "
        "follows each offer to clicked, converted, ignored or failed."
    )
    services = ("x", "telegram", "discord")
    service_policy = "any"
    default_schedule = "20 */3 * * *"
    default_parameters: ClassVar[dict[str, Any]] = {
        # The score: points per interaction by kind, in full over the last ``recent_days`` and at
        # ``older_factor`` over the rest of the window, plus ``active_day_points`` per day with any.
        "weights": dict(DEFAULT_INTERACTION_WEIGHTS),
        "window_days": 30,
        "recent_days": float(RECENT_DAYS),
        "older_factor": OLDER_FACTOR,
        "active_day_points": ACTIVE_DAY_POINTS,
        # Below this score nobody is approached, however few better candidates there are.
        "min_score": 10.0,
        # Nobody is approached twice within this many days (a failed offer counts too).
        "cooldown_days": 30,
        # Offers not clicked this many days after they were sent count as ignored.
        "ignore_after_days": 14,
        "max_offers_per_run": 25,
        # A Stripe promotion code, offered to people who cannot have a trial (empty: trials only).
        "promotion_code": "WELCOME20",
        # The plan offered; empty: the cheapest tier for sale.
        "plan_slug": "",
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        weights = params["weights"]
        unknown = sorted(set(weights) - set(InteractionKind.values))
        if unknown:
            raise ValidationError(f"conversion.weights: unknown interaction kinds: {', '.join(unknown)}")
        if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights.values()):
            raise ValidationError("conversion.weights: every weight must be a number of 0 or more")
        if not 0 < params["recent_days"] <= params["window_days"]:
            raise ValidationError("conversion: recent_days must be more than 0 and at most window_days")
        for key in ("older_factor", "active_day_points"):
            if params[key] < 0:
                raise ValidationError(f"conversion.{key} must be 0 or more")
        if params["min_score"] <= 0:
            raise ValidationError("conversion.min_score must be more than 0")
        for key in ("cooldown_days", "ignore_after_days", "max_offers_per_run"):
            if params[key] < 0:
                raise ValidationError(f"conversion.{key} must be 0 or more")
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        now = ctx.now
        result = AgentResult()
        counters = ("scored", "candidates", "offers_sent", "offers_failed", "offers_undelivered")
        result.counters.update(dict.fromkeys((*counters, "marked_ignored"), 0))
        result.incr(
            "marked_ignored",
            conversion_attempts_mark_ignored(
                sent_before=now - dt.timedelta(days=params["ignore_after_days"])
            ),
        )
        formula = ScoreFormula(
            weights=params["weights"],
            window_days=params["window_days"],
            recent_days=params["recent_days"],
            older_factor=params["older_factor"],
            active_day_points=params["active_day_points"],
        )
        since, until = formula.window(now)
        stored = community_user_scores_store(
            since=since,
            now=until,
            weights=formula.weights,
            recent_days=formula.recent_days,
            older_factor=formula.older_factor,
            active_day_points=formula.active_day_points,
        )
        result.incr("scored", stored.scored)

        # Platforms whose breaker is open sit this run out; the rest carry the offers.
        platforms = [platform for platform in self.services if not breaker(platform).is_open()]
        publishers = publishers_for(platforms)
        cap = params["max_offers_per_run"]
        resent = conversion_offers_resend(now=now, publishers=publishers, limit=cap)
        outcomes = [resent]
        plan = offer_plan_get(plan_slug=params["plan_slug"])
        if plan is None:
            ctx.logger.warning("conversion: no plan is for sale, so there is nothing to offer")
        else:
            count, targets = conversion_targets_choose(
                now=now,
                formula=formula,
                min_score=params["min_score"],
                cooldown_days=params["cooldown_days"],
                platforms=list(publishers),
                limit=cap - len(resent.attempt_ids),
            )
            result.incr("candidates", count)
            terms = OfferTerms(plan=plan, promotion_code=params["promotion_code"])
            outcomes.append(conversion_offers_send(targets=targets, terms=terms, publishers=publishers))
        for outcome in outcomes:
            result.incr("offers_sent", outcome.sent)
            result.incr("offers_failed", outcome.failed)
            result.incr("offers_undelivered", outcome.undelivered)
        result.summary = (
            f"{result.counters['scored']} people scored ({stored.changed} changed, {stored.zeroed} back to 0); "
            f"{result.counters['candidates']} candidates; {result.counters['offers_sent']} offers sent, "
            f"{result.counters['offers_failed']} failed, {result.counters['offers_undelivered']} waiting; "
            f"{result.counters['marked_ignored']} marked ignored"
        )
        return result


@register
class OnboardingAgent(BaseAgent):
    name = "onboarding"
    phase = 3
    description = (
        "Walks new members through their first days: a welcome, linking Discord and Telegram, their Telegram "
        "invite and a first members-only read, each once, by email and on a linked account, skipping what "
        "they have already done."
    )
    services = ("telegram", "discord", "x")
    service_policy = "any"
    default_schedule = "40 * * * *"
    default_parameters: ClassVar[dict[str, Any]] = {
        # Members whose subscription started this many days ago or less are onboarded.
        "window_days": 7,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        latest = max(step.day for step in STEPS)
        if params["window_days"] <= latest:
            raise ValidationError(f"onboarding.window_days must be more than {latest}, the last step's day")
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        outcome = onboarding_run(now=ctx.now, window_days=params["window_days"])
        result = AgentResult()
        result.incr("members", outcome.members)
        result.counters.update(outcome.counters)
        sent = sum(n for key, n in outcome.counters.items() if key.endswith(".sent"))
        skipped = sum(n for key, n in outcome.counters.items() if key.endswith(".skipped"))
        failed = sum(n for key, n in outcome.counters.items() if key.endswith(".failed"))
        result.summary = (
            f"{outcome.members} new members: {sent} messages sent, {skipped} steps skipped, {failed} failed"
        )
        return result
