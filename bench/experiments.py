"""Experiments and self-learning (issue 8): is daily peeking safe, does the bandit learn, and what does computing
every running test's results cost.

    python bench/experiments.py [--quick] [--keep]

Three parts, in a fresh database migrated in-process (see ``bench/_common.py``); the first two are simulations
(seeded NumPy and ``random`` generators, so every run prints the same figures), the third is timed.

1. A/A tests with daily peeking. 1,000 tests (``--quick``: 200), each with two identical arms, 500 units per
   arm and day for 14 days, looked at every evening on the cumulative sums (``Sample.proportion`` /
   ``Sample.mean``): a conversion metric (5%) and an engagement-rate metric (per unit log-normal around 5%
   with the simulated audience's spread, ``apps.integrations.audience.NOISE_SIGMA``). A test is a false
   positive when ANY look has p < 0.05. Compared: the naive Welch test at every look
   (``stats.frequentist_test``), the same test looked at once at day 14 (the fixed-horizon design it is
   valid for), and the sequential test (``stats.sequential_test``) with the tuning at the expected total
   (14,000 units) and at gbstats' default (5,000); each rate with its 95% Clopper-Pearson interval. Then the
   price of the safety: the same tests with a true lift in the treatment, and how many each design detects.
2. Bandit replay against the simulated audience (``apps.integrations.audience``: engagement multiplied by
   format, time of day and tone, log-normal noise per post). The arms are the Telegram arm space of the
   strategist's defaults: 3 formats x the 3 times of day its default slots fall in (morning, afternoon,
   evening; night is quiet hours) x the creation agent's 4 tone presets = 36 arms. 200 posts per replay,
   200 replays (``--quick``: 30). ``apps.learning.bandit.ThompsonPolicy`` as the strategy-tuning agent
   configures it (an arm's prior is what its format, time of day and tone predict, fitted to every post, worth
   2 posts; every arm kept at 1% of the posts, so 36% of them explore uniformly) against round-robin (the
   arms in a shuffled order, over and over). Regret is expected engagement lost: the sum over posts of (best
   arm's mean - chosen arm's mean). Printed: mean regret of each, the ratio, how often the bandit's most
   played arm over the last 50 posts is the best arm (and is within 5% of it); the same policy without the 1%
   floor, and with independent arms (every arm's prior the pooled mean), to show what each costs or brings.
   Then a drifting audience (after 100 posts the evening and the morning swap factors): the policy without
   decay, and with a half-life of 28 posts (the tuning default, 7 days, at Telegram's 4 slots a day).
3. Timing. 100 running tests (two thirds with two variants, a third with three; every test watches the five
   metrics of the registry) and 1,000,000 exposed assignments in all (``--quick``: 100,000), sizes per test
   log-normal, plus 5% assigned but never exposed. Outcome rows as the bookkeeping writes them: an
   engagement rate (with its pre-period value) for every exposed unit, a row for clicks, checkouts and paid
   conversions only where they happened (the proportions read a missing row as 0) and revenue only for the
   payers. A fifth of the tests have a true effect in a treatment, so some decide. Raw bulk inserts
   (executemany on SQLite, COPY on PostgreSQL). Timed, the contenders in turn, median of 5:

   - ``apps.experiments.selectors.variant_metric_sums(test_ids=...)`` (the two GROUP BYs every result reads);
   - ``apps.experiments.services.ab_test_evaluate`` for the 100 tests over those sums (statistics only);
   - ``apps.experiments.services.ab_tests_evaluate(now=...)``: the sums, the statistics, results, decisions
     and dashboard series written (each run rolled back, the rollback included);
   - the baseline: one plain ``GROUP BY test, variant, metric`` with COUNT, SUM and SUM of squares over the
     outcome rows on the raw cursor; and, to show what the selector reads beyond it, the same with the
     pre-period sums plus the exposures per variant (two statements). The selector's sums are checked
     against the plain aggregate first.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    analyze,
    bench_database,
    bulk_load,
    db_datetimes,
    human,
    insert_rows,
    interleaved,
    line,
    parse_args,
    print_header,
    reset_sequences,
    setup_django,
    stopwatch,
    table,
    times,
)

ALPHA = 0.05
REPEAT = 5


# --- 1. A/A tests with daily peeking ------------------------------------------------------------------------


@dataclass(frozen=True)
class PeekingSize:
    tests: int
    days: int = 14
    per_day: int = 500

    @property
    def total(self) -> int:
        """Units in both arms at the last look: what the sequential test is tuned to."""
        return 2 * self.per_day * self.days


PEEKING_FULL = PeekingSize(tests=1_000)
PEEKING_QUICK = PeekingSize(tests=200)
CONVERSION_RATE = 0.05
ENGAGEMENT_MEAN = 0.05
GBSTATS_TUNING = 5_000


@dataclass(frozen=True)
class Designs:
    """How many of the tests each design called significant (p < alpha, in either direction)."""

    tests: int
    naive_any: int
    fixed_last: int
    sequential_any: dict[int, int]  # by tuning


def daily_sums(
    kind: str, size: PeekingSize, rng: np.random.Generator, lift: float
) -> tuple[np.ndarray, np.ndarray]:
    """One test's cumulative (sum, sum of squares) per arm (0 control, 1 treatment) and day: shape (2, days).
    Proportions: conversions (a 0/1 value is its own square). Means: a unit's engagement rate, log-normal
    with the audience's spread, its mean ``ENGAGEMENT_MEAN`` (times 1 + ``lift`` in the treatment)."""
    from apps.integrations.audience import NOISE_SIGMA

    factor = np.array([[1.0], [1.0 + lift]])
    if kind == "proportion":
        conversions = rng.binomial(size.per_day, CONVERSION_RATE * factor, size=(2, size.days)).cumsum(axis=1)
        return conversions, conversions
    values = ENGAGEMENT_MEAN * np.exp(
        rng.normal(-(NOISE_SIGMA**2) / 2, NOISE_SIGMA, size=(2, size.days, size.per_day))
    )
    values[1] *= 1.0 + lift
    return values.sum(axis=2).cumsum(axis=1), (values * values).sum(axis=2).cumsum(axis=1)


