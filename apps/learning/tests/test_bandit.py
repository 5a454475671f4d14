"""The bandit's arithmetic: decayed evidence, posteriors shrunk toward the pooled mean (shifted for A/B
winners), Thompson weights with a floor, and the round-by-round policy."""

from __future__ import annotations

import numpy as np
import pytest

from apps.learning import bandit
from apps.learning.bandit import (
    Sums,
    ThompsonPolicy,
    arm_posteriors,
    arm_weights,
    decay_weight,
    decayed_sums,
    floor_for,
)


def test_evidence_counts_half_at_the_half_life() -> None:
    assert decay_weight(0, half_life_days=7) == 1.0
    assert decay_weight(7, half_life_days=7) == 0.5
    assert decay_weight(14, half_life_days=7) == 0.25
    assert decay_weight(-1, half_life_days=7) == 1.0  # a clock ahead of the post's: no bonus

    sums = decayed_sums([(0.04, 0.0), (0.02, 7.0)], half_life_days=7)

    assert sums == Sums(
        n=1.5, total=0.04 + 0.5 * 0.02, total_squares=0.04**2 + 0.5 * 0.02**2, weight_squares=1.25
    )
    assert sums.mean == pytest.approx(0.05 / 1.5)
    # Two observations, one at half weight: 1.5 - 1.25 / 1.5 degrees of freedom, not 0.5.
    assert sums.freedom == pytest.approx(1.5 - 1.25 / 1.5)
    with pytest.raises(ValueError, match="half-life"):
        decay_weight(1, half_life_days=0)


def test_weighted_sums_give_the_sample_mean_and_variance() -> None:
    values = [0.01, 0.03, 0.05, 0.02]
    sums = Sums()
    for value in values:
        sums = sums.add(value)

    assert sums.mean == pytest.approx(np.mean(values))
    assert sums.variance == pytest.approx(np.var(values, ddof=1))
    assert Sums().add(0.4).variance == 0.0


def test_an_arm_without_evidence_gets_the_pooled_mean_and_little_evidence_is_shrunk() -> None:
    sums = {
        "a": Sums().add(0.02).add(0.04).add(0.03).add(0.01),
        "b": Sums().add(0.09),
        "c": Sums(),
    }

    posteriors = arm_posteriors(sums, prior_strength=2.0)

    pooled = 0.19 / 5
    assert posteriors["c"].mean == pytest.approx(pooled)
    # One post of 0.09 against two pseudo-posts at the pooled mean.
    assert posteriors["b"].mean == pytest.approx((0.09 + 2 * pooled) / 3)
    # The noise is the spread within arms, pooled: a's four posts give three degrees of freedom, b's one none.
    noise = np.var([0.02, 0.04, 0.03, 0.01], ddof=1)
    assert posteriors["b"].variance == pytest.approx(noise / 3)
    assert posteriors["c"].variance == pytest.approx(noise / 2)
    assert arm_posteriors({"a": Sums(), "b": Sums()}, prior_strength=2.0) == {}


def test_with_one_observation_per_arm_the_noise_is_the_pools_spread() -> None:
    sums = {"a": Sums().add(0.02), "b": Sums().add(0.06)}

    posteriors = arm_posteriors(sums, prior_strength=2.0)

    assert posteriors["a"].variance == pytest.approx(np.var([0.02, 0.06], ddof=1) / 3)
    alike = arm_posteriors({"a": Sums().add(0.05)}, prior_strength=2.0)
    assert alike["a"].variance == pytest.approx(0.05**2 / 3)


def test_an_ab_winner_starts_ahead_by_its_effect() -> None:
    sums = {"plain": Sums().add(0.03).add(0.02), "question": Sums(), "punchy": Sums()}

    posteriors = arm_posteriors(sums, prior_strength=2.0, prior_shift={"question": 0.5})

    assert posteriors["question"].mean == pytest.approx(0.025 * 1.5)
    assert posteriors["punchy"].mean == pytest.approx(0.025)
    weights = arm_weights(posteriors, min_share=0.01, draws=10_000)
    assert weights["question"] > weights["punchy"]


def test_the_better_arm_gets_most_of_the_weight_and_every_arm_keeps_its_floor() -> None:
    rng = np.random.default_rng(7)
    sums = {}
    for arm, mean in (("good", 0.06), ("fair", 0.03), ("poor", 0.02), ("bad", 0.01)):
        arm_sums = Sums()
        for value in rng.normal(mean, 0.01, 40):
            arm_sums = arm_sums.add(float(value))
        sums[arm] = arm_sums

    weights = arm_weights(arm_posteriors(sums, prior_strength=2.0), min_share=0.01, draws=10_000)

    assert list(weights) == ["good", "fair", "poor", "bad"]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["good"] == pytest.approx(1 - 3 * 0.01, abs=1e-3)
    assert min(weights.values()) >= 0.01
    assert weights["bad"] == pytest.approx(0.01)


