"""Strategy tuning: what the measured engagement of the posts and the outcome of the offers say the strategy
should be, proposed as strategy changes for the feedback loop to apply.

Posts. An arm is a kind of post on a platform: format, time of day and tone preset (``strategist.Arm``). Every
public post of the window whose engagement was measured counts for the arm it actually was: its format, the
time of day it went out, and its tone (the A/B variant's payload when one wrote it, matched to a preset; else
the preset the plan's arm named; else the creation agent's default). The bandit (``apps.learning.bandit``)
turns the decayed evidence into Thompson weights, every arm at ``min_share`` or more, with A/B winners of the
window as priors: an arm whose tone or format won a decided test on engagement starts ahead by the measured
effect. Proposed: ``content_strategist.arm_weights`` (per platform with ``min_posts`` posts or more) and
``content_strategist.platform_weights`` (each platform's posterior mean engagement relative to the best, when
two platforms or more have the posts). The weights are also written as the ``bandit.weight`` series.

Offers. The conversion agent approaches people whose engagement score reaches ``min_score``. The offers of the
window are split into score bands (``score_bands`` are their floors) and each band's conversion rate gets a
Beta posterior, its prior the pooled rate worth ``prior_strength`` offers. Proposed: the lowest floor whose
band converts at ``target_conversion_rate`` or better, once there are ``min_offers`` offers.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.core.exceptions import ValidationError

from apps.agents import selectors as agent_selectors
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.billing.selectors import Band, conversion_attempt_bands
from apps.content import limits
from apps.content import selectors as content_selectors
from apps.content.agents.creation import ContentCreationAgent
from apps.content.agents.strategist import (
    ARM_SEPARATOR,
    PLATFORM_FORMATS,
    Arm,
    ContentStrategistAgent,
    buckets_with_slots,
)
from apps.core.timeofday import bucket_of
from apps.experiments.models import ABTest
from apps.experiments.selectors import ab_test_list_decided
from apps.experiments.stats import beta_posterior
from apps.learning import bandit, services
from apps.learning.models import StrategyChange
from apps.learning.performance import Figure

STRATEGIST = ContentStrategistAgent.name
CONVERSION = "conversion"
ENGAGEMENT = "engagement_rate"
WEIGHT_SERIES = "bandit.weight"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in_force(agent: type[BaseAgent]) -> dict[str, Any]:
    config = agent_selectors.agent_config_get(agent_name=agent.name)
    return agent.validate_parameters(config.parameters if config else {})


# --- posts ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tones:
    """The creation agent's presets, one name per distinct tone: two presets that say the same (a test's
    winner saved under its slug, equal to "question") are one arm, under the first name."""

    presets: dict[str, dict[str, Any]]
    default: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Tones:
        presets: dict[str, dict[str, Any]] = {}
        for name, tone in params["tones"].items():
            if tone not in presets.values():
                presets[name] = dict(tone)
        return cls(presets=presets, default=cls._canonical(presets, params["tones"][params["tone"]]) or "")

    @staticmethod
    def _canonical(presets: Mapping[str, dict[str, Any]], tone: Any) -> str | None:
        return next((name for name, preset in presets.items() if preset == tone), None)

    def named(self, tone: Any) -> str | None:
        """The preset name of a tone (a payload), None when no preset says it."""
        return self._canonical(self.presets, tone)


def arm_space(strategist: Mapping[str, Any], tones: Tones) -> dict[str, list[Arm]]:
    """Per platform the strategist plans for: every combination of its formats, the times of
    day it has slots in (outside the quiet hours) and the tone presets."""
    quiet = limits.quiet_hours(strategist["quiet_hours"])
    space = {}
    for platform in strategist["platforms"]:
        buckets = buckets_with_slots(strategist["slots"].get(platform, []), quiet)
        space[platform] = [
            Arm(format=format, bucket=bucket, tone=tone)
            for format in sorted(PLATFORM_FORMATS[platform])
            for bucket in buckets
            for tone in tones.presets
        ]
    return {platform: arms for platform, arms in space.items() if arms}


def observed_arm(post: content_selectors.PostEngagement, tones: Tones) -> Arm | None:
    """The arm a post was, as it went out: its format and time of day as published, the tone preset its plan
    drew (the default preset without one). A running A/B variant's keys were written over that preset; the
    variants meet every arm alike, so they add noise to each arm, not a bias between them. A preset removed
    since counts as the default, which the writer used instead."""
    planned = post.arm.get("tone") if post.arm else None
    preset = tones.presets.get(planned) if isinstance(planned, str) else None
    tone = tones.named(preset) if preset is not None else tones.default
    if tone is None:
        return None
    return Arm(format=post.format, bucket=bucket_of(post.published_at.astimezone(dt.UTC).hour), tone=tone)


def prior_shifts(tests: Sequence[ABTest], tones: Tones) -> dict[tuple[str | None, str, str], float]:
    """What decided A/B tests on engagement say in advance: (platform or None for every platform, "tone" or
    "format", value) → relative effect of the winner. Several winners on one arm compound."""
    shifts: dict[tuple[str | None, str, str], float] = {}
    for test in tests:
        winner = test.winner
        if (
            test.decision != ABTest.Decision.WINNER
            or winner is None
            or winner.is_control
            or test.subject != ABTest.Subject.POST
            or test.metric != ENGAGEMENT
            or not isinstance(winner.payload, dict)
        ):
            continue
        metrics = test.result.get("metrics", {}) if isinstance(test.result, dict) else {}
        effect = metrics.get(ENGAGEMENT, {}).get("comparisons", {}).get(winner.key, {}).get("effect")
        if not _number(effect) or effect <= -1:
            continue
        payload = winner.payload
        keys: list[tuple[str | None, str, str]] = []
        if isinstance(payload.get("format"), str):
            platforms = payload.get("platform")
            named = [platforms] if isinstance(platforms, str) else list(platforms or [None])
            keys = [(p, "format", payload["format"]) for p in named]
        elif (tone := tones.named(payload)) is not None:
            keys = [(None, "tone", tone)]
        for key in keys:
            shifts[key] = (1 + shifts.get(key, 0.0)) * (1 + effect) - 1
    return shifts


def _arm_shift(platform: str, arm: Arm, shifts: Mapping[tuple[str | None, str, str], float]) -> float:
    factor = 1.0
    for key in ((None, "tone", arm.tone), (None, "format", arm.format), (platform, "format", arm.format)):
        factor *= 1 + shifts.get(key, 0.0)
    return factor - 1


@dataclass
class ArmResult:
    posts: int
    effective_n: float
    mean: float
    weight: float
    prior_shift: float


@dataclass
class PostLearning:
    posts: int = 0
    outside_arms: int = 0
    # Per platform with enough posts, per arm key.
    arms: dict[str, dict[str, ArmResult]] = field(default_factory=dict)
    # Per platform with posts: the posterior mean engagement, and how many posts.
    platform_means: dict[str, float] = field(default_factory=dict)
    platform_posts: dict[str, int] = field(default_factory=dict)


def _arm_parts(arm: Arm) -> tuple[str, str, str]:
    return (arm.format, arm.bucket, arm.tone)


def learn_posts(
    posts: Sequence[content_selectors.PostEngagement],
    *,
    space: Mapping[str, Sequence[Arm]],
    tones: Tones,
    shifts: Mapping[tuple[str | None, str, str], float],
    params: Mapping[str, Any],
    now: dt.datetime,
) -> PostLearning:
    learning = PostLearning(posts=len(posts))
    half_life = params["half_life_days"]
    sums: dict[str, dict[Arm, bandit.Sums]] = {
        p: {arm: bandit.Sums() for arm in arms} for p, arms in space.items()
    }
    counts: dict[tuple[str, Arm], int] = defaultdict(int)
    for post in posts:
        arm = observed_arm(post, tones)
        if post.platform not in sums or arm not in sums[post.platform]:
            learning.outside_arms += 1
            continue
        assert arm is not None  # in the arm space
        age = (now - post.published_at).total_seconds() / 86400
        weight = bandit.decay_weight(age, half_life_days=half_life)
        sums[post.platform][arm] = sums[post.platform][arm].add(post.engagement_rate, weight)
        counts[(post.platform, arm)] += 1
    platform_sums = {p: sum(per_arm.values(), bandit.Sums()) for p, per_arm in sums.items()}
    platform_posteriors = bandit.arm_posteriors(
        {p: s for p, s in platform_sums.items() if s.n > 0}, prior_strength=params["prior_strength"]
    )
    for platform, posterior in platform_posteriors.items():
        learning.platform_means[platform] = max(0.0, posterior.mean)
        learning.platform_posts[platform] = sum(counts[(platform, arm)] for arm in sums[platform])
    for platform, per_arm in sums.items():
        if learning.platform_posts.get(platform, 0) < params["min_posts"]:
            continue
        arm_shifts = {arm: _arm_shift(platform, arm, shifts) for arm in per_arm}
        posteriors = bandit.arm_posteriors(
            per_arm,
            prior_strength=params["prior_strength"],
            prior_shift=arm_shifts,
            parts=_arm_parts,
            arm_prior_strength=params["arm_prior_strength"],
        )
        weights = bandit.factored_arm_weights(
            per_arm,
            parts=_arm_parts,
            prior_strength=params["prior_strength"],
            arm_prior_strength=params["arm_prior_strength"],
            prior_shift=arm_shifts,
            min_share=params["min_share"],
            draws=params["draws"],
            seed=zlib.crc32(platform.encode()),
        )
        learning.arms[platform] = {
            arm.key: ArmResult(
                posts=counts[(platform, arm)],
                effective_n=per_arm[arm].n,
                mean=posteriors[arm].mean,
                weight=weights[arm],
                prior_shift=arm_shifts[arm],
            )
            for arm in per_arm
        }
    return learning


# --- offers ---------------------------------------------------------------------------------------------------


def min_score_for(
    bands: Sequence[Band], *, target: float, prior_strength: float
) -> tuple[float | None, dict[str, dict[str, float]]]:
    """The lowest band floor whose posterior mean conversion rate reaches ``target`` (None: no band does),
    and every band's figures. The prior is the pooled rate of all bands, worth ``prior_strength`` offers, so
    that a band of a few offers and no conversion reads as ordinary rather than hopeless or perfect."""
    offers = sum(b.offers for b in bands)
    conversions = sum(b.conversions for b in bands)
    pooled = (conversions + 0.5) / (offers + 1)
    figures: dict[str, dict[str, float]] = {}
    chosen = None
    for b in sorted(bands, key=lambda b: b.floor):
        posterior = beta_posterior(
            successes=b.conversions,
            failures=b.offers - b.conversions,
            prior_alpha=prior_strength * pooled,
            prior_beta=prior_strength * (1 - pooled),
        )
        figures[f"{b.floor:g}"] = {"offers": b.offers, "conversions": b.conversions, "mean": posterior.mean}
        if chosen is None and posterior.mean >= target:
            chosen = b.floor
    return chosen, figures


# --- the agent --------------------------------------------------------------------------------------------------


@register
class StrategyTuningAgent(BaseAgent):
    name = "strategy_tuning"
    phase = 4
    description = (
        "Thompson sampling over platform × format × time of day × tone from the posts' measured engagement "
        "(older evidence decayed, A/B winners as priors, every arm kept at 1% or more): proposes the "
        "strategist's arm and platform weights and the conversion agent's minimum score, and records the "
        "bandit's weights."
    )
    # A test decided in the same cycle is a prior at once.
    depends_on = ("ab_testing",)
    default_parameters: ClassVar[dict[str, Any]] = {
        # Posts and offers this recent count.
        "window_days": 28,
        # Days after which a post's evidence counts half.
        "half_life_days": 7.0,
        # The least share of plans any arm keeps.
        "min_share": 0.01,
        # How many posts' worth the prior (the pooled mean) is.
        "prior_strength": 2.0,
        # Posts' worth of evidence before an arm's own record outweighs what its format, time of day and
        # tone predict (learnt from every post).
        "arm_prior_strength": bandit.ARM_PRIOR_STRENGTH,
        # Monte Carlo draws for the Thompson weights.
        "draws": 10_000,
        # Posts a platform needs in the window before its arm weights are proposed.
        "min_posts": 10,
        # The conversion rate an offer should reach to be worth sending.
        "target_conversion_rate": 0.02,
        # Offers in the window before the minimum score is proposed.
        "min_offers": 50,
        # Floors of the engagement score bands the conversion rate is read per.
        "score_bands": [5.0, 10.0, 15.0, 20.0, 30.0, 50.0],
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        problems = []
        for key in ("window_days", "draws", "min_posts", "min_offers"):
            if params[key] < 1:
                problems.append(f"{key} must be 1 or more")
        for key in ("half_life_days", "prior_strength", "arm_prior_strength"):
            if params[key] <= 0:
                problems.append(f"{key} must be more than 0")
        if not 0 <= params["min_share"] < 0.5:
            problems.append("min_share must be 0 or more and below 0.5")
        if not 0 < params["target_conversion_rate"] < 1:
            problems.append("target_conversion_rate must be between 0 and 1")
        bands = params["score_bands"]
        if (
            not bands
            or not all(_number(b) and b > 0 for b in bands)
            or any(a >= b for a, b in itertools.pairwise(bands))
        ):
            problems.append("score_bands must be increasing numbers above 0")
        if problems:
            raise ValidationError(problems)
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        now = ctx.now
        since = now - dt.timedelta(days=params["window_days"])
        result = AgentResult()
        result.counters.update(dict.fromkeys(("posts", "arms", "proposed", "snapshots", "offers"), 0))
        strategist = _in_force(ContentStrategistAgent)
        tones = Tones.from_params(_in_force(ContentCreationAgent))
        shifts = prior_shifts(ab_test_list_decided(since=since), tones)
        posts = content_selectors.published_engagement_list(since=since)
        learning = learn_posts(
            posts, space=arm_space(strategist, tones), tones=tones, shifts=shifts, params=params, now=now
        )
        result.incr("posts", learning.posts)
        result.incr("posts.outside_arms", learning.outside_arms)
        result.incr("priors", len(shifts))
        parts = []
        if learning.arms:
            self.propose_arm_weights(learning, strategist, shifts, params, result, now)
            parts.append(self.describe(learning))
        else:
            parts.append(
                f"no arm weights: no platform has {params['min_posts']} measured posts in "
                f"{params['window_days']} days ({learning.posts} posts in all)"
            )
        if len(learning.platform_means) >= 2 and max(learning.platform_means.values()) > 0:
            self.propose_platform_weights(learning, strategist, params)
            result.incr("proposed")
        parts.append(self.tune_offers(params, since, result))
        result.summary = "; ".join(parts)
        return result

    @staticmethod
    def describe(learning: PostLearning) -> str:
        best = []
        for platform, arms in learning.arms.items():
            key, top = max(arms.items(), key=lambda item: item[1].weight)
            best.append(f"{platform} {key} {top.weight:.0%}")
        return f"arm weights from {learning.posts} posts: best {', '.join(best)}"

    def propose_arm_weights(
        self,
        learning: PostLearning,
        strategist: Mapping[str, Any],
        shifts: Mapping[tuple[str | None, str, str], float],
        params: Mapping[str, Any],
        result: AgentResult,
        now: dt.datetime,
    ) -> None:
        learnt = {
            platform: {key: round(arm.weight, 4) for key, arm in arms.items()}
            for platform, arms in learning.arms.items()
        }
        # Platforms without enough posts keep what they have.
        target = {**strategist["arm_weights"], **learnt}
        evidence = {
            "window_days": params["window_days"],
            "half_life_days": params["half_life_days"],
            "posts": learning.posts,
            "arms": {
                f"{platform}{ARM_SEPARATOR}{key}": {
                    "n": arm.posts,
                    "effective_n": round(arm.effective_n, 4),
                    "mean": round(arm.mean, 6),
                    "weight": round(arm.weight, 4),
                    **({"prior_shift": round(arm.prior_shift, 4)} if arm.prior_shift else {}),
                }
                for platform, arms in learning.arms.items()
                for key, arm in arms.items()
            },
            "priors": [
                {"platform": platform, "dimension": dimension, "value": value, "effect": effect}
                for (platform, dimension, value), effect in shifts.items()
            ],
        }
        services.strategy_change_propose(
            agent_name=STRATEGIST,
            parameter="arm_weights",
            target=target,
            source=StrategyChange.Source.STRATEGY_TUNING,
            reason=(
                f"Thompson sampling over {learning.posts} measured posts of the last {params['window_days']} "
                f"days (half-life {params['half_life_days']:g} days): {self.describe(learning)}"
            ),
            evidence=evidence,
        )
        result.incr("proposed")
        figures = [
            Figure(
                metric=WEIGHT_SERIES,
                scope=f"arm:{platform}{ARM_SEPARATOR}{key}",
                value=arm.weight,
                sample_size=arm.posts,
                details={"mean": arm.mean, "effective_n": arm.effective_n},
            )
            for platform, arms in learning.arms.items()
            for key, arm in arms.items()
        ]
        result.incr("arms", len(figures))
        result.incr(
            "snapshots",
            services.performance_snapshots_record(
                figures=figures, captured_at=now.replace(second=0, microsecond=0)
            ),
        )

    @staticmethod
    def propose_platform_weights(
        learning: PostLearning, strategist: Mapping[str, Any], params: Mapping[str, Any]
    ) -> None:
        best = max(learning.platform_means.values())
        learnt = {p: round(mean / best, 4) for p, mean in learning.platform_means.items()}
        services.strategy_change_propose(
            agent_name=STRATEGIST,
            parameter="platform_weights",
            target={**strategist["platform_weights"], **learnt},
            source=StrategyChange.Source.STRATEGY_TUNING,
            reason=(
                f"Posterior mean engagement per platform over the last {params['window_days']} days, relative "
                f"to the best: " + ", ".join(f"{p} {w:.2f}" for p, w in sorted(learnt.items()))
            ),
            evidence={
                "window_days": params["window_days"],
                "platforms": {
                    p: {"n": learning.platform_posts[p], "mean": round(mean, 6), "weight": learnt[p]}
                    for p, mean in learning.platform_means.items()
                },
            },
        )

    @staticmethod
    def tune_offers(params: Mapping[str, Any], since: dt.datetime, result: AgentResult) -> str:
        """Propose the conversion agent's minimum score; returns the summary's words about it."""
        offers, bands = conversion_attempt_bands(since=since, floors=params["score_bands"])
        result.incr("offers", offers)
        if offers < params["min_offers"]:
            return f"min_score unchanged: {offers} offers, {params['min_offers']} needed"
        target = params["target_conversion_rate"]
        floor, figures = min_score_for(bands, target=target, prior_strength=params["prior_strength"])
        if floor is None:
            return f"min_score unchanged: no score band of {offers} offers converts at {target:.1%}"
        services.strategy_change_propose(
            agent_name=CONVERSION,
            parameter="min_score",
            target=float(floor),
            source=StrategyChange.Source.STRATEGY_TUNING,
            reason=(
                f"Of {offers} offers in {params['window_days']} days, the lowest score band converting at "
                f"{target:.1%} or better starts at {floor:g} (posterior mean "
                f"{figures[f'{floor:g}']['mean']:.2%})"
            ),
            evidence={
                "window_days": params["window_days"],
                "offers": offers,
                "target": target,
                "bands": figures,
            },
        )
        result.incr("proposed")
        return f"min_score {floor:g} proposed from {offers} offers"