def peeking(kind: str, size: PeekingSize, *, lift: float = 0.0, seed: int = 8) -> Designs:
    """Simulate ``size.tests`` tests of ``kind`` (``proportion`` or ``mean``) and count, per design, the tests
    with a significant look: every evening for the naive and the sequential tests, the last evening only for
    the fixed-horizon one."""
    from apps.experiments.stats import Sample, frequentist_test, sequential_test

    rng = np.random.default_rng(seed)
    tunings = (size.total, GBSTATS_TUNING)
    naive_any = fixed_last = 0
    sequential_any = dict.fromkeys(tunings, 0)
    for _ in range(size.tests):
        totals, squares = daily_sums(kind, size, rng, lift)
        naive_hit = False
        sequential_hit = dict.fromkeys(tunings, False)
        for day in range(size.days):
            n = size.per_day * (day + 1)
            if kind == "proportion":
                control = Sample.proportion(n=n, conversions=float(totals[0, day]))
                treatment = Sample.proportion(n=n, conversions=float(totals[1, day]))
            else:
                control = Sample.mean(n=n, total=float(totals[0, day]), total_squares=float(squares[0, day]))
                treatment = Sample.mean(
                    n=n, total=float(totals[1, day]), total_squares=float(squares[1, day])
                )
            naive = frequentist_test(control, treatment, alpha=ALPHA).p_value < ALPHA
            naive_hit = naive_hit or naive
            if day == size.days - 1 and naive:
                fixed_last += 1
            for tuning in tunings:
                if not sequential_hit[tuning]:
                    result = sequential_test(control, treatment, alpha=ALPHA, tuning=tuning)
                    sequential_hit[tuning] = result.p_value < ALPHA
        naive_any += naive_hit
        for tuning in tunings:
            sequential_any[tuning] += sequential_hit[tuning]
    return Designs(
        tests=size.tests, naive_any=naive_any, fixed_last=fixed_last, sequential_any=sequential_any
    )


