"""The A/B test's evaluation: the sample-ratio check, the sequential test per metric and treatment with CUPED
where a pre-period exists, the correction across metrics and treatments, and the decisions (winner, control
wins, no difference at the horizon, nothing before the minimum sample, a guardrail that stops a winner)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from apps.experiments.models import ABTest
from apps.experiments.selectors import MetricSums, TestSums, VariantSums
from apps.experiments.services import ab_test_evaluate
from apps.experiments.stats import Sample, adjust_p_values, bayesian_test, sequential_test, srm_p_value

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=3)


def _test(**fields: object) -> ABTest:
    values: dict[str, object] = {
        "pk": 1,
        "slug": "offer-copy",
        "subject": ABTest.Subject.OFFER,
        "metric": "click",
        "secondary_metrics": [],
        "min_sample_size": 100,
        "horizon_days": 14,
        "started_at": T0,
    }
    return ABTest(**(values | fields))


def _proportion(exposures: int, conversions: int) -> MetricSums:
    return MetricSums(
        n=conversions,
        total=float(conversions),
        total_squares=float(conversions),
        unpaired_total=float(conversions),
    )


def _variant(key: str, exposures: int, metrics: dict[str, MetricSums], *, weight: int = 1) -> VariantSums:
    return VariantSums(
        variant_id=ord(key),
        key=key,
        name=f"Variant {key}",
        weight=weight,
        is_control=key == "A",
        exposures=exposures,
        metrics=metrics,
    )


def _offer_sums(*variants: tuple[str, int, dict[str, int]]) -> TestSums:
    return TestSums(
        test_id=1,
        variants=[
            _variant(key, n, {metric: _proportion(n, c) for metric, c in conversions.items()})
            for key, n, conversions in variants
        ],
    )


def test_a_sample_ratio_mismatch_breaks_the_test_whatever_the_effect() -> None:
    sums = _offer_sums(("A", 1000, {"click": 100}), ("B", 800, {"click": 300}))

    evaluation = ab_test_evaluate(test=_test(), sums=sums, now=NOW)

    assert evaluation.srm_p_value == pytest.approx(srm_p_value([1000, 800], [1, 1]))
    assert evaluation.srm_p_value < 0.001
    assert (evaluation.decision, evaluation.winner_id) == (ABTest.Decision.BROKEN, None)
    assert evaluation.reason.startswith(
        "sample-ratio mismatch (p = 2.4e-06 < 0.001): A 1000 (weight 1), B 800"
    )


def test_the_split_is_judged_against_the_weights() -> None:
    sums = TestSums(
        test_id=1,
        variants=[
            _variant("A", 1000, {"click": _proportion(1000, 100)}, weight=1),
            _variant("B", 3000, {"click": _proportion(3000, 300)}, weight=3),
        ],
    )

    evaluation = ab_test_evaluate(test=_test(), sums=sums, now=NOW)

    assert evaluation.srm_p_value == 1.0
    assert evaluation.decision == ABTest.Decision.NONE


def test_a_clear_effect_makes_a_winner_with_the_figures() -> None:
    sums = _offer_sums(("A", 1000, {"click": 100}), ("B", 1000, {"click": 200}))
    test = _test()

    evaluation = ab_test_evaluate(test=test, sums=sums, now=NOW)

    control, treatment = (
        Sample.proportion(n=1000, conversions=100),
        Sample.proportion(n=1000, conversions=200),
    )
    expected = sequential_test(control, treatment, alpha=0.05, tuning=5000)
    chance = bayesian_test(control, treatment, alpha=0.05).chance_to_win
    assert (evaluation.decision, evaluation.winner_id, evaluation.winner_key) == (
        ABTest.Decision.WINNER,
        ord("B"),
        "B",
    )
    assert evaluation.reason == f"B beats A on click by +100.0% (adjusted p = {expected.p_value:.3g})"
    assert evaluation.result == {
        "evaluated_at": NOW.isoformat(),
        "srm_p_value": 1.0,
        "exposures": {"A": 1000, "B": 1000},
        "metrics": {
            "click": {
                "variants": {"A": {"n": 1000, "mean": 0.1}, "B": {"n": 1000, "mean": 0.2}},
                "comparisons": {
                    "B": {
                        "effect": pytest.approx(1.0),
                        "ci": [expected.ci[0], expected.ci[1]],
                        "p_value": expected.p_value,
                        "adjusted_p_value": expected.p_value,
                        "chance_to_win": chance,
                        "significant": True,
                        "cuped": False,
                    }
                },
            }
        },
        "decision": "winner",
        "reason": evaluation.reason,
    }


def test_the_control_wins_when_every_treatment_is_worse() -> None:
    sums = _offer_sums(("A", 1000, {"click": 200}), ("B", 1000, {"click": 100}), ("C", 1000, {"click": 90}))

    evaluation = ab_test_evaluate(test=_test(), sums=sums, now=NOW)

    assert (evaluation.decision, evaluation.winner_key) == (ABTest.Decision.WINNER, "A")
    assert evaluation.reason == "control A wins: every treatment is worse on click (B -50.0%, C -55.0%)"


def test_nothing_is_decided_before_the_minimum_sample() -> None:
    sums = _offer_sums(("A", 999, {"click": 100}), ("B", 1000, {"click": 200}))

    evaluation = ab_test_evaluate(test=_test(min_sample_size=1000), sums=sums, now=NOW)

    assert evaluation.comparisons[0].significant is True
    assert (evaluation.decision, evaluation.winner_id) == (ABTest.Decision.NONE, None)
    assert evaluation.reason == "waiting for 1000 units per variant on click: A 999"


def test_no_difference_at_the_horizon() -> None:
    sums = _offer_sums(("A", 1000, {"click": 100}), ("B", 1000, {"click": 104}))
    test = _test()

    before = ab_test_evaluate(test=test, sums=sums, now=T0 + dt.timedelta(days=13, hours=23))
    at = ab_test_evaluate(test=test, sums=sums, now=T0 + dt.timedelta(days=14))

    assert (before.decision, before.reason) == (ABTest.Decision.NONE, "no significant result on click yet")
    assert (at.decision, at.winner_id) == (ABTest.Decision.NO_DIFFERENCE, None)
    assert at.reason == "horizon of 14 days reached with no significant gain on click"


def test_the_horizon_ends_a_test_that_never_reached_its_sample() -> None:
    sums = _offer_sums(("A", 30, {"click": 3}), ("B", 31, {"click": 4}))

    evaluation = ab_test_evaluate(test=_test(), sums=sums, now=T0 + dt.timedelta(days=15))

    assert evaluation.decision == ABTest.Decision.NO_DIFFERENCE
    assert (
        evaluation.reason == "horizon of 14 days reached before 100 units per variant on click (A 30, B 31)"
    )


@pytest.mark.parametrize(
    ("correction", "decision"),
    [(ABTest.Correction.HOLM, ABTest.Decision.NONE), ("bh", ABTest.Decision.WINNER)],
)
def test_holm_controls_the_family_and_bh_the_discovery_rate(correction: str, decision: str) -> None:
    # Two metrics with the same raw p (about 0.034): Holm doubles both past alpha, BH keeps them below.
    sums = _offer_sums(
        ("A", 1000, {"click": 100, "checkout": 100}), ("B", 1000, {"click": 164, "checkout": 164})
    )
    test = _test(secondary_metrics=["checkout"], correction=correction)

    evaluation = ab_test_evaluate(test=test, sums=sums, now=NOW)

    raw = [c.p_value for c in evaluation.comparisons]
    assert raw[0] == raw[1] == pytest.approx(0.0336, abs=1e-4)
    adjusted = adjust_p_values(raw, method="holm" if correction == ABTest.Correction.HOLM else "bh")
    assert [c.adjusted_p_value for c in evaluation.comparisons] == adjusted
    assert evaluation.decision == decision


def test_a_guardrail_significantly_worse_stops_the_winner() -> None:
    sums = _offer_sums(
        ("A", 1000, {"click": 100, "checkout": 100}), ("B", 1000, {"click": 200, "checkout": 40})
    )
    test = _test(secondary_metrics=["checkout"])

    evaluation = ab_test_evaluate(test=test, sums=sums, now=NOW)

    assert (evaluation.decision, evaluation.winner_id) == (ABTest.Decision.NO_DIFFERENCE, None)
    assert evaluation.reason.startswith(
        "no winner: B gains +100.0% on click but is worse on checkout (-60.0%, "
    )


def test_a_guardrail_only_stops_the_treatment_it_hurts() -> None:
    sums = _offer_sums(
        ("A", 1000, {"click": 100, "checkout": 100}),
        ("B", 1000, {"click": 250, "checkout": 40}),
        ("C", 1000, {"click": 200, "checkout": 100}),
    )
    test = _test(secondary_metrics=["checkout"])

    evaluation = ab_test_evaluate(test=test, sums=sums, now=NOW)

    assert (evaluation.decision, evaluation.winner_key) == (ABTest.Decision.WINNER, "C")


def _engagement_sums(seed: int, *, with_pre: bool) -> TestSums:
    """Posts whose rate mostly follows their platform's baseline (the pre-period value), B slightly better."""
    rng = np.random.default_rng(seed)
    variants = []
    for key, lift in (("A", 0.0), ("B", 0.004)):
        pre = rng.uniform(0.01, 0.09, 400)
        value = pre + lift + rng.normal(0, 0.004, 400)
        variants.append(
            _variant(
                key,
                400,
                {
                    "engagement_rate": MetricSums(
                        n=400,
                        total=float(value.sum()),
                        total_squares=float((value * value).sum()),
                        pre_n=400 if with_pre else 0,
                        pre_total=float(pre.sum()) if with_pre else 0.0,
                        pre_total_squares=float((pre * pre).sum()) if with_pre else 0.0,
                        cross_total=float((value * pre).sum()) if with_pre else 0.0,
                        unpaired_total=0.0 if with_pre else float(value.sum()),
                    )
                },
            )
        )
    return TestSums(test_id=1, variants=variants)


