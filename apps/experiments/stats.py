"""Experiment statistics over summary statistics: a pure module, no database, no I/O.

Every figure here is computed from per-variant sums (count, sum, sum of squares and, for CUPED, the
pre-period sums and the cross product), which SQL aggregates cheaply. The tests follow GrowthBook's
``gbstats`` 0.8 formula for formula, so that results can be checked against it (the reference vectors in
``apps/experiments/tests/reference/`` were generated with it); the multiple-testing corrections follow
statsmodels' ``multipletests`` (``holm`` and ``fdr_bh``). gbstats itself is not a dependency.

Notation: control A, treatment B; ``m`` a sample mean, ``v`` a sample variance, ``n`` a count.

* Effect. Absolute: ``d = m_B - m_A``. Relative (lift): ``d = (m_B - m_A) / m_A`` where the
  denominator is the control's *unadjusted* mean (it differs from ``m_A`` only under CUPED).
* Variance of the effect (delta method for the relative case)::

      absolute: V = v_B / n_B + v_A / n_A
      relative: V = v_B / (m_A^2 n_B) + v_A m_B^2 / (m_A^4 n_A)

  (means in ``V`` are the unadjusted ones.)
* Frequentist (Welch): ``t = d / sqrt(V)``, Welch-Satterthwaite degrees of freedom
  ``df = V0^2 / (v_B^2 / (n_B^2 (n_B - 1)) + v_A^2 / (n_A^2 (n_A - 1)))`` with ``V0 = v_B/n_B + v_A/n_A``,
  two-sided ``p = 2 P(T_df > |t|)``, interval ``d ± t_{df, 1-alpha/2} sqrt(V)``.
* Sequential: the asymptotic confidence sequence of Waudby-Smith et al. (arXiv 2103.06476, eqs. 9, 155,
  161) with ``N = n_A + n_B``, ``s^2 = V N`` and tuning parameter ``tau`` (the sample size at which the
  sequence is tightest)::

      rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / tau
      half-width = s sqrt( 2 (N rho^2 + 1) / (N rho)^2 * ln( sqrt(N rho^2 + 1) / alpha ) )
      p = min(1, sqrt(N rho^2 + 1) * exp(-rho^2 (d^2 N / V) / (2 (N rho^2 + 1))))

  The interval stays valid however often it is looked at, which is what daily peeking needs.
* Bayesian (gbstats' effect test with its default flat prior): the posterior of the effect is
  ``Normal(d, V)``; ``chance_to_win = P(effect > 0)``, the credible interval is its central ``1 - alpha``.
* Degenerate inputs give gbstats' uninformative answers: effect 0, interval (0, 0), p-value 1 or chance to
  win 0.5, when the control mean is 0 (always for the frequentist tests, only for relative effects in the
  Bayesian one), a variant is empty, or a variance is zero or negative.

Proportions use the binomial variance ``p (1 - p)``; means use the unbiased sample variance
``(sum_sq - sum^2 / n) / (n - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _sp

__all__ = [
    "BayesianResult",
    "BetaPosterior",
    "CupedSums",
    "FrequentistResult",
    "GaussianPosterior",
    "Sample",
    "adjust_p_values",
    "bayesian_test",
    "beta_posterior",
    "cuped_samples",
    "cuped_theta",
    "frequentist_test",
    "gaussian_posterior",
    "sequential_test",
    "srm_p_value",
    "thompson_choose",
    "thompson_weights",
]


@dataclass(frozen=True)
class Sample:
    """One variant's metric, as the test sees it: count, point estimate and per-unit variance.

    Build it with :meth:`Sample.mean`, :meth:`Sample.proportion` or :func:`cuped_samples`. ``average`` is
    the estimate used for the effect (CUPED-adjusted when applicable) and ``unadjusted_average`` the raw
    mean used to scale relative effects.
    """

    n: int
    average: float
    variance: float
    unadjusted_average: float

    @classmethod
    def mean(cls, *, n: int, total: float, total_squares: float) -> Sample:
        """A continuous metric from its count, sum and sum of squares."""
        average = total / n if n else 0.0
        variance = (total_squares - total * total / n) / (n - 1) if n > 1 else 0.0
        return cls(n=n, average=average, variance=variance, unadjusted_average=average)

    @classmethod
    def proportion(cls, *, n: int, conversions: float) -> Sample:
        """A binomial metric: ``conversions`` successes out of ``n`` units (variance ``p (1 - p)``)."""
        p = conversions / n if n else 0.0
        return cls(n=n, average=p, variance=p * (1 - p), unadjusted_average=p)


@dataclass(frozen=True)
class FrequentistResult:
    effect: float
    ci: tuple[float, float]
    p_value: float
    std_error: float


@dataclass(frozen=True)
class BayesianResult:
    effect: float
    ci: tuple[float, float]
    chance_to_win: float
    std_error: float


def _effect(control: Sample, treatment: Sample, relative: bool) -> float:
    diff = treatment.average - control.average
    return diff / control.unadjusted_average if relative else diff


def _effect_variance(control: Sample, treatment: Sample, relative: bool) -> float:
    if relative:
        ma, mb = control.unadjusted_average, treatment.unadjusted_average
        return treatment.variance / (ma**2 * treatment.n) + control.variance * mb**2 / (ma**4 * control.n)
    return treatment.variance / treatment.n + control.variance / control.n


def _degenerate(control: Sample, treatment: Sample) -> bool:
    # Same guards as gbstats' frequentist tests: a zero baseline cannot scale a lift, and a zero
    # variance (which includes n <= 1) makes the standard error meaningless.
    return (
        control.average == 0
        or control.unadjusted_average == 0
        or control.variance <= 0
        or treatment.variance <= 0
    )


def _welch_df(control: Sample, treatment: Sample) -> float:
    va, vb, na, nb = control.variance, treatment.variance, control.n, treatment.n
    return (vb / nb + va / na) ** 2 / (vb**2 / (nb**2 * (nb - 1)) + va**2 / (na**2 * (na - 1)))


_NO_RESULT = FrequentistResult(effect=0.0, ci=(0.0, 0.0), p_value=1.0, std_error=0.0)


def frequentist_test(
    control: Sample, treatment: Sample, *, relative: bool = True, alpha: float = 0.05
) -> FrequentistResult:
    """Two-sided Welch t-test of treatment against control (delta method for the relative effect)."""
    if _degenerate(control, treatment):
        return _NO_RESULT
    effect = _effect(control, treatment, relative)
    se = math.sqrt(_effect_variance(control, treatment, relative))
    df = _welch_df(control, treatment)
    p_value = float(2 * _sp.t.sf(abs(effect / se), df))
    half = float(_sp.t.ppf(1 - alpha / 2, df)) * se
    return FrequentistResult(effect=effect, ci=(effect - half, effect + half), p_value=p_value, std_error=se)


def sequential_test(
    control: Sample,
    treatment: Sample,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    tuning: float = 5000,
) -> FrequentistResult:
    """Always-valid two-sided test (asymptotic confidence sequence); safe to look at every day.

    ``tuning`` is the total sample size at which the sequence is tightest (gbstats' default 5000).
    """
    if _degenerate(control, treatment):
        return _NO_RESULT
    effect = _effect(control, treatment, relative)
    variance = _effect_variance(control, treatment, relative)
    total = control.n + treatment.n
    rho2 = (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / tuning
    growth = total * rho2 + 1
    half = math.sqrt(variance * total) * math.sqrt(
        2 * growth * math.log(math.sqrt(growth) / alpha) / (total**2 * rho2)
    )
    # e-value of the mixture martingale; its reciprocal is an always-valid p-value.
    z2 = effect**2 * total / variance
    log_evalue = rho2 * z2 / (2 * growth) - 0.5 * math.log(growth)
    p_value = min(1.0, math.exp(-log_evalue))
    return FrequentistResult(
        effect=effect, ci=(effect - half, effect + half), p_value=p_value, std_error=math.sqrt(variance)
    )


def bayesian_test(
    control: Sample, treatment: Sample, *, relative: bool = True, alpha: float = 0.05
) -> BayesianResult:
    """Bayesian effect test with a flat prior: posterior ``Normal(effect, V)``."""
    zero_base = control.average == 0 or control.unadjusted_average == 0
    if (
        (relative and zero_base)
        or control.n == 0
        or treatment.n == 0
        or control.variance <= 0
        or treatment.variance <= 0
    ):
        return BayesianResult(effect=0.0, ci=(0.0, 0.0), chance_to_win=0.5, std_error=0.0)
    effect = _effect(control, treatment, relative)
    sd = math.sqrt(_effect_variance(control, treatment, relative))
    low, high = _sp.norm.ppf([alpha / 2, 1 - alpha / 2], loc=effect, scale=sd)
    return BayesianResult(
        effect=effect,
        ci=(float(low), float(high)),
        chance_to_win=float(_sp.norm.sf(0, loc=effect, scale=sd)),
        std_error=sd,
    )


def srm_p_value(counts: Sequence[float], weights: Sequence[float]) -> float:
    """Sample-ratio mismatch: chi-squared goodness of fit of the units per variant to the weights.

    Variants with a non-positive weight add nothing to the statistic, but the degrees of freedom stay
    ``len(counts) - 1`` (as in gbstats). No units at all gives 1.
    """
    if len(counts) != len(weights):
        raise ValueError("counts and weights must have the same length")
    observed = sum(counts)
    if not observed:
        return 1.0
    weight_total = sum(weights)
    chi2 = 0.0
    for count, weight in zip(counts, weights, strict=True):
        if weight <= 0:
            continue
        expected = weight / weight_total * observed
        chi2 += (count - expected) ** 2 / expected
    return float(_sp.chi2.sf(chi2, len(counts) - 1))


def adjust_p_values(p_values: Sequence[float], *, method: Literal["holm", "bh"] = "holm") -> list[float]:
    """Adjust p-values for multiple comparisons, returned in the input order.

    ``holm``: Holm-Bonferroni step-down, ``p_(i) -> max_{j<=i} min(1, (m - j + 1) p_(j))`` (controls the
    family-wise error rate). ``bh``: Benjamini-Hochberg step-up,
    ``p_(i) -> min_{j>=i} min(1, m p_(j) / j)`` (controls the false discovery rate).
    """
    m = len(p_values)
    if m == 0:
        return []
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="mergesort")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * np.arange(m, 0, -1))
    elif method == "bh":
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown method {method!r}; use 'holm' or 'bh'")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


# --- CUPED -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CupedSums:
    """A variant's sums for a metric ``Y`` with a pre-period covariate ``X`` (the same metric before
    exposure): ``n``, ``sum Y``, ``sum Y^2``, ``sum X``, ``sum X^2`` and the cross product ``sum X Y``."""

    n: int
    total: float
    total_squares: float
    pre_total: float
    pre_total_squares: float
    cross_total: float


def _cov(n: int, sum_x: float, sum_y: float, sum_xy: float) -> float:
    return (sum_xy - sum_x * sum_y / n) / (n - 1) if n > 1 else 0.0


def cuped_theta(variants: Sequence[CupedSums]) -> float:
    """The CUPED coefficient ``theta = Cov(X, Y) / Var(X)``, pooled over all variants.

    Pooling (one theta for every arm) keeps the adjustment from depending on the treatment, so the
    adjusted difference stays unbiased. 0 when the pooled ``X`` or ``Y`` has no variance.
    """
    n = sum(v.n for v in variants)
    sy, syy = sum(v.total for v in variants), sum(v.total_squares for v in variants)
    sx, sxx = sum(v.pre_total for v in variants), sum(v.pre_total_squares for v in variants)
    sxy = sum(v.cross_total for v in variants)
    var_x, var_y = _cov(n, sx, sx, sxx), _cov(n, sy, sy, syy)
    if var_x == 0 or var_y == 0:
        return 0.0
    return _cov(n, sx, sy, sxy) / var_x


def cuped_samples(variants: Sequence[CupedSums], *, theta: float | None = None) -> list[Sample]:
    """CUPED-adjusted samples (variance reduction with a pre-period covariate).

    Each unit's metric is replaced by ``Y - theta X``: in sums, per variant,

        average  = mean(Y) - theta mean(X)
        variance = Var(Y) + theta^2 Var(X) - 2 theta Cov(X, Y)     (unbiased, n - 1)

    with ``theta`` from :func:`cuped_theta` unless given. The unadjusted mean ``mean(Y)`` is kept to scale
    relative effects, as gbstats does, so a lift stays a lift of the raw metric. With ``theta == 0`` the
    samples are exactly :meth:`Sample.mean` of the post-period sums.
    """
    th = cuped_theta(variants) if theta is None else theta
    out = []
    for v in variants:
        plain = Sample.mean(n=v.n, total=v.total, total_squares=v.total_squares)
        if th == 0:
            out.append(plain)
            continue
        pre = Sample.mean(n=v.n, total=v.pre_total, total_squares=v.pre_total_squares)
        cov = _cov(v.n, v.pre_total, v.total, v.cross_total)
        variance = plain.variance + th**2 * pre.variance - 2 * th * cov if v.n > 1 else 0.0
        out.append(
            Sample(
                n=v.n,
                average=plain.average - th * pre.average,
                variance=variance,
                unadjusted_average=plain.average,
            )
        )
    return out


# --- Thompson sampling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BetaPosterior:
    """Beta(alpha, beta) posterior of a conversion rate."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def variance(self) -> float:
        a, b = self.alpha, self.beta
        return a * b / ((a + b) ** 2 * (a + b + 1))

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.beta(self.alpha, self.beta, size)