def rate(hits: int, n: int) -> str:
    """``hits / n`` as a percentage with its 95% Clopper-Pearson interval."""
    from scipy.stats import binomtest

    low, high = binomtest(hits, n).proportion_ci(confidence_level=0.95)
    return f"{hits / n:6.1%}  [{low:.1%}, {high:.1%}]"


def run_peeking(size: PeekingSize) -> None:
    print(
        f"\n1. A/A tests with daily peeking: {size.tests:,} tests x {size.days} daily looks, "
        f"{size.per_day} units per arm and day ({size.total:,} units at the last look); "
        f"significant at any look = a false positive:"
    )
    rows = []
    with stopwatch() as took:
        results = {kind: peeking(kind, size) for kind in ("proportion", "mean")}
    labels = {"proportion": f"conversion {CONVERSION_RATE:.0%}", "mean": "engagement rate (log-normal)"}
    for kind, designs in results.items():
        n = designs.tests
        rows.append([labels[kind], "naive Welch, every look", rate(designs.naive_any, n)])
        rows.append(["", "naive Welch, day 14 only", rate(designs.fixed_last, n)])
        for tuning, hits in designs.sequential_any.items():
            rows.append(["", f"sequential, tuning {tuning:,}, every look", rate(hits, n)])
    table(["metric", "design", "false positives [95% CI]"], rows, left=2)
    primary = results["proportion"]
    sequential = primary.sequential_any[size.total] / primary.tests
    naive = primary.naive_any / primary.tests
    print(
        f"  goal: sequential <= 5% with daily looks, naive above it -> conversion: sequential {sequential:.1%}, "
        f"naive {naive:.1%} ({'met' if sequential <= ALPHA < naive else 'NOT met'}); ({human(took[0])})"
    )

    lifts = {"proportion": 0.20, "mean": 0.02}
    print(
        "\n   the price of peeking safely: the same tests with a true lift in the treatment, share detected "
        "by day 14:"
    )
    rows = []
    for kind, lift in lifts.items():
        designs = peeking(kind, size, lift=lift, seed=9)
        n = designs.tests
        rows.append(
            [f"{labels[kind]}, lift {lift:+.0%}", "naive Welch, day 14 only", rate(designs.fixed_last, n)]
        )
        for tuning, hits in designs.sequential_any.items():
            rows.append(["", f"sequential, tuning {tuning:,}, every look", rate(hits, n)])
    table(["metric", "design", "detected [95% CI]"], rows, left=2)


# --- 2. Bandit replay ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaySize:
    replays: int
    posts: int = 200
    last: int = 50


REPLAY_FULL = ReplaySize(replays=100)
REPLAY_QUICK = ReplaySize(replays=20)
# Every platform's arms under the strategist's defaults: X and Discord 24 arms each, Telegram 36. The drift is
# replayed on the largest.
PLATFORMS = ("x", "discord", "telegram")
DRIFT_PLATFORM = "telegram"
# The tuning default, 7 days, at Telegram's 4 default slots a day.
HALF_LIFE_POSTS = 28
DRIFT_AT = 100
# After the drift the audience reads in the morning what it read in the evening, and the other way round.
DRIFT_SWAP = {"morning": "evening", "evening": "morning"}


@dataclass(frozen=True)
class ArmSpace:
    arms: list[Any]  # content.agents.strategist.Arm
    means: np.ndarray  # expected engagement rate per arm, before the drift
    drifted: np.ndarray  # after it


