"""Writes to A/B tests: assignment, exposures and outcomes, the evaluation that decides a test, and the
queue of hypotheses that starts the next one.

The bookkeeping. A subject (a post's plan, a community member) is assigned a variant when content or billing
asks for one (``assignment_for``); it is exposed when that variant is actually shown (``exposure_record``:
the post published, the offer sent), once; what came of it is an Outcome per metric
(``outcome_record``), kept only for exposed assignments so that every unit counted was really shown its
variant. A subject key is in at most one test per subject at a time, so the key and the subject find the
assignment: the latest one.

The evaluation (``ab_test_evaluate``, pure, over the sums of ``selectors.variant_metric_sums``):

1. Sample-ratio mismatch over the exposures and the variants' weights: p < ``SRM_THRESHOLD`` means the
   split itself is broken (a bug in assignment or exposure), so nothing it shows is trusted and the test
   ends as ``broken``, without a winner.
2. Per metric and treatment against the control: the sequential test (an always-valid interval, so the
   daily look does not inflate false positives) on the relative effect, with CUPED where the metric has
   pre-period values, and the Bayesian chance to win.
3. The p-values of all metrics and treatments adjusted together (Holm or Benjamini-Hochberg, the test's
   ``correction``); a comparison is significant when its adjusted p < alpha.
4. Nothing is decided while a variant has fewer than ``min_sample_size`` units on the primary metric. Then
   the treatment with the largest significant gain on the primary metric wins, unless a secondary metric
   (a guardrail) is significantly worse for it; when every treatment is significantly worse on the primary
   metric, the control wins; when every treatment is out (worse, or stopped by a guardrail) without one
   being better, there is no winner. At the horizon (``started_at + horizon_days``) an undecided test ends
   as ``no_difference``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from apps.agents.models import PerformanceSnapshot
from apps.experiments.metrics import METRICS, Metric, metric_get
from apps.experiments.models import ABTest, ABTestVariant, Assignment, Hypothesis, Outcome
from apps.experiments.selectors import MetricSums, TestSums, VariantSums, variant_metric_sums
from apps.experiments.stats import (
    CupedSums,
    Sample,
    adjust_p_values,
    bayesian_test,
    cuped_samples,
    cuped_theta,
    sequential_test,
    srm_p_value,
)

logger = logging.getLogger(__name__)

Decision = ABTest.Decision

# gbstats' threshold: below it the observed split is too unlikely under the configured weights to be chance.
SRM_THRESHOLD = 0.001


def ab_test_pause(*, test_ids: Iterable[int]) -> int:
    """Pause running tests (no new assignments); returns how many changed."""
    return ABTest.objects.filter(pk__in=list(test_ids), status=ABTest.Status.RUNNING).update(
        status=ABTest.Status.PAUSED, updated_at=timezone.now()
    )


def ab_test_resume(*, test_ids: Iterable[int]) -> int:
    """Resume paused tests; returns how many changed."""
    return ABTest.objects.filter(pk__in=list(test_ids), status=ABTest.Status.PAUSED).update(
        status=ABTest.Status.RUNNING, updated_at=timezone.now()
    )


def _bucket(test_slug: str, subject_key: str, total_weight: int) -> int:
    """A point in [0, total_weight) fixed by the test and the subject, the same in every process."""
    digest = hashlib.sha256(f"{test_slug}:{subject_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total_weight


def assignment_for(*, subject: str, subject_key: str) -> ABTestVariant | None:
    """The variant of the running test on ``subject`` ("post", "offer") that ``subject_key`` sees, or None
    when no test on it is running (or its variants all weigh nothing).

    The choice is a weighted draw by a hash of the test's slug and the key, so it is the same wherever and
    however often it is asked; the first answer is stored as the subject's Assignment and stays its answer
    even if the weights change later. Two callers racing to assign the same key meet at the unique
    constraint and both get the stored row. With several tests running on one subject, the one started
    first is used, so a subject is never in two tests at once.
    """
    test = (
        ABTest.objects.filter(subject=subject, status=ABTest.Status.RUNNING)
        .order_by(F("started_at").asc(nulls_last=True), "pk")
        .first()
    )
    if test is None:
        return None
    existing = Assignment.objects.filter(test=test, subject_key=subject_key).select_related("variant").first()
    if existing is not None:
        return existing.variant
    variants = [v for v in test.variants.order_by("key") if v.weight > 0]
    if not variants:
        return None
    point = _bucket(test.slug, subject_key, sum(v.weight for v in variants))
    chosen = variants[-1]
    for variant in variants:
        if point < variant.weight:
            chosen = variant
            break
        point -= variant.weight
    assignment, _ = Assignment.objects.select_related("variant").get_or_create(
        test=test, subject_key=subject_key, defaults={"variant": chosen}
    )
    return assignment.variant


# --- exposures and outcomes --------------------------------------------------------------------------------


def _latest_assignment(*, subject: str, subject_key: str) -> Assignment | None:
    return (
        Assignment.objects.filter(test__subject=subject, subject_key=subject_key)
        .order_by("-assigned_at", "-pk")
        .only("pk", "test_id", "variant_id", "exposed_at", "pre_values")
        .first()
    )


def exposure_record(
    *, subject: str, subject_key: str, at: dt.datetime, pre_values: Mapping[str, float] | None = None
) -> bool:
    """Mark the subject's assignment exposed at ``at`` (its variant was shown), with the unit's pre-period
    values per metric for CUPED. Once: True when this call did it, False when it was exposed already or the
    key has no assignment. ValueError for a metric the registry does not know."""
    pre = {name: float(value) for name, value in (pre_values or {}).items()}
    for name in pre:
        metric_get(name)
    assignment = _latest_assignment(subject=subject, subject_key=subject_key)
    if assignment is None:
        return False
    changes: dict[str, Any] = {"exposed_at": at}
    if pre:
        changes["pre_values"] = pre
    return bool(Assignment.objects.filter(pk=assignment.pk, exposed_at__isnull=True).update(**changes))


def _pre_value(metric: Metric, pre_values: Any) -> float | None:
    if not metric.has_pre or not isinstance(pre_values, dict):
        return None
    value = pre_values.get(metric.name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def outcome_record(
    *, subject: str, subject_key: str, metric: str, value: float, at: dt.datetime, accumulate: bool = False
) -> bool:
    """Record what the subject's exposed assignment produced on ``metric``: replace the value (a rate read
    again, a click) or, with ``accumulate``, add to it (revenue, one payment after another). False (nothing
    written) when the key has no assignment or it was never exposed. ValueError for an unknown metric."""
    definition = metric_get(metric)
    if not accumulate:
        return outcomes_record(subject=subject, metric=metric, values={subject_key: value}, at=at) > 0
    assignment = _latest_assignment(subject=subject, subject_key=subject_key)
    if assignment is None or assignment.exposed_at is None:
        return False
    with transaction.atomic():
        outcome, created = Outcome.objects.get_or_create(
            assignment_id=assignment.pk,
            metric=metric,
            defaults={
                "test_id": assignment.test_id,
                "variant_id": assignment.variant_id,
                "value": float(value),
                "pre_value": _pre_value(definition, assignment.pre_values),
                "recorded_at": at,
            },
        )
        if not created:
            Outcome.objects.filter(pk=outcome.pk).update(value=F("value") + float(value), recorded_at=at)
    return True


def outcomes_record(*, subject: str, metric: str, values: Mapping[str, float], at: dt.datetime) -> int:
    """``outcome_record`` for many subject keys at once (a run's engagement rates): two queries however
    many keys, each outcome replaced. Returns how many were recorded (keys without an exposed assignment
    are left out)."""
    definition = metric_get(metric)
    if not values:
        return 0
    assignments = (
        Assignment.objects.filter(test__subject=subject, subject_key__in=list(values))
        .order_by("subject_key", "-assigned_at", "-pk")
        .values("pk", "subject_key", "test_id", "variant_id", "exposed_at", "pre_values")
    )
    latest: dict[str, Mapping[str, Any]] = {}
    for row in assignments:
        latest.setdefault(row["subject_key"], row)
    rows = [
        Outcome(
            assignment_id=row["pk"],
            test_id=row["test_id"],
            variant_id=row["variant_id"],
            metric=metric,
            value=float(values[key]),
            pre_value=_pre_value(definition, row["pre_values"]),
            recorded_at=at,
        )
        for key, row in latest.items()
        if row["exposed_at"] is not None
    ]
    if rows:
        Outcome.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["assignment", "metric"],
            update_fields=["value", "pre_value", "recorded_at"],
        )
    return len(rows)


# --- evaluation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One treatment against the control on one metric (relative effect)."""

    metric: str
    variant_key: str
    effect: float
    ci: tuple[float, float]
    p_value: float
    adjusted_p_value: float
    chance_to_win: float
    significant: bool
    cuped: bool


@dataclass(frozen=True)
class Evaluation:
    test_id: int
    slug: str
    evaluated_at: dt.datetime
    srm_p_value: float
    exposures: dict[str, int]
    # Per metric, per variant key: units counted (``n``) and the raw mean.
    variants: dict[str, dict[str, tuple[int, float]]]
    comparisons: list[Comparison]
    decision: str
    winner_id: int | None
    winner_key: str | None
    reason: str

    @property
    def result(self) -> dict[str, Any]:
        """The test's ``result`` JSON."""
        metrics: dict[str, Any] = {}
        for metric, variants in self.variants.items():
            metrics[metric] = {
                "variants": {key: {"n": n, "mean": mean} for key, (n, mean) in variants.items()},
                "comparisons": {
                    c.variant_key: {
                        "effect": c.effect,
                        "ci": [c.ci[0], c.ci[1]],
                        "p_value": c.p_value,
                        "adjusted_p_value": c.adjusted_p_value,
                        "chance_to_win": c.chance_to_win,
                        "significant": c.significant,
                        "cuped": c.cuped,
                    }
                    for c in self.comparisons
                    if c.metric == metric
                },
            }
        return {
            "evaluated_at": self.evaluated_at.isoformat(),
            "srm_p_value": self.srm_p_value,
            "exposures": dict(self.exposures),
            "metrics": metrics,
            "decision": self.decision,
            "reason": self.reason,
        }


def _metric_samples(metric: Metric, variants: list[VariantSums]) -> tuple[list[Sample], bool]:
    """Each variant's sample of ``metric`` and whether CUPED adjusted them. Units: the exposures where a
    missing outcome is a 0, else the outcome rows."""
    rows = [v.metrics.get(metric.name, MetricSums()) for v in variants]
    if metric.kind == "proportion":
        return [
            Sample.proportion(n=v.exposures, conversions=r.total) for v, r in zip(variants, rows, strict=True)
        ], False
    units = [v.exposures if metric.missing == "zero" else r.n for v, r in zip(variants, rows, strict=True)]
    paired = sum(r.pre_n for r in rows)
    if metric.has_pre and paired:
        # A unit without a pre-period value gets the pooled mean of those known: the same for every arm,
        # so the adjustment stays unbiased, and the units stay in the sample.
        fill = sum(r.pre_total for r in rows) / paired
        cuped = [
            CupedSums(
                n=n,
                total=r.total,
                total_squares=r.total_squares,
                pre_total=r.pre_total + (n - r.pre_n) * fill,
                pre_total_squares=r.pre_total_squares + (n - r.pre_n) * fill * fill,
                cross_total=r.cross_total + r.unpaired_total * fill,
            )
            for n, r in zip(units, rows, strict=True)
        ]
        theta = cuped_theta(cuped)
        return cuped_samples(cuped, theta=theta), theta != 0
    return [
        Sample.mean(n=n, total=r.total, total_squares=r.total_squares)
        for n, r in zip(units, rows, strict=True)
    ], False


def _percent(value: float) -> str:
    return f"{value:+.1%}"


def ab_test_evaluate(*, test: ABTest, sums: TestSums, now: dt.datetime) -> Evaluation:
    """The test's statistics and decision from its sums (no database access; see the module's docstring)."""
    variants = sums.variants
    exposures = {v.key: v.exposures for v in variants}
    srm = srm_p_value([v.exposures for v in variants], [v.weight for v in variants]) if variants else 1.0
    control = next((v for v in variants if v.is_control), variants[0] if variants else None)
    treatments = [v for v in variants if v is not control]
    notes: list[str] = []
    known = [m for m in test.metrics if m in METRICS]
    unknown = [m for m in test.metrics if m not in METRICS]
    if unknown:
        notes.append(f"unknown metrics ignored: {', '.join(unknown)}")

    figures: dict[str, dict[str, tuple[int, float]]] = {}
    raw: list[tuple[str, str, float, tuple[float, float], float, float, bool]] = []
    for name in known:
        samples, cuped = _metric_samples(METRICS[name], variants)
        by_key = dict(zip([v.key for v in variants], samples, strict=True))
        figures[name] = {key: (s.n, s.unadjusted_average) for key, s in by_key.items()}
        if control is None:
            continue
        base = by_key[control.key]
        for variant in treatments:
            sample = by_key[variant.key]
            sequential = sequential_test(
                base, sample, relative=True, alpha=test.alpha, tuning=test.sequential_tuning
            )
            bayesian = bayesian_test(base, sample, relative=True, alpha=test.alpha)
            raw.append(
                (
                    name,
                    variant.key,
                    sequential.effect,
                    sequential.ci,
                    sequential.p_value,
                    bayesian.chance_to_win,
                    cuped,
                )
            )
    method: Literal["holm", "bh"] = "bh" if test.correction == ABTest.Correction.BH else "holm"
    adjusted = adjust_p_values([r[4] for r in raw], method=method)
    comparisons = [
        Comparison(
            metric=name,
            variant_key=key,
            effect=effect,
            ci=ci,
            p_value=p,
            adjusted_p_value=adj,
            chance_to_win=chance,
            significant=adj < test.alpha,
            cuped=cuped,
        )
        for (name, key, effect, ci, p, chance, cuped), adj in zip(raw, adjusted, strict=True)
    ]

    decision, winner, reason = _decide(
        test=test,
        srm=srm,
        control=control,
        treatments=treatments,
        figures=figures,
        comparisons=comparisons,
        now=now,
    )
    return Evaluation(
        test_id=test.pk,
        slug=test.slug,
        evaluated_at=now,
        srm_p_value=srm,
        exposures=exposures,
        variants=figures,
        comparisons=comparisons,
        decision=decision,
        winner_id=winner.variant_id if winner is not None else None,
        winner_key=winner.key if winner is not None else None,
        reason="; ".join([reason, *notes]),
    )


def _decide(
    *,
    test: ABTest,
    srm: float,
    control: VariantSums | None,
    treatments: list[VariantSums],
    figures: dict[str, dict[str, tuple[int, float]]],
    comparisons: list[Comparison],
    now: dt.datetime,
) -> tuple[str, VariantSums | None, str]:
    if srm < SRM_THRESHOLD:
        split = ", ".join(
            f"{v.key} {v.exposures} (weight {v.weight})"
            for v in [*([control] if control else []), *treatments]
        )
        return Decision.BROKEN, None, f"sample-ratio mismatch (p = {srm:.2g} < {SRM_THRESHOLD:g}): {split}"
    if control is None or not treatments or test.metric not in figures:
        return (
            Decision.NONE,
            None,
            "nothing to compare: the test needs a control, a treatment and a known metric",
        )
    horizon = test.started_at + dt.timedelta(days=test.horizon_days) if test.started_at else None
    at_horizon = horizon is not None and now >= horizon
    short = {key: n for key, (n, _) in figures[test.metric].items() if n < test.min_sample_size}
    if short:
        waiting = ", ".join(f"{key} {n}" for key, n in sorted(short.items()))
        if at_horizon:
            return (
                Decision.NO_DIFFERENCE,
                None,
                (
                    f"horizon of {test.horizon_days} days reached before {test.min_sample_size} units per variant "
                    f"on {test.metric} ({waiting})"
                ),
            )
        return (
            Decision.NONE,
            None,
            f"waiting for {test.min_sample_size} units per variant on {test.metric}: {waiting}",
        )

    primary = {c.variant_key: c for c in comparisons if c.metric == test.metric}
    guardrails = [c for c in comparisons if c.metric != test.metric and c.significant and c.effect < 0]
    blocked: list[str] = []
    for candidate in sorted(
        (c for c in primary.values() if c.significant and c.effect > 0), key=lambda c: -c.effect
    ):
        harms = [g for g in guardrails if g.variant_key == candidate.variant_key]
        if not harms:
            winner = next(v for v in treatments if v.key == candidate.variant_key)
            return (
                Decision.WINNER,
                winner,
                (
                    f"{winner.key} beats {control.key} on {test.metric} by {_percent(candidate.effect)} "
                    f"(adjusted p = {candidate.adjusted_p_value:.3g})"
                ),
            )
        blocked.append(
            f"{candidate.variant_key} gains {_percent(candidate.effect)} on {test.metric} but is worse on "
            + ", ".join(
                f"{g.metric} ({_percent(g.effect)}, adjusted p = {g.adjusted_p_value:.3g})" for g in harms
            )
        )
    worse = [c for c in primary.values() if c.significant and c.effect < 0]
    if len(worse) == len(treatments):
        return (
            Decision.WINNER,
            control,
            (
                f"control {control.key} wins: every treatment is worse on {test.metric} ("
                + ", ".join(f"{c.variant_key} {_percent(c.effect)}" for c in worse)
                + ")"
            ),
        )
    if blocked and len(blocked) + len(worse) == len(treatments):
        return Decision.NO_DIFFERENCE, None, "no winner: " + "; ".join(blocked)
    if at_horizon:
        note = f"; {'; '.join(blocked)}" if blocked else ""
        return (
            Decision.NO_DIFFERENCE,
            None,
            (f"horizon of {test.horizon_days} days reached with no significant gain on {test.metric}{note}"),
        )
    note = f"; {'; '.join(blocked)}" if blocked else ""
    return Decision.NONE, None, f"no significant result on {test.metric} yet{note}"


def ab_tests_evaluate(*, now: dt.datetime) -> list[Evaluation]:
    """Evaluate every running test (one read of the sums for all), store each result and end the decided
    ones (a conditional UPDATE from running, so a test paused meanwhile is left alone and not returned),
    and write the series the dashboard charts, at the minute of ``now``: ``experiment.exposures`` (scope
    ``test:<slug>|variant:<key>``, cumulative) and ``experiment.effect`` (scope
    ``test:<slug>|variant:<key>|metric:<m>``, the relative effect with its interval, chance to win and
    adjusted p). Returns the evaluations written."""
    tests = list(ABTest.objects.filter(status=ABTest.Status.RUNNING).order_by("pk"))
    sums = variant_metric_sums(test_ids=[t.pk for t in tests])
    captured_at = now.replace(second=0, microsecond=0)
    written: list[Evaluation] = []
    snapshots: list[PerformanceSnapshot] = []
    with transaction.atomic():
        for test in tests:
            evaluation = ab_test_evaluate(
                test=test, sums=sums.get(test.pk, TestSums(test_id=test.pk, variants=[])), now=now
            )
            changes: dict[str, Any] = {
                "result": evaluation.result,
                "srm_p_value": evaluation.srm_p_value,
                "evaluated_at": now,
                "updated_at": now,
            }
            if evaluation.decision:
                changes.update(
                    decision=evaluation.decision,
                    decided_at=now,
                    winner_id=evaluation.winner_id,
                    status=ABTest.Status.COMPLETED,
                    ended_at=now,
                )
            if not ABTest.objects.filter(pk=test.pk, status=ABTest.Status.RUNNING).update(**changes):
                continue
            written.append(evaluation)
            snapshots.extend(_snapshots(evaluation, captured_at))
        if snapshots:
            PerformanceSnapshot.objects.bulk_create(
                snapshots,
                update_conflicts=True,
                unique_fields=["metric", "scope", "captured_at"],
                update_fields=["value", "sample_size", "details"],
            )
    return written


def _snapshots(evaluation: Evaluation, captured_at: dt.datetime) -> list[PerformanceSnapshot]:
    """``experiment.exposures`` per variant (cumulative) and ``experiment.effect`` per treatment and metric."""
    prefix = f"test:{evaluation.slug}"
    rows = [
        PerformanceSnapshot(
            metric="experiment.exposures",
            scope=f"{prefix}|variant:{key}",
            value=float(n),
            sample_size=n,
            captured_at=captured_at,
            details={},
        )
        for key, n in evaluation.exposures.items()
    ]
    for c in evaluation.comparisons:
        rows.append(
            PerformanceSnapshot(
                metric="experiment.effect",
                scope=f"{prefix}|variant:{c.variant_key}|metric:{c.metric}",
                value=c.effect,
                sample_size=evaluation.variants[c.metric][c.variant_key][0],
                captured_at=captured_at,
                details={
                    "ci": [c.ci[0], c.ci[1]],
                    "chance_to_win": c.chance_to_win,
                    # Adjusted for the test's multiple comparisons: the figure its decision reads.
                    "p_value": c.adjusted_p_value,
                },
            )
        )
    return rows


# --- the hypothesis queue ----------------------------------------------------------------------------------


def hypothesis_problems(hypothesis: Hypothesis) -> list[str]:
    """Why ``hypothesis`` cannot become a test (empty when it can): at least two variants with distinct
    keys, exactly one control, whole non-negative weights with some traffic, and known metrics."""
    problems: list[str] = []
    variants = hypothesis.variants if isinstance(hypothesis.variants, list) else []
    if len(variants) < 2:
        problems.append("it needs at least two variants")
    if not all(isinstance(v, dict) for v in variants):
        return [*problems, "every variant must be an object"]
    keys = [v.get("key") for v in variants]
    if not all(isinstance(k, str) and 0 < len(k) <= 20 for k in keys):
        problems.append("every variant needs a key of 1 to 20 characters")
    elif len(set(keys)) != len(keys):
        problems.append("variant keys must differ")
    if sum(1 for v in variants if v.get("is_control") is True) != 1:
        problems.append("exactly one variant must be the control")
    weights = [v.get("weight", 1) for v in variants]
    if not all(isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= 32767 for w in weights):
        problems.append("weights must be whole numbers from 0")
    elif variants and sum(weights) == 0:
        problems.append("some variant must have a weight")
    if not all(isinstance(v.get("payload", {}), dict) for v in variants):
        problems.append("a variant's payload must be an object")
    secondary = hypothesis.secondary_metrics if isinstance(hypothesis.secondary_metrics, list) else [None]
    unknown = [str(m) for m in [hypothesis.metric, *secondary] if m not in METRICS]
    if unknown:
        problems.append(f"unknown metrics: {', '.join(unknown)} (known: {', '.join(sorted(METRICS))})")
    return problems


def _free_slug(base: str) -> str:
    taken = set(ABTest.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def hypothesis_start_next(*, subject: str, now: dt.datetime) -> ABTest | None:
    """When no test on ``subject`` is running, turn its first queued hypothesis (by position, then age) into
    a running test with its variants and return it. Invalid hypotheses on the way are skipped (and logged
    with why). None when a test is running or nothing valid is queued."""
    with transaction.atomic():
        if ABTest.objects.filter(subject=subject, status=ABTest.Status.RUNNING).exists():
            return None
        queue = Hypothesis.objects.filter(subject=subject, status=Hypothesis.Status.QUEUED).order_by(
            "position", "pk"
        )
        for hypothesis in queue:
            problems = hypothesis_problems(hypothesis)
            claimed = Hypothesis.objects.filter(pk=hypothesis.pk, status=Hypothesis.Status.QUEUED).update(
                status=Hypothesis.Status.SKIPPED if problems else Hypothesis.Status.STARTED, updated_at=now
            )
            if not claimed:
                continue
            if problems:
                logger.warning(
                    "hypothesis %s %r skipped: %s", hypothesis.pk, hypothesis.title, "; ".join(problems)
                )
                continue
            test = ABTest.objects.create(
                name=hypothesis.title,
                slug=_free_slug(f"{slugify(hypothesis.title)[:60] or 'test'}-h{hypothesis.pk}"),
                subject=subject,
                hypothesis=hypothesis.statement,
                metric=hypothesis.metric,
                secondary_metrics=list(hypothesis.secondary_metrics),
                status=ABTest.Status.RUNNING,
                min_sample_size=hypothesis.min_sample_size,
                horizon_days=hypothesis.horizon_days,
                started_at=now,
            )
            ABTestVariant.objects.bulk_create(
                ABTestVariant(
                    test=test,
                    key=v["key"],
                    name=str(v.get("name") or v["key"])[:120],
                    payload=v.get("payload", {}),
                    weight=v.get("weight", 1),
                    is_control=v.get("is_control") is True,
                )
                for v in hypothesis.variants
            )
            Hypothesis.objects.filter(pk=hypothesis.pk).update(test=test)
            logger.info("hypothesis %s %r started as test %s", hypothesis.pk, hypothesis.title, test.slug)
            return test
    return None
