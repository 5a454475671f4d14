"""Thompson sampling over arms whose rewards are measured means (a post's engagement rate): a pure module, no
database, no I/O.

* Evidence is kept as weighted sums (count, sum, sum of squares). An observation ``age`` days old counts with
  weight ``0.5 ** (age / half_life)``, so a week-old post weighs half a new one at a 7-day half-life and the
  strategy follows an audience that changes.
* Each arm's mean has a Normal posterior (``stats.gaussian_posterior``). Its prior is worth ``prior_strength``
  observations and centred on the pooled mean of every arm, or, when the arms are made of parts (a format,
  a time of day, a tone), on what the parts predict: the pooled mean times a factor per part, fitted to
  every arm's evidence (``factor_prior_means``). Every post then teaches about every arm that shares a part with it,
  so a fortnight's posts can rank dozens of arms that each saw only a few. An arm can have its prior mean
  shifted, ``prior * (1 + shift)``: an A/B test's winning tone
  or format starts ahead by the effect the test measured. The noise variance is the within-arm variance
  pooled over the arms (an arm with two posts has no usable variance of its own), and the prior's variance
  that noise over ``prior_strength``.
* An arm's weight is its probability of being the best (``stats.thompson_weights``), mixed with the uniform
  so that every arm keeps at least ``min_share`` of the exposure and can still prove itself.

``ThompsonPolicy`` plays the same bandit round by round, for simulations and replays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from apps.experiments.stats import (
    GaussianPosterior,
    Sample,
    gaussian_posterior,
    thompson_choose,
    thompson_weights,
    weights_from_draws,
)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Sums:
    """Weighted summary statistics of one arm's (or a pool's) observations; ``n`` is the total weight and
    ``weight_squares`` the sum of the squared weights (how many observations the weights amount to)."""

    n: float = 0.0
    total: float = 0.0
    total_squares: float = 0.0
    weight_squares: float = 0.0

    def add(self, value: float, weight: float = 1.0) -> Sums:
        return Sums(
            self.n + weight,
            self.total + weight * value,
            self.total_squares + weight * value * value,
            self.weight_squares + weight * weight,
        )

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            self.n + other.n,
            self.total + other.total,
            self.total_squares + other.total_squares,
            self.weight_squares + other.weight_squares,
        )

    def scaled(self, factor: float) -> Sums:
        return Sums(
            self.n * factor, self.total * factor, self.total_squares * factor, self.weight_squares * factor**2
        )

    @property
    def freedom(self) -> float:
        """Degrees of freedom of the weighted variance: ``n - sum(w^2) / n`` (``count - 1`` for unit
        weights), so decayed evidence neither adds nor removes freedom it does not have."""
        return self.n - self.weight_squares / self.n if self.n > 0 else 0.0

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n > 0 else 0.0

    @property
    def variance(self) -> float:
        """The unbiased sample variance with the weights taken as counts (``Sample.mean``'s formula); 0 when
        there is less than one observation's worth beyond the first."""
        if self.n <= 1:
            return 0.0
        return max(0.0, (self.total_squares - self.total * self.total / self.n) / (self.n - 1))


def decay_weight(age_days: float, *, half_life_days: float) -> float:
    """How much an observation ``age_days`` old counts; a future one (clock skew) counts in full."""
    if half_life_days <= 0:
        raise ValueError("the half-life must be more than 0")
    return 0.5 ** (max(0.0, age_days) / half_life_days)


def decayed_sums(observations: Iterable[tuple[float, float]], *, half_life_days: float) -> Sums:
    """The sums of ``(value, age_days)`` observations, each weighted by its age."""
    sums = Sums()
    for value, age in observations:
        sums = sums.add(value, decay_weight(age, half_life_days=half_life_days))
    return sums


def _fit_factors(
    sums: Mapping[K, Sums],
    keyed: Mapping[K, list[tuple[int, Hashable]]],
    *,
    pooled_mean: float,
    prior_strength: float,
    sweeps: int,
) -> tuple[dict[tuple[int, Hashable], float], dict[tuple[int, Hashable], float]]:
    """The multiplicative model's factor per part, by iterative proportional fitting (each part's factor in
    turn set so that its arms' predicted totals match their observed totals, the others held), which shares
    an effect between parts that always came together instead of counting it once for each; every factor
    shrunk toward 1 by ``prior_strength`` observations. Also each part's evidence (the weight of its arms)."""
    factor: dict[tuple[int, Hashable], float] = {key: 1.0 for keys in keyed.values() for key in keys}
    evidence: dict[tuple[int, Hashable], float] = dict.fromkeys(factor, 0.0)
    for arm, arm_sums in sums.items():
        for key in keyed[arm]:
            evidence[key] += arm_sums.n
    dimensions = sorted({index for index, _ in factor})
    shrink = prior_strength * pooled_mean
    for _ in range(sweeps):
        for dimension in dimensions:
            observed: dict[tuple[int, Hashable], float] = {}
            expected: dict[tuple[int, Hashable], float] = {}
            for arm, arm_sums in sums.items():
                if arm_sums.n <= 0:
                    continue
                own = next(key for key in keyed[arm] if key[0] == dimension)
                others = math.prod(factor[key] for key in keyed[arm] if key[0] != dimension)
                observed[own] = observed.get(own, 0.0) + arm_sums.total
                expected[own] = expected.get(own, 0.0) + arm_sums.n * pooled_mean * others
            for key in observed:
                factor[key] = (observed[key] + shrink) / (expected[key] + shrink)
    return factor, evidence


def _keyed(
    sums: Mapping[K, Sums], parts: Callable[[K], Sequence[Hashable]]
) -> dict[K, list[tuple[int, Hashable]]]:
    return {arm: list(enumerate(parts(arm))) for arm in sums}


def factor_prior_means(
    sums: Mapping[K, Sums],
    *,
    parts: Callable[[K], Sequence[Hashable]],
    prior_strength: float,
    sweeps: int = 20,
) -> dict[K, float]:
    """Each arm's mean as a multiplicative model of its parts predicts it: the pooled mean times one fitted
    factor per part (``_fit_factors``). Empty when there is no evidence or the pooled mean is not positive."""
    pooled = sum(sums.values(), Sums())
    if pooled.n <= 0 or pooled.mean <= 0:
        return {}
    keyed = _keyed(sums, parts)
    factor, _ = _fit_factors(
        sums, keyed, pooled_mean=pooled.mean, prior_strength=prior_strength, sweeps=sweeps
    )
    return {arm: pooled.mean * math.prod(factor[key] for key in keyed[arm]) for arm in sums}


# How many posts' worth of evidence an arm needs before its own record outweighs what its parts predict. The
# parts are learnt from every post, so the prediction is worth much more than the pooled mean is.
ARM_PRIOR_STRENGTH = 30.0


def factored_draws(
    sums: Mapping[K, Sums],
    *,
    parts: Callable[[K], Sequence[Hashable]],
    prior_strength: float,
    rng: np.random.Generator,
    size: int,
    prior_shift: Mapping[K, float] | None = None,
    arm_prior_strength: float = ARM_PRIOR_STRENGTH,
    sweeps: int = 20,
) -> np.ndarray | None:
    """Joint posterior draws of every arm's mean (``size`` rows, one column per arm in the order of
    ``sums``) under the factored model: each part's factor is drawn around its fit with the uncertainty its
    evidence leaves (relative variance ``noise / mean^2 / (evidence + prior_strength)``), an arm's centre is
    the product of its parts' draws (times its prior shift), and its own evidence pulls its draw toward what
    it has shown, as ``arm_prior_strength`` posts at the centre would. So ten factors are learnt from every post instead of 36 arms each from its own, and an arm
    never played is judged by the parts it shares. None when there is no evidence."""
    pooled = sum(sums.values(), Sums())
    if pooled.n <= 0 or pooled.mean <= 0:
        return None
    keyed = _keyed(sums, parts)
    factor, evidence = _fit_factors(
        sums, keyed, pooled_mean=pooled.mean, prior_strength=prior_strength, sweeps=sweeps
    )
    noise = _noise(sums.values()) or pooled.variance or pooled.mean * pooled.mean
    relative = noise / (pooled.mean * pooled.mean)
    drawn = {
        key: rng.normal(f, f * math.sqrt(relative / (evidence[key] + prior_strength)), size)
        for key, f in factor.items()
    }
    shifts = prior_shift or {}
    columns = []
    for arm, arm_sums in sums.items():
        centre = (
            pooled.mean * (1 + shifts.get(arm, 0.0)) * np.prod([drawn[key] for key in keyed[arm]], axis=0)
        )
        weight = arm_sums.n
        mean = (arm_prior_strength * centre + weight * arm_sums.mean) / (arm_prior_strength + weight)
        columns.append(rng.normal(mean, math.sqrt(noise / (arm_prior_strength + weight))))
    return np.column_stack(columns)


def arm_posteriors(
    sums: Mapping[K, Sums],
    *,
    prior_strength: float,
    prior_shift: Mapping[K, float] | None = None,
    parts: Callable[[K], Sequence[Hashable]] | None = None,
    arm_prior_strength: float = ARM_PRIOR_STRENGTH,
) -> dict[K, GaussianPosterior]:
    """Every arm's posterior of its mean, in the order of ``sums``; empty when no arm has any evidence.
    With ``parts`` the priors come from ``factor_prior_means``, worth ``arm_prior_strength`` posts (the fitted
    factors' own uncertainty is ``factored_draws``'s to add); else every arm's is the pooled mean, worth
    ``prior_strength``."""
    if prior_strength <= 0:
        raise ValueError("the prior strength must be more than 0")
    pooled = sum(sums.values(), Sums())
    if pooled.n <= 0:
        return {}
    prior_mean = pooled.mean
    predicted = factor_prior_means(sums, parts=parts, prior_strength=prior_strength) if parts else {}
    noise = _noise(sums.values()) or pooled.variance or (prior_mean * prior_mean or 1.0)
    shifts = prior_shift or {}
    posteriors = {}
    for arm, arm_sums in sums.items():
        # gaussian_posterior counts whole units; decayed evidence is fractional, so the arm's evidence goes in
        # as one unit with the variance of its mean, noise / n, which has the same precision n / noise.
        evidence = Sample(
            n=1 if arm_sums.n > 0 else 0,
            average=arm_sums.mean,
            variance=noise / arm_sums.n if arm_sums.n > 0 else 0.0,
            unadjusted_average=arm_sums.mean,
        )
        posteriors[arm] = gaussian_posterior(
            evidence,
            prior_mean=predicted.get(arm, prior_mean) * (1 + shifts.get(arm, 0.0)),
            prior_variance=noise / (arm_prior_strength if parts else prior_strength),
        )
    return posteriors


def _noise(sums: Iterable[Sums]) -> float:
    """The variance of one observation around its arm's mean, pooled over the arms (their differences are
    what the bandit learns, not noise); 0 when no arm has two observations' worth.

    Without it (one observation per arm, or all alike) the caller takes the pool's variance, and failing that
    a coefficient of variation of 1, so that the posteriors stay wide rather than certain."""
    within = 0.0
    freedom = 0.0
    for arm in sums:
        if arm.n > 0:
            # The weighted sum of squared deviations over its effective freedom, scaled to the weights' total.
            within += max(0.0, arm.total_squares - arm.total * arm.total / arm.n)
            freedom += arm.freedom
    return within / freedom if freedom > 0 and within > 0 else 0.0


def floor_for(arms: int, min_share: float) -> float:
    """``min_share``, or the uniform share when there are too many arms for every one to get it."""
    return min(min_share, 1.0 / arms) if arms else 0.0


def arm_weights(
    posteriors: Mapping[K, GaussianPosterior], *, min_share: float, draws: int, seed: int = 0
) -> dict[K, float]:
    """Each arm's Thompson weight (its chance of being the best), every one at least ``min_share``."""
    arms = list(posteriors)
    if not arms:
        return {}
    weights = thompson_weights(
        [posteriors[a] for a in arms], draws=draws, seed=seed, floor=floor_for(len(arms), min_share)
    )
    return dict(zip(arms, weights, strict=True))


def factored_arm_weights(
    sums: Mapping[K, Sums],
    *,
    parts: Callable[[K], Sequence[Hashable]],
    prior_strength: float,
    min_share: float,
    draws: int,
    seed: int = 0,
    prior_shift: Mapping[K, float] | None = None,
    arm_prior_strength: float = ARM_PRIOR_STRENGTH,
) -> dict[K, float]:
    """Each arm's chance of being the best under the factored model (``factored_draws``), every one at least
    ``min_share``; empty without evidence."""
    matrix = factored_draws(
        sums,
        parts=parts,
        prior_strength=prior_strength,
        rng=np.random.default_rng(seed),
        size=draws,
        prior_shift=prior_shift,
        arm_prior_strength=arm_prior_strength,
    )
    if matrix is None:
        return {}
    weights = weights_from_draws(matrix, floor=floor_for(len(sums), min_share))
    return dict(zip(sums, weights, strict=True))


class ThompsonPolicy(Generic[K]):
    """The bandit played one round at a time: ``choose`` an arm, ``update`` it with the reward seen.

    With probability ``min_share * arms`` a round explores uniformly, so that every arm keeps its share, as
    in ``arm_weights``; otherwise it takes the best of one draw from every posterior. ``half_life`` (in
    rounds) decays the evidence by round rather than by day; ``parts`` gives the arms factored priors.
    """

    def __init__(
        self,
        arms: Sequence[K],
        *,
        prior_strength: float = 2.0,
        min_share: float = 0.01,
        half_life: float | None = None,
        prior_shift: Mapping[K, float] | None = None,
        parts: Callable[[K], Sequence[Hashable]] | None = None,
        arm_prior_strength: float = ARM_PRIOR_STRENGTH,
        seed: int = 0,
    ) -> None:
        if not arms:
            raise ValueError("no arms")
        self.arms = list(arms)
        self.sums: dict[K, Sums] = {arm: Sums() for arm in self.arms}
        self.prior_strength = prior_strength
        self.explore = floor_for(len(self.arms), min_share) * len(self.arms)
        self.decay = 0.5 ** (1 / half_life) if half_life else 1.0
        self.prior_shift = dict(prior_shift or {})
        self.parts = parts
        self.arm_prior_strength = arm_prior_strength
        self.rng = np.random.default_rng(seed)

    def posteriors(self) -> dict[K, GaussianPosterior]:
        return arm_posteriors(
            self.sums,
            prior_strength=self.prior_strength,
            prior_shift=self.prior_shift,
            parts=self.parts,
            arm_prior_strength=self.arm_prior_strength,
        )

    def choose(self) -> K:
        if self.rng.random() < self.explore:
            return self.arms[int(self.rng.integers(len(self.arms)))]
        if self.parts is not None:
            drawn = factored_draws(
                self.sums,
                parts=self.parts,
                prior_strength=self.prior_strength,
                rng=self.rng,
                size=1,
                prior_shift=self.prior_shift,
                arm_prior_strength=self.arm_prior_strength,
            )
            if drawn is None:
                return self.arms[int(self.rng.integers(len(self.arms)))]
            return self.arms[int(np.argmax(drawn[0]))]
        posteriors = self.posteriors()
        if not posteriors:
            return self.arms[int(self.rng.integers(len(self.arms)))]
        return self.arms[thompson_choose([posteriors[a] for a in self.arms], rng=self.rng)]

    def update(self, arm: K, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"a reward must be a finite number, not {value!r}")
        if self.decay != 1.0:
            self.sums = {a: s.scaled(self.decay) for a, s in self.sums.items()}
        self.sums[arm] = self.sums[arm].add(value)