def arm_space(platform: str) -> ArmSpace:
    """The strategist's Telegram arms with its default slots and quiet hours and the creation agent's tone
    presets, and each arm's expected engagement rate in the simulated audience (at the first hour of its time
    of day), before and after the drift."""
    from apps.content import limits
    from apps.content.agents.creation import ContentCreationAgent
    from apps.content.agents.strategist import (
        PLATFORM_FORMATS,
        Arm,
        ContentStrategistAgent,
        buckets_with_slots,
    )
    from apps.integrations import audience

    slots = ContentStrategistAgent.default_parameters["slots"][platform]
    buckets = buckets_with_slots(slots, limits.quiet_hours(""))
    tones: dict[str, dict[str, Any]] = ContentCreationAgent.default_parameters["tones"]
    arms = [
        Arm(format=f, bucket=b, tone=t)
        for f, b, t in itertools.product(sorted(PLATFORM_FORMATS[platform]), buckets, sorted(tones))
    ]

    def expected(arm: Any, bucket: str) -> float:
        return audience.arm_expected_rate(
            platform=platform, format=arm.format, bucket=bucket, tone=tones[arm.tone]
        )

    return ArmSpace(
        arms=arms,
        means=np.array([expected(arm, arm.bucket) for arm in arms]),
        drifted=np.array([expected(arm, DRIFT_SWAP.get(arm.bucket, arm.bucket)) for arm in arms]),
    )


@dataclass(frozen=True)
class Replay:
    regret: float
    regret_late: float  # over the posts from DRIFT_AT on
    top_last: int  # the arm chosen most over the last ``last`` posts


def replay(
    space: ArmSpace,
    size: ReplaySize,
    *,
    policy: str,
    seed: int,
    drift: bool = False,
    min_share: float = 0.01,
    half_life: float | None = None,
    factored: bool = True,
) -> Replay:
    """One replay of ``size.posts`` posts: ``policy`` is ``round_robin`` or ``thompson``; the noise of every
    post is the audience's own (``audience.observed_rate``), seeded per replay so both policies meet the
    same luck."""
    from apps.integrations import audience
    from apps.learning.bandit import ThompsonPolicy

    noise = random.Random(seed)
    k = len(space.arms)
    order = list(range(k))
    random.Random(seed + 1).shuffle(order)
    arms = space.arms
    bandit = ThompsonPolicy(
        list(range(k)),
        min_share=min_share,
        half_life=half_life,
        # As the strategy-tuning agent does: an arm's prior is what its format, time of day and tone predict.
        parts=(lambda i: (arms[i].format, arms[i].bucket, arms[i].tone)) if factored else None,
        seed=seed,
    )
    regret = regret_late = 0.0
    chosen: list[int] = []
    for post in range(size.posts):
        means = space.drifted if drift and post >= DRIFT_AT else space.means
        arm = order[post % k] if policy == "round_robin" else bandit.choose()
        value = audience.observed_rate(float(means[arm]), noise)
        if policy != "round_robin":
            bandit.update(arm, value)
        loss = float(means.max() - means[arm])
        regret += loss
        if post >= DRIFT_AT:
            regret_late += loss
        chosen.append(arm)
    top = Counter(chosen[-size.last :]).most_common(1)[0][0]
    return Replay(regret=regret, regret_late=regret_late, top_last=top)


def run_bandit(size: ReplaySize) -> None:
    for platform in PLATFORMS:
        run_bandit_platform(platform, size, drift=platform == DRIFT_PLATFORM)