def test_cuped_is_used_when_pre_values_exist_and_narrows_the_interval() -> None:
    test = _test(subject=ABTest.Subject.POST, metric="engagement_rate")

    plain = ab_test_evaluate(test=test, sums=_engagement_sums(7, with_pre=False), now=NOW)
    cuped = ab_test_evaluate(test=test, sums=_engagement_sums(7, with_pre=True), now=NOW)

    (p,), (c,) = plain.comparisons, cuped.comparisons
    assert (p.cuped, c.cuped) == (False, True)
    assert (c.ci[1] - c.ci[0]) < 0.5 * (p.ci[1] - p.ci[0])
    assert (p.significant, c.significant) == (False, True)
    assert cuped.decision == ABTest.Decision.WINNER
    assert cuped.result["metrics"]["engagement_rate"]["comparisons"]["B"]["cuped"] is True


def test_units_without_a_pre_value_stay_in_the_cuped_sample() -> None:
    full = _engagement_sums(7, with_pre=True)
    a, b = full.variants
    rows = b.metrics["engagement_rate"]
    # One unit of B lost its pre-period value: it is filled with the pooled mean and still counted.
    missing_value, missing_pre = 0.05, 0.04
    partial = MetricSums(
        n=rows.n,
        total=rows.total,
        total_squares=rows.total_squares,
        pre_n=rows.pre_n - 1,
        pre_total=rows.pre_total - missing_pre,
        pre_total_squares=rows.pre_total_squares - missing_pre**2,
        cross_total=rows.cross_total - missing_value * missing_pre,
        unpaired_total=missing_value,
    )
    sums = TestSums(
        test_id=1, variants=[a, VariantSums(**{**b.__dict__, "metrics": {"engagement_rate": partial}})]
    )

    evaluation = ab_test_evaluate(test=_test(metric="engagement_rate"), sums=sums, now=NOW)

    (comparison,) = evaluation.comparisons
    assert comparison.cuped is True
    assert evaluation.variants["engagement_rate"]["B"][0] == 400