@dataclass(frozen=True)
class GaussianPosterior:
    """Normal(mean, variance) posterior of a metric's mean."""

    mean: float
    variance: float

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.normal(self.mean, math.sqrt(self.variance), size)


def beta_posterior(
    *, successes: float, failures: float, prior_alpha: float = 1.0, prior_beta: float = 1.0
) -> BetaPosterior:
    """Conjugate update ``Beta(prior_alpha + successes, prior_beta + failures)``.

    Counts may be fractional, so decayed (down-weighted) older evidence fits in directly; an A/B winner's
    result can be passed as the prior.
    """
    if successes < 0 or failures < 0 or prior_alpha <= 0 or prior_beta <= 0:
        raise ValueError("counts must be >= 0 and prior parameters > 0")
    return BetaPosterior(alpha=prior_alpha + successes, beta=prior_beta + failures)


def gaussian_posterior(
    sample: Sample, *, prior_mean: float = 0.0, prior_variance: float = math.inf
) -> GaussianPosterior:
    """Normal-normal update of a mean with the sample variance taken as known.

    Posterior precision ``1 / prior_variance + n / v``; posterior mean the precision-weighted average of
    ``prior_mean`` and the sample mean. The default prior is flat: ``Normal(mean, v / n)``.
    """
    if sample.n <= 0 or sample.variance <= 0:
        if math.isinf(prior_variance):
            raise ValueError("a flat prior needs a sample with n > 0 and a positive variance")
        return GaussianPosterior(mean=prior_mean, variance=prior_variance)
    data_precision = sample.n / sample.variance
    prior_precision = 0.0 if math.isinf(prior_variance) else 1.0 / prior_variance
    precision = data_precision + prior_precision
    mean = (data_precision * sample.average + prior_precision * prior_mean) / precision
    return GaussianPosterior(mean=mean, variance=1.0 / precision)