def run_bandit_platform(platform: str, size: ReplaySize, *, drift: bool) -> None:
    space = arm_space(platform)
    k = len(space.arms)
    best = int(space.means.argmax())
    near = set(np.flatnonzero(space.means >= 0.95 * space.means.max()).tolist())
    spread = space.means / space.means.mean() - 1
    print(
        f"\n2. Bandit replay: {k} {platform} arms (format x time of day x tone preset), expected engagement "
        f"{space.means.min():.2%} to {space.means.max():.2%} (best {space.arms[best].key}; "
        f"{spread.min():+.0%} to {spread.max():+.0%} around the mean; {len(near)} arm(s) within 5% of the best), "
        f"log-normal noise per post; {size.posts} posts x {size.replays} replays:"
    )

    def runs(policy: str, **kwargs: Any) -> list[Replay]:
        return [replay(space, size, policy=policy, seed=1000 + r, **kwargs) for r in range(size.replays)]

    with stopwatch() as took:
        robin = runs("round_robin")
        thompson = runs("thompson")
        pure = runs("thompson", min_share=0.0)
        independent = runs("thompson", factored=False)
    base = statistics.mean(r.regret for r in robin)
    rows = []
    for label, results in (
        ("round-robin", robin),
        ("Thompson, factored priors, every arm >= 1% (the defaults)", thompson),
        ("the same without the 1% floor", pure),
        ("Thompson, independent arms, every arm >= 1%", independent),
    ):
        regret = statistics.mean(r.regret for r in results)
        found = sum(r.top_last == best for r in results) / len(results)
        close = sum(r.top_last in near for r in results) / len(results)
        rows.append(
            [
                label,
                f"{regret:.3f}",
                f"{regret / base:.0%}",
                "-" if label == "round-robin" else f"{found:.0%} / {close:.0%}",
            ]
        )
    table(
        [
            "policy",
            "mean regret",
            "of round-robin",
            f"most played over the last {size.last} posts is the best / within 5%",
        ],
        rows,
    )
    ratio = statistics.mean(r.regret for r in thompson) / base
    print(
        f"  regret is summed engagement rate lost over {size.posts} posts (0.01 = one post at 1 point lower); "
        f"goal <= 50% of round-robin: {ratio:.0%} ({'met' if ratio <= 0.5 else 'NOT met'}; keeping every arm at "
        f">= 1% alone costs {min(1.0, 0.01 * k):.0%} of round-robin's regret); ({human(took[0])})"
    )

    if not drift:
        return
    drifted_best = space.arms[int(space.drifted.argmax())].key
    print(
        f"\n   a drifting audience: after post {DRIFT_AT} the morning and the evening swap factors "
        f"(best arm then {drifted_best}):"
    )
    with stopwatch() as took:
        after_drift = {
            "round-robin": runs("round_robin", drift=True),
            "Thompson, no decay": runs("thompson", drift=True),
            f"Thompson, half-life {HALF_LIFE_POSTS} posts": runs(
                "thompson", drift=True, half_life=HALF_LIFE_POSTS
            ),
        }
    late_base = statistics.mean(r.regret_late for r in after_drift["round-robin"])
    drifted_top = int(space.drifted.argmax())
    rows = []
    for label, results in after_drift.items():
        late = statistics.mean(r.regret_late for r in results)
        rows.append(
            [
                label,
                f"{statistics.mean(r.regret for r in results):.3f}",
                f"{late:.3f}",
                f"{late / late_base:.0%}",
                "-"
                if label == "round-robin"
                else f"{sum(r.top_last == drifted_top for r in results) / len(results):.0%}",
            ]
        )
    table(
        [
            "policy",
            "regret, all posts",
            f"after post {DRIFT_AT}",
            "of round-robin",
            "most played at the end is the new best",
        ],
        rows,
    )
    print(f"  ({human(took[0])})")


# --- 3. Timing: every running test's results ------------------------------------------------------------------


@dataclass(frozen=True)
class TimingSize:
    tests: int
    exposures: int


TIMING_FULL = TimingSize(tests=100, exposures=1_000_000)
TIMING_QUICK = TimingSize(tests=100, exposures=100_000)
METRIC_RATES = {"click": 0.08, "checkout": 0.03, "conversion": 0.015}
PRICES = (2_900, 9_900)  # minor units
UNEXPOSED = 0.05
WITH_EFFECT = 0.2


