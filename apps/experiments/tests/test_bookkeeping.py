"""Exposures and outcomes: an assignment is exposed once, outcomes count only for exposed assignments, revenue
accumulates, and the per-variant sums come out of SQL exactly, in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import astuple
from typing import Any

import pytest

from apps.experiments.factories import ABTestFactory, ABTestVariantFactory, AssignmentFactory
from apps.experiments.models import ABTest, ABTestVariant, Assignment, Outcome
from apps.experiments.selectors import MetricSums, variant_metric_sums
from apps.experiments.services import exposure_record, outcome_record, outcomes_record

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
LATER = T0 + dt.timedelta(hours=5)


def _test_with_variants(**fields: Any) -> tuple[ABTest, ABTestVariant, ABTestVariant]:
    test = ABTestFactory.create(**fields)
    return (
        test,
        ABTestVariantFactory.create(test=test, key="A", is_control=True),
        ABTestVariantFactory.create(test=test, key="B", is_control=False),
    )


def test_an_assignment_is_exposed_once() -> None:
    _, control, _ = _test_with_variants()
    assignment = AssignmentFactory.create(variant=control, subject_key="plan:7")

    first = exposure_record(subject="post", subject_key="plan:7", at=T0, pre_values={"engagement_rate": 0.03})
    before = Assignment.objects.filter(pk=assignment.pk).values().get()
    second = exposure_record(
        subject="post", subject_key="plan:7", at=LATER, pre_values={"engagement_rate": 0.9}
    )

    assert (first, second) == (True, False)
    assert Assignment.objects.filter(pk=assignment.pk).values().get() == before
    assert (before["exposed_at"], before["pre_values"]) == (T0, {"engagement_rate": 0.03})


def test_exposure_of_an_unknown_key_or_subject_changes_nothing() -> None:
    _, control, _ = _test_with_variants()
    AssignmentFactory.create(variant=control, subject_key="plan:7")

    assert exposure_record(subject="post", subject_key="plan:8", at=T0) is False
    assert exposure_record(subject="offer", subject_key="plan:7", at=T0) is False
    assert list(Assignment.objects.values_list("exposed_at", flat=True)) == [None]


def test_an_unknown_metric_is_refused() -> None:
    _, control, _ = _test_with_variants()
    AssignmentFactory.create(variant=control, subject_key="plan:7", exposed_at=T0)

    with pytest.raises(ValueError, match="unknown metric 'likes'"):
        outcome_record(subject="post", subject_key="plan:7", metric="likes", value=1.0, at=T0)
    with pytest.raises(ValueError, match="unknown metric 'likes'"):
        exposure_record(subject="post", subject_key="plan:7", at=T0, pre_values={"likes": 3.0})
    assert Outcome.objects.count() == 0


def test_the_latest_assignment_of_the_key_on_the_subject_is_the_one_exposed() -> None:
    _, old_variant, _ = _test_with_variants(status=ABTest.Status.COMPLETED)
    _, new_variant, _ = _test_with_variants()
    old = AssignmentFactory.create(variant=old_variant, subject_key="community_user:3")
    new = AssignmentFactory.create(variant=new_variant, subject_key="community_user:3")
    Assignment.objects.filter(pk=old.pk).update(assigned_at=T0)
    Assignment.objects.filter(pk=new.pk).update(assigned_at=LATER)

    assert exposure_record(subject="post", subject_key="community_user:3", at=LATER) is True

    assert dict(Assignment.objects.values_list("pk", "exposed_at")) == {old.pk: None, new.pk: LATER}


def test_an_outcome_counts_only_for_an_exposed_assignment() -> None:
    _, control, _ = _test_with_variants()
    AssignmentFactory.create(variant=control, subject_key="plan:1")

    assert (
        outcome_record(subject="post", subject_key="plan:1", metric="engagement_rate", value=0.05, at=T0)
        is False
    )
    assert (
        outcome_record(subject="post", subject_key="plan:2", metric="engagement_rate", value=0.05, at=T0)
        is False
    )
    assert Outcome.objects.count() == 0

    exposure_record(subject="post", subject_key="plan:1", at=T0, pre_values={"engagement_rate": 0.04})
    assert outcome_record(subject="post", subject_key="plan:1", metric="engagement_rate", value=0.05, at=T0)
    assert outcome_record(
        subject="post", subject_key="plan:1", metric="engagement_rate", value=0.07, at=LATER
    )

    outcome = Outcome.objects.get()
    assert (outcome.metric, outcome.value, outcome.pre_value, outcome.recorded_at, outcome.variant) == (
        "engagement_rate",
        0.07,
        0.04,
        LATER,
        control,
    )


def test_revenue_accumulates_and_a_metric_without_a_pre_period_keeps_none() -> None:
    test = ABTestFactory.create(subject=ABTest.Subject.OFFER, metric="revenue")
    variant = ABTestVariantFactory.create(test=test, key="A")
    AssignmentFactory.create(variant=variant, subject_key="community_user:5", exposed_at=T0)

    for amount in (1900.0, 1900.0, 500.0):
        assert outcome_record(
            subject="offer",
            subject_key="community_user:5",
            metric="revenue",
            value=amount,
            at=LATER,
            accumulate=True,
        )

    assert list(Outcome.objects.values_list("metric", "value", "pre_value")) == [("revenue", 4300.0, None)]


def test_many_outcomes_at_once_skip_the_unexposed() -> None:
    _, control, treatment = _test_with_variants()
    AssignmentFactory.create(
        variant=control, subject_key="plan:1", exposed_at=T0, pre_values={"engagement_rate": 0.02}
    )
    AssignmentFactory.create(variant=treatment, subject_key="plan:2", exposed_at=T0)
    AssignmentFactory.create(variant=treatment, subject_key="plan:3")

    recorded = outcomes_record(
        subject="post",
        metric="engagement_rate",
        values={"plan:1": 0.1, "plan:2": 0.2, "plan:3": 0.3, "plan:4": 0.4},
        at=T0,
    )

    assert recorded == 2
    assert sorted(Outcome.objects.values_list("assignment__subject_key", "value", "pre_value")) == [
        ("plan:1", 0.1, 0.02),
        ("plan:2", 0.2, None),
    ]


def _outcome(variant: ABTestVariant, key: str, metric: str, value: float, pre: float | None = None) -> None:
    assignment = Assignment.objects.filter(
        test=variant.test, subject_key=key
    ).first() or AssignmentFactory.create(variant=variant, subject_key=key, exposed_at=T0)
    Outcome.objects.create(
        assignment=assignment,
        test=variant.test,
        variant=variant,
        metric=metric,
        value=value,
        pre_value=pre,
        recorded_at=T0,
    )


def test_the_sql_sums_equal_a_hand_computation() -> None:
    test, control, treatment = _test_with_variants()
    other, other_control, _ = _test_with_variants()
    rows_a: list[tuple[float, float | None]] = [(0.1, 0.05), (0.3, None), (0.25, 0.2)]
    rows_b: list[tuple[float, float | None]] = [(0.4, 0.1), (0.0, 0.3)]
    for n, (value, pre) in enumerate(rows_a):
        _outcome(control, f"plan:a{n}", "engagement_rate", value, pre)
    for n, (value, pre) in enumerate(rows_b):
        _outcome(treatment, f"plan:b{n}", "engagement_rate", value, pre)
        _outcome(treatment, f"plan:b{n}", "click", 1.0)
    AssignmentFactory.create(variant=treatment, subject_key="plan:unexposed")
    AssignmentFactory.create(variant=treatment, subject_key="plan:shown", exposed_at=T0)
    _outcome(other_control, "plan:o1", "engagement_rate", 5.0, 1.0)

    sums = variant_metric_sums(test_ids=[test.pk, other.pk])

    def hand(rows: list[tuple[float, float | None]]) -> MetricSums:
        return MetricSums(
            n=len(rows),
            total=math.fsum(v for v, _ in rows),
            total_squares=math.fsum(v * v for v, _ in rows),
            pre_n=sum(1 for _, p in rows if p is not None),
            pre_total=math.fsum(p for _, p in rows if p is not None),
            pre_total_squares=math.fsum(p * p for _, p in rows if p is not None),
            cross_total=math.fsum(v * p for v, p in rows if p is not None),
            unpaired_total=math.fsum(v for v, p in rows if p is None),
        )

    a, b = sums[test.pk].variants
    assert (a.key, a.exposures, a.is_control, a.weight) == ("A", 3, True, 1)
    assert (b.key, b.exposures, b.is_control) == ("B", 3, False)
    assert set(a.metrics) == {"engagement_rate"}
    assert astuple(a.metrics["engagement_rate"]) == pytest.approx(astuple(hand(rows_a)), abs=1e-12)
    assert astuple(b.metrics["engagement_rate"]) == pytest.approx(astuple(hand(rows_b)), abs=1e-12)
    assert b.metrics["click"] == MetricSums(n=2, total=2.0, total_squares=2.0, unpaired_total=2.0)
    other_a, other_b = sums[other.pk].variants
    assert (other_a.exposures, other_b.exposures, other_b.metrics) == (1, 0, {})
    assert other_a.metrics["engagement_rate"] == MetricSums(
        n=1, total=5.0, total_squares=25.0, pre_n=1, pre_total=1.0, pre_total_squares=1.0, cross_total=5.0
    )


@pytest.mark.parametrize("rows", [2, 40])
def test_the_sums_take_two_queries_whatever_the_rows(rows: int, django_assert_num_queries: Any) -> None:
    tests = [_test_with_variants() for _ in range(3)]
    for test, control, treatment in tests:
        for n in range(rows):
            _outcome(
                control if n % 2 else treatment, f"plan:{test.pk}-{n}", "engagement_rate", n / 100, n / 200
            )
            _outcome(control if n % 2 else treatment, f"plan:{test.pk}-{n}", "click", float(n % 3 == 0))

    with django_assert_num_queries(2):
        sums = variant_metric_sums(test_ids=[t.pk for t, _, _ in tests])

    assert sum(v.exposures for s in sums.values() for v in s.variants) == 3 * rows
