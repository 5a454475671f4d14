"""The statistics module against gbstats 0.8 / statsmodels reference vectors, and its own properties."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from apps.experiments.stats import (
    BetaPosterior,
    CupedSums,
    GaussianPosterior,
    Sample,
    adjust_p_values,
    bayesian_test,
    beta_posterior,
    cuped_samples,
    cuped_theta,
    frequentist_test,
    gaussian_posterior,
    sequential_test,
    srm_p_value,
    thompson_choose,
    thompson_weights,
)

VECTORS = json.loads((Path(__file__).parent / "reference" / "vectors.json").read_text())
TOL = 1e-6


def close(actual: float, expected: float) -> bool:
    # 1e-6 absolute, or relative for large magnitudes (absolute effects on big means).
    return math.isclose(actual, expected, rel_tol=TOL, abs_tol=TOL)


def sample(kind: str, side: dict) -> Sample:
    if kind == "proportion":
        return Sample.proportion(n=side["n"], conversions=side["conversions"])
    return Sample.mean(n=side["n"], total=side["total"], total_squares=side["total_squares"])


def case_id(case: dict) -> str:
    return f"{case['kind']}-{'rel' if case['relative'] else 'abs'}-a{case['alpha']}"


def test_reference_versions_and_coverage() -> None:
    assert VECTORS["versions"]["gbstats"].startswith("0.8.")
    tests = VECTORS["tests"]
    assert len(tests) >= 400
    assert {c["kind"] for c in tests} == {"mean", "proportion"}
    assert {c["relative"] for c in tests} == {True, False}
    # Near the decision boundary: both sides of alpha are well represented.
    p_values = [c["frequentist"]["p_value"] for c in tests]
    assert sum(0.005 < p < 0.2 for p in p_values) > 150
    assert sum(p < c["alpha"] for p, c in zip(p_values, tests, strict=True)) > 80
    assert sum(p >= c["alpha"] for p, c in zip(p_values, tests, strict=True)) > 80


@pytest.mark.parametrize("case", VECTORS["tests"], ids=case_id)
def test_frequentist_matches_gbstats(case: dict) -> None:
    got = frequentist_test(
        sample(case["kind"], case["control"]),
        sample(case["kind"], case["treatment"]),
        relative=case["relative"],
        alpha=case["alpha"],
    )
    want = case["frequentist"]
    assert close(got.effect, want["effect"])
    assert close(got.ci[0], want["ci"][0])
    assert close(got.ci[1], want["ci"][1])
    assert close(got.p_value, want["p_value"])


@pytest.mark.parametrize("case", VECTORS["tests"], ids=case_id)
def test_sequential_matches_gbstats(case: dict) -> None:
    got = sequential_test(
        sample(case["kind"], case["control"]),
        sample(case["kind"], case["treatment"]),
        relative=case["relative"],
        alpha=case["alpha"],
        tuning=case["tuning"],
    )
    want = case["sequential"]
    assert close(got.effect, want["effect"])
    assert close(got.ci[0], want["ci"][0])
    assert close(got.ci[1], want["ci"][1])
    assert close(got.p_value, want["p_value"])


@pytest.mark.parametrize("case", VECTORS["tests"], ids=case_id)
def test_bayesian_matches_gbstats(case: dict) -> None:
    got = bayesian_test(
        sample(case["kind"], case["control"]),
        sample(case["kind"], case["treatment"]),
        relative=case["relative"],
        alpha=case["alpha"],
    )
    want = case["bayesian"]
    assert close(got.effect, want["effect"])
    assert close(got.ci[0], want["ci"][0])
    assert close(got.ci[1], want["ci"][1])
    assert close(got.chance_to_win, want["chance_to_win"])


@pytest.mark.parametrize("case", VECTORS["srm"])
def test_srm_matches_gbstats(case: dict) -> None:
    assert close(srm_p_value(case["counts"], case["weights"]), case["p_value"])


@pytest.mark.parametrize("case", VECTORS["corrections"])
@pytest.mark.parametrize("method", ["holm", "bh"])
def test_corrections_match_statsmodels(case: dict, method: str) -> None:
    got = adjust_p_values(case["p_values"], method=method)  # type: ignore[arg-type]
    assert len(got) == len(case[method])
    for g, w in zip(got, case[method], strict=True):
        assert close(g, w)


@pytest.mark.parametrize("case", VECTORS["cuped"])
def test_cuped_matches_gbstats_regression_adjustment(case: dict) -> None:
    variants = [CupedSums(**case["control"]), CupedSums(**case["treatment"])]
    assert close(cuped_theta(variants), case["theta"])
    control, treatment = cuped_samples(variants)
    got = frequentist_test(control, treatment, relative=case["relative"])
    want = case["frequentist"]
    assert close(got.effect, want["effect"])
    assert close(got.ci[0], want["ci"][0])
    assert close(got.ci[1], want["ci"][1])
    assert close(got.p_value, want["p_value"])


# --- properties beyond the vectors -----------------------------------------------------------------


def test_sample_constructors() -> None:
    s = Sample.mean(n=4, total=10.0, total_squares=30.0)  # units 1, 2, 3, 4
    assert s.average == 2.5
    assert s.variance == pytest.approx(np.var([1, 2, 3, 4], ddof=1))
    p = Sample.proportion(n=200, conversions=50)
    assert (p.average, p.variance) == (0.25, 0.25 * 0.75)


def test_degenerate_inputs_give_uninformative_answers() -> None:
    zero = Sample.mean(n=100, total=0.0, total_squares=0.0)
    other = Sample.mean(n=100, total=50.0, total_squares=60.0)
    for fn in (frequentist_test, sequential_test):
        r = fn(zero, other)
        assert (r.effect, r.ci, r.p_value) == (0.0, (0.0, 0.0), 1.0)
    b = bayesian_test(zero, other)
    assert (b.effect, b.ci, b.chance_to_win) == (0.0, (0.0, 0.0), 0.5)
    # Absolute Bayesian effects do not need a non-zero baseline, only a variance.
    assert bayesian_test(
        Sample.proportion(n=100, conversions=1), other, relative=False
    ).effect == pytest.approx(0.5 - 0.01)


def test_sequential_interval_is_wider_than_fixed_horizon() -> None:
    control = Sample.proportion(n=5000, conversions=500)
    treatment = Sample.proportion(n=5000, conversions=560)
    fixed, seq = frequentist_test(control, treatment), sequential_test(control, treatment)
    assert fixed.effect == seq.effect
    assert seq.ci[0] < fixed.ci[0] < fixed.ci[1] < seq.ci[1]
    assert seq.p_value > fixed.p_value


def test_srm_rejects_mismatched_lengths_and_flags_a_real_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        srm_p_value([1, 2], [1.0])
    assert srm_p_value([5000, 5000], [0.5, 0.5]) == pytest.approx(1.0)
    assert srm_p_value([5300, 4700], [0.5, 0.5]) < 0.001


def test_adjust_p_values_order_and_errors() -> None:
    assert adjust_p_values([], method="holm") == []
    assert adjust_p_values([0.04, 0.01, 0.03], method="holm") == pytest.approx([0.06, 0.03, 0.06])
    assert adjust_p_values([0.04, 0.01, 0.03], method="bh") == pytest.approx([0.04, 0.03, 0.04])
    with pytest.raises(ValueError, match="unknown method"):
        adjust_p_values([0.1], method="bonferroni")  # type: ignore[arg-type]


def test_cuped_against_raw_data() -> None:
    rng = np.random.default_rng(7)
    raw = []
    for lift in (0.0, 0.3):
        x = rng.normal(20, 5, 800)
        y = 0.8 * x + rng.normal(0, 2, 800) + lift
        raw.append((x, y))
    variants = [
        CupedSums(
            n=len(x),
            total=float(y.sum()),
            total_squares=float((y * y).sum()),
            pre_total=float(x.sum()),
            pre_total_squares=float((x * x).sum()),
            cross_total=float((x * y).sum()),
        )
        for x, y in raw
    ]
    # theta by pooled least squares on the raw units.
    x_all = np.concatenate([x for x, _ in raw])
    y_all = np.concatenate([y for _, y in raw])
    theta = np.cov(x_all, y_all, ddof=1)[0, 1] / np.var(x_all, ddof=1)
    assert cuped_theta(variants) == pytest.approx(theta, rel=1e-9)
    adjusted = cuped_samples(variants)
    for (x, y), s in zip(raw, adjusted, strict=True):
        z = y - theta * x  # the adjusted metric, unit by unit
        assert s.average == pytest.approx(z.mean(), rel=1e-9)
        assert s.variance == pytest.approx(np.var(z, ddof=1), rel=1e-7)
        assert s.unadjusted_average == pytest.approx(y.mean(), rel=1e-12)
        assert s.variance < np.var(y, ddof=1) / 2  # correlated pre-period: large variance reduction
    plain = [Sample.mean(n=v.n, total=v.total, total_squares=v.total_squares) for v in variants]
    assert (
        frequentist_test(*adjusted, relative=False).ci[1] - frequentist_test(*adjusted, relative=False).ci[0]
        < frequentist_test(*plain, relative=False).ci[1] - frequentist_test(*plain, relative=False).ci[0]
    )
    # No pre-period variance: theta 0 and the plain samples.
    flat = [
        CupedSums(n=3, total=6.0, total_squares=14.0, pre_total=3.0, pre_total_squares=3.0, cross_total=6.0)
    ]
    assert cuped_theta(flat) == 0.0
    assert cuped_samples(flat) == [Sample.mean(n=3, total=6.0, total_squares=14.0)]


def test_beta_posterior_statistics_and_sampling() -> None:
    post = beta_posterior(successes=30, failures=70)
    assert post == BetaPosterior(alpha=31, beta=71)
    assert post.mean == pytest.approx(31 / 102)
    assert post.variance == pytest.approx(31 * 71 / (102**2 * 103))
    draws = post.draw(np.random.default_rng(1), 200_000)
    assert draws.mean() == pytest.approx(post.mean, abs=1e-3)
    assert draws.var() == pytest.approx(post.variance, rel=2e-2)
    with pytest.raises(ValueError, match="counts must be"):
        beta_posterior(successes=-1, failures=0)


def test_gaussian_posterior_statistics() -> None:
    s = Sample.mean(n=100, total=250.0, total_squares=100 * 2.5**2 + 99 * 4.0)  # mean 2.5, variance 4
    flat = gaussian_posterior(s)
    assert flat.mean == pytest.approx(2.5)
    assert flat.variance == pytest.approx(4 / 100)
    informed = gaussian_posterior(s, prior_mean=0.0, prior_variance=0.04)
    # Equal precisions: halfway, half the variance.
    assert informed.mean == pytest.approx(1.25)
    assert informed.variance == pytest.approx(0.02)
    draws = GaussianPosterior(mean=1.0, variance=0.25).draw(np.random.default_rng(3), 200_000)
    assert draws.mean() == pytest.approx(1.0, abs=5e-3)
    assert draws.std() == pytest.approx(0.5, rel=1e-2)
    with pytest.raises(ValueError, match="flat prior"):
        gaussian_posterior(Sample.mean(n=0, total=0.0, total_squares=0.0))


def test_thompson_weights_seeded_and_floored() -> None:
    arms = [beta_posterior(successes=s, failures=1000 - s) for s in (50, 52, 80)]
    w = thompson_weights(arms, seed=11)
    assert w == thompson_weights(arms, seed=11)  # reproducible
    assert sum(w) == pytest.approx(1.0)
    assert w[2] > 0.99  # clearly the best arm
    floored = thompson_weights(arms, seed=11, floor=0.01)
    assert min(floored) >= 0.01
    assert sum(floored) == pytest.approx(1.0)
    assert floored.index(max(floored)) == 2
    twins = thompson_weights([BetaPosterior(10, 90), BetaPosterior(10, 90)], draws=40_000, seed=5)
    assert twins[0] == pytest.approx(0.5, abs=0.02)
    # P(best) for two Gaussians has a closed form: Phi((m1 - m0) / sqrt(v0 + v1)).
    g = thompson_weights([GaussianPosterior(0.0, 1.0), GaussianPosterior(0.5, 1.0)], draws=100_000, seed=2)
    assert g[1] == pytest.approx(0.5 * (1 + math.erf(0.5 / math.sqrt(2) / math.sqrt(2))), abs=5e-3)
    with pytest.raises(ValueError, match="floor"):
        thompson_weights(arms, floor=0.5)


def test_thompson_choose_follows_posteriors() -> None:
    rng = np.random.default_rng(4)
    arms = [BetaPosterior(5, 95), BetaPosterior(20, 80)]
    picks = [thompson_choose(arms, rng=rng) for _ in range(2000)]
    assert picks.count(1) > 1900