def insert_tests(*, size: TimingSize, now: dt.datetime, seed: int = 3) -> dict[str, int]:
    """The running tests, their variants, assignments and outcome rows (ids from 1); returns rows per table."""
    from apps.experiments.metrics import METRICS
    from apps.experiments.models import ABTest, ABTestVariant, Assignment, Outcome
    from apps.integrations.audience import NOISE_SIGMA

    rng = np.random.default_rng(seed)
    started = now - dt.timedelta(days=7)
    names = list(METRICS)
    tests: list[ABTest] = []
    variants: list[ABTestVariant] = []
    for i in range(size.tests):
        subject = ABTest.Subject.POST if i % 2 == 0 else ABTest.Subject.OFFER
        primary = "engagement_rate" if subject == ABTest.Subject.POST else "click"
        tests.append(
            ABTest(
                id=i + 1,
                name=f"Bench test {i + 1}",
                slug=f"bench-{i + 1}",
                subject=subject,
                metric=primary,
                secondary_metrics=[m for m in names if m != primary],
                status=ABTest.Status.RUNNING,
                started_at=started,
                horizon_days=14,
                min_sample_size=100,
            )
        )
        for key in "ABC"[: 3 if i % 3 == 2 else 2]:
            variants.append(
                ABTestVariant(
                    id=len(variants) + 1,
                    test_id=i + 1,
                    key=key,
                    name=f"Variant {key}",
                    weight=1,
                    is_control=key == "A",
                )
            )
    ABTest.objects.bulk_create(tests)
    ABTestVariant.objects.bulk_create(variants)
    per_test = [[v.id for v in variants if v.test_id == t.id] for t in tests]
    # The treatment (the test's last variant) of a fifth of the tests is better by 3% to 15% on every metric.
    lift = np.where(rng.random(size.tests) < WITH_EFFECT, rng.uniform(0.03, 0.15, size.tests), 0.0)

    # Units per test: log-normal shares of the total exposures, then assignments to variants with equal weights.
    shares = rng.lognormal(0, 0.6, size.tests)
    exposed_per_test = np.floor(shares / shares.sum() * size.exposures).astype(np.int64)
    exposed_per_test[: size.exposures - exposed_per_test.sum()] += 1
    assigned_per_test = exposed_per_test + np.ceil(exposed_per_test * UNEXPOSED).astype(np.int64)
    test_of = np.repeat(np.arange(size.tests), assigned_per_test)
    count = len(test_of)
    slot = (rng.random(count) * np.array([len(per_test[t]) for t in test_of])).astype(np.int64)
    variant_table = np.zeros((size.tests, 3), dtype=np.int64)
    for t, test_variants in enumerate(per_test):
        variant_table[t, : len(test_variants)] = test_variants
    variant_of = variant_table[test_of, slot]
    is_treated = slot == np.array([len(per_test[t]) - 1 for t in test_of])
    factor = 1.0 + lift[test_of] * is_treated
    # The exposed ones are the first of each test's block (assignment order means nothing here).
    first = np.repeat(np.cumsum(assigned_per_test) - assigned_per_test, assigned_per_test)
    exposed = (np.arange(count) - first) < exposed_per_test[test_of]

    span = 7 * 86400
    origin = np.datetime64(now.astimezone(dt.UTC).replace(tzinfo=None), "s")
    exposed_age = rng.integers(600, span, count)
    assigned_at = db_datetimes(origin - (exposed_age + 300).astype("timedelta64[s]"))
    exposed_at = db_datetimes(origin - exposed_age.astype("timedelta64[s]"))
    ids = np.arange(1, count + 1)
    rows = {
        "tests": len(tests),
        "variants": len(variants),
    }
    empty = json.dumps({})
    rows["assignments"] = insert_rows(
        Assignment,
        ("id", "test", "variant", "subject_key", "assigned_at", "exposed_at", "pre_values"),
        zip(
            ids.tolist(),
            (test_of + 1).tolist(),
            variant_of.tolist(),
            [f"unit:{i}" for i in range(count)],
            assigned_at,
            [when if shown else None for when, shown in zip(exposed_at, exposed.tolist(), strict=True)],
            itertools.repeat(empty),
            strict=False,
        ),
    )

    # Outcomes of the exposed units only.
    units = np.flatnonzero(exposed)
    recorded = db_datetimes(origin - (exposed_age[units] - 300).astype("timedelta64[s]"))
    columns: list[tuple[np.ndarray, str, np.ndarray, np.ndarray | None, list[str]]] = []
    # Engagement rate for every unit: the pre-period value is the mean rate of posts like it (one of a few
    # levels), which explains much of the spread, as CUPED expects.
    pre = rng.choice(np.array([0.03, 0.045, 0.05, 0.06, 0.08]), size=len(units))
    engagement = pre * factor[units] * np.exp(rng.normal(-(NOISE_SIGMA**2) / 2, NOISE_SIGMA, len(units)))
    columns.append((units, "engagement_rate", engagement, pre, recorded))
    converted = np.zeros(len(units), dtype=bool)
    for metric, base in METRIC_RATES.items():
        hit = rng.random(len(units)) < base * factor[units]
        columns.append(
            (units[hit], metric, np.ones(int(hit.sum())), None, [recorded[j] for j in np.flatnonzero(hit)])
        )
        if metric == "conversion":
            converted = hit
    payers = np.flatnonzero(converted)
    columns.append(
        (
            units[payers],
            "revenue",
            rng.choice(np.array(PRICES, dtype=float), len(payers)),
            None,
            [recorded[j] for j in payers],
        )
    )
    next_id = itertools.count(1)
    rows["outcomes"] = 0
    for who, metric, values, pre_values, when in columns:
        rows["outcomes"] += insert_rows(
            Outcome,
            ("id", "assignment", "test", "variant", "metric", "value", "pre_value", "recorded_at"),
            zip(
                (next(next_id) for _ in range(len(who))),
                (who + 1).tolist(),
                (test_of[who] + 1).tolist(),
                variant_of[who].tolist(),
                itertools.repeat(metric),
                values.tolist(),
                pre_values.tolist() if pre_values is not None else itertools.repeat(None),
                when,
                strict=False,
            ),
        )
    reset_sequences(ABTest, ABTestVariant, Assignment, Outcome)
    return rows