Posterior = BetaPosterior | GaussianPosterior


def thompson_choose(posteriors: Sequence[Posterior], *, rng: np.random.Generator) -> int:
    """One Thompson-sampling decision: draw once from every arm's posterior, return the best arm's index."""
    if not posteriors:
        raise ValueError("no arms")
    return int(np.argmax([p.draw(rng, 1)[0] for p in posteriors]))


def thompson_weights(
    posteriors: Sequence[Posterior], *, draws: int = 10_000, seed: int = 0, floor: float = 0.0
) -> list[float]:
    """Each arm's probability of being the best, by Monte Carlo (seeded, so reproducible).

    ``floor`` keeps every arm at a minimum share (e.g. 0.01 for >= 1% exposure): the weights are mixed
    with the uniform as ``floor + (1 - floor * k) * w``, which keeps them summing to 1 and preserves
    their order.
    """
    if not posteriors:
        raise ValueError("no arms")
    rng = np.random.default_rng(seed)
    return weights_from_draws(np.column_stack([p.draw(rng, draws) for p in posteriors]), floor=floor)


def weights_from_draws(matrix: np.ndarray, *, floor: float = 0.0) -> list[float]:
    """Each arm's share of the rows (joint posterior draws, one column per arm) in which it is the best,
    mixed with the uniform as :func:`thompson_weights` does."""
    draws, k = matrix.shape
    if k == 0:
        raise ValueError("no arms")
    if not 0 <= floor * k <= 1:
        raise ValueError("floor times the number of arms must be within [0, 1]")
    wins = np.bincount(np.argmax(matrix, axis=1), minlength=k) / draws
    return (floor + (1 - floor * k) * wins).tolist()