def test_with_too_many_arms_for_the_floor_each_gets_an_equal_share_at_least() -> None:
    assert floor_for(4, 0.01) == 0.01
    assert floor_for(200, 0.01) == 1 / 200
    posteriors = arm_posteriors({i: Sums().add(0.01 * (i % 3)) for i in range(200)}, prior_strength=2.0)

    weights = arm_weights(posteriors, min_share=0.01, draws=2_000)

    assert sum(weights.values()) == pytest.approx(1.0)
    assert min(weights.values()) >= 1 / 200 - 1e-12


def test_the_policy_finds_the_best_arm_and_keeps_exploring() -> None:
    means = {"a": 0.02, "b": 0.05, "c": 0.03}
    policy = ThompsonPolicy(list(means), prior_strength=2.0, min_share=0.05, seed=3)
    audience = np.random.default_rng(11)
    chosen = []
    for _ in range(400):
        arm = policy.choose()
        chosen.append(arm)
        policy.update(arm, float(audience.normal(means[arm], 0.01)))

    late = chosen[200:]
    assert late.count("b") / len(late) > 0.8
    assert {"a", "c"} <= set(late)  # the floor keeps the others in play
    with pytest.raises(ValueError, match="finite"):
        policy.update("a", float("nan"))


def test_the_policys_half_life_forgets_an_audience_that_changed() -> None:
    policy = ThompsonPolicy(["a", "b"], prior_strength=2.0, min_share=0.0, half_life=10)
    for _ in range(30):
        policy.update("a", 0.05)
        policy.update("b", 0.01)

    assert policy.sums["a"].n == pytest.approx(sum(0.5 ** (k / 10) for k in range(1, 60, 2)))
    # The audience turns: b is now the better arm and, old evidence fading, overtakes a.
    for _ in range(30):
        policy.update("a", 0.01)
        policy.update("b", 0.05)
    posteriors = policy.posteriors()
    assert posteriors["b"].mean > posteriors["a"].mean


def test_factored_priors_rank_unseen_arms_by_the_parts_they_share() -> None:
    # Formats and tones seen apart: threads do twice as well as single posts, questions 1.5 times plain.
    sums = {
        ("thread", "plain"): bandit.Sums().add(0.04, 200),
        ("single", "plain"): bandit.Sums().add(0.02, 200),
        ("single", "question"): bandit.Sums().add(0.03, 200),
        ("thread", "question"): bandit.Sums(),  # never played
    }

    means = bandit.factor_prior_means(sums, parts=lambda arm: arm, prior_strength=2.0)

    # The model fits what was seen and predicts the unseen arm from its parts: 0.02 x 2 x 1.5.
    assert means[("thread", "plain")] == pytest.approx(0.04, rel=0.02)
    assert means[("single", "question")] == pytest.approx(0.03, rel=0.02)
    assert means[("thread", "question")] == pytest.approx(0.06, rel=0.03)


def test_factored_priors_share_an_effect_between_parts_that_always_came_together() -> None:
    # Threads were only ever posted with questions: the lift is split, not counted once per part.
    sums = {
        ("thread", "question"): bandit.Sums().add(0.08, 100),
        ("single", "plain"): bandit.Sums().add(0.02, 100),
        ("thread", "plain"): bandit.Sums(),
        ("single", "question"): bandit.Sums(),
    }

    means = bandit.factor_prior_means(sums, parts=lambda arm: arm, prior_strength=2.0)

    assert means[("thread", "question")] == pytest.approx(0.08, rel=0.05)
    assert means[("single", "plain")] == pytest.approx(0.02, rel=0.05)
    assert means[("thread", "plain")] < 0.08
    assert means[("single", "question")] < 0.08


def test_factored_priors_need_evidence() -> None:
    assert (
        bandit.factor_prior_means({("a", "b"): bandit.Sums()}, parts=lambda arm: arm, prior_strength=2.0)
        == {}
    )


def test_decay_does_not_inflate_the_noise() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(0.05, 0.01, 400)
    fresh = {"a": decayed_sums(((v, 0.0) for v in values[:200]), half_life_days=7)}
    old = {"a": decayed_sums(((v, 30.0) for v in values[200:]), half_life_days=7)}

    # Evidence a month old weighs a sixteenth but says the same about the spread of one post.
    assert bandit._noise(fresh.values()) == pytest.approx(0.01**2, rel=0.25)
    assert bandit._noise(old.values()) == pytest.approx(0.01**2, rel=0.25)


def test_the_factored_policy_finds_the_best_of_many_arms() -> None:
    means = {
        (f, t): 0.05 * ff * tf
        for f, ff in (("a", 1.0), ("b", 1.2), ("c", 0.9))
        for t, tf in (("x", 1.0), ("y", 1.3), ("z", 1.1), ("w", 0.95))
    }
    policy = ThompsonPolicy(list(means), parts=lambda arm: arm, seed=3)
    rng = np.random.default_rng(5)
    chosen = []
    for _ in range(300):
        arm = policy.choose()
        policy.update(arm, means[arm] * float(np.exp(rng.normal(-0.06, 0.35))))
        chosen.append(arm)

    assert max(set(chosen[-100:]), key=chosen[-100:].count) == ("b", "y")