def plain_sums(test_ids: Sequence[int], *, full: bool) -> tuple[list[Any], list[Any]]:
    """The outcome sums by hand: one GROUP BY test, variant, metric with COUNT, SUM and SUM of squares (and,
    ``full``, the pre-period sums and a second GROUP BY for the exposures per variant, which is everything the
    selector reads). Returns (outcome rows, exposure rows)."""
    from django.db import connection

    marks = ", ".join(["%s"] * len(test_ids))
    pre = (
        ", COUNT(pre_value), SUM(pre_value), SUM(pre_value * pre_value), SUM(value * pre_value), "
        "SUM(CASE WHEN pre_value IS NULL THEN value ELSE 0 END)"
        if full
        else ""
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT test_id, variant_id, metric, COUNT(*), SUM(value), SUM(value * value){pre} "  # noqa: S608
            f"FROM experiment_outcomes WHERE test_id IN ({marks}) GROUP BY test_id, variant_id, metric",
            list(test_ids),
        )
        outcomes = cursor.fetchall()
        exposures: list[Any] = []
        if full:
            cursor.execute(
                "SELECT variant_id, COUNT(*) FROM assignments "  # noqa: S608
                f"WHERE test_id IN ({marks}) AND exposed_at IS NOT NULL GROUP BY variant_id",
                list(test_ids),
            )
            exposures = cursor.fetchall()
    return outcomes, exposures


def run_timing(size: TimingSize, vendor: str) -> None:
    from django.db import transaction

    from apps.experiments.models import ABTest
    from apps.experiments.selectors import variant_metric_sums
    from apps.experiments.services import ab_test_evaluate, ab_tests_evaluate

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with stopwatch() as took, bulk_load():
        rows = insert_tests(size=size, now=now)
    method = "COPY" if vendor == "postgresql" else "executemany"
    total = sum(rows.values())
    print(
        f"\n3. Every running test's results: {rows['tests']} tests ({rows['variants']} variants, 5 metrics each), "
        f"{size.exposures:,} exposures"
    )
    line(
        f"{rows['assignments']:,} assignments, {rows['outcomes']:,} outcome rows",
        human(took[0]),
        f"{total:,} rows, raw {method}, {total / took[0]:,.0f} rows/s",
    )
    with stopwatch() as took:
        analyzed = analyze()
    if analyzed:
        line("ANALYZE (planner statistics, as autovacuum would gather)", human(took[0]))

    tests = list(ABTest.objects.filter(status=ABTest.Status.RUNNING).order_by("pk"))
    test_ids = [t.pk for t in tests]

    # The same figures from both, or the comparison means nothing.
    sums = variant_metric_sums(test_ids=test_ids)
    by_hand, exposures = plain_sums(test_ids, full=True)
    mine = {
        (test_id, v.variant_id, metric): m
        for test_id, test_sums in sums.items()
        for v in test_sums.variants
        for metric, m in v.metrics.items()
    }
    assert len(mine) == len(by_hand), (len(mine), len(by_hand))
    for test_id, variant_id, metric, n, total_, squares, *_ in by_hand:
        m = mine[(test_id, variant_id, metric)]
        assert m.n == n, (m, n)
        assert math.isclose(m.total, total_), (m, total_)
        assert math.isclose(m.total_squares, squares), (m, squares)
    exposed = {v.variant_id: v.exposures for s in sums.values() for v in s.variants}
    assert exposed == dict(exposures), "the exposures differ"
    assert sum(exposed.values()) == size.exposures

    def selector() -> object:
        return variant_metric_sums(test_ids=test_ids)

    def statistics_only() -> object:
        return [ab_test_evaluate(test=t, sums=sums[t.pk], now=now) for t in tests]

    def evaluate_all() -> list[Any]:
        with transaction.atomic():
            written = ab_tests_evaluate(now=now)
            transaction.set_rollback(True)
        return written

    def plain() -> object:
        return plain_sums(test_ids, full=False)

    def plain_full() -> object:
        return plain_sums(test_ids, full=True)

    evaluations = evaluate_all()
    assert len(evaluations) == len(tests), "ab_tests_evaluate() left tests out"
    decisions = Counter(e.decision or "undecided" for e in evaluations)
    print(
        f"  ab_tests_evaluate() evaluates all {len(evaluations)} (decisions: "
        + ", ".join(f"{n} {d}" for d, n in sorted(decisions.items()))
        + f"); the selector's sums match the plain aggregate (checked). Median of {REPEAT}, run in turn:"
    )
    results = interleaved(
        {
            "plain": plain,
            "plain_full": plain_full,
            "selector": selector,
            "statistics": statistics_only,
            "evaluate": evaluate_all,
        },
        repeat=REPEAT,
    )
    base = statistics.median(results["plain"])
    labels = {
        "plain": "plain SQL: GROUP BY test, variant, metric (COUNT, SUM, SUM of squares)",
        "plain_full": "plain SQL: the same with the pre-period sums, and the exposures",
        "selector": "variant_metric_sums(test_ids=...)",
        "statistics": f"ab_test_evaluate() x {len(tests)} over the sums (no SQL)",
        "evaluate": "ab_tests_evaluate(now=...): read, statistics, writes (rolled back)",
    }
    table(
        ["", "median", "best", "of the plain GROUP BY"],
        [
            [labels[name], human(statistics.median(s)), human(min(s)), times(statistics.median(s) / base)]
            for name, s in results.items()
        ],
    )


def main() -> None:
    args = parse_args(
        "Experiments: A/A false positives with daily peeking, bandit regret, and the time to evaluate every "
        "running test against a plain SQL aggregate."
    )
    with bench_database("experiments", keep=args.keep) as db:
        migrate_seconds = setup_django(db)
        print_header(
            "Experiments: peeking, bandit regret, evaluating every running test", db, quick=args.quick
        )
        print(f"({human(migrate_seconds)} to migrate the empty database)")
        started = time.perf_counter()
        run_peeking(PEEKING_QUICK if args.quick else PEEKING_FULL)
        run_bandit(REPLAY_QUICK if args.quick else REPLAY_FULL)
        run_timing(TIMING_QUICK if args.quick else TIMING_FULL, db.vendor)
        print(f"\n({human(time.perf_counter() - started)} in all)")


if __name__ == "__main__":
    main()
