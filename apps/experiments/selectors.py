"""Reads of A/B tests: the per-variant sums every result is computed from, and the decided tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, FloatField, Prefetch, Q, Sum, Value
from django.db.models.functions import Coalesce

from apps.experiments.models import ABTest, ABTestVariant, Outcome


@dataclass(frozen=True)
class MetricSums:
    """One variant's outcome rows of one metric: how many, the sums of the value, of its square, of the
    pre-period value and its square, and of their product. Rows without a pre-period value add 0 to those;
    ``pre_n`` counts the rows that have one and ``unpaired_total`` sums the values of the rows that do not
    (so that a missing pre-period value can be imputed in the sums)."""

    n: int = 0
    total: float = 0.0
    total_squares: float = 0.0
    pre_n: int = 0
    pre_total: float = 0.0
    pre_total_squares: float = 0.0
    cross_total: float = 0.0
    unpaired_total: float = 0.0


@dataclass(frozen=True)
class VariantSums:
    variant_id: int
    key: str
    name: str
    weight: int
    is_control: bool
    exposures: int
    metrics: dict[str, MetricSums] = field(default_factory=dict)


@dataclass(frozen=True)
class TestSums:
    __test__ = False  # a name pytest would otherwise collect from the test modules that import it

    test_id: int
    # Ordered by variant key.
    variants: list[VariantSums]

    def variant(self, key: str) -> VariantSums:
        return next(v for v in self.variants if v.key == key)


def _float_sum(expression: object, **extra: Any) -> Coalesce:
    # SUM over no row (or only NULLs) is NULL: read it as 0.
    return Coalesce(
        Sum(expression, output_field=FloatField(), **extra), Value(0.0), output_field=FloatField()
    )


def variant_metric_sums(*, test_ids: Sequence[int]) -> dict[int, TestSums]:
    """Per test, per variant: the exposures and, per metric, the sums of its outcome rows. Two GROUP BY
    queries however many tests, variants and rows; every variant of the tests is present, with 0 exposures
    and no metrics when nothing reached it."""
    ids = list(test_ids)
    if not ids:
        return {}
    variants = (
        ABTestVariant.objects.filter(test_id__in=ids)
        .values("test_id", "id", "key", "name", "weight", "is_control")
        .annotate(exposures=Count("assignments", filter=Q(assignments__exposed_at__isnull=False)))
        .order_by("test_id", "key")
    )
    outcomes = (
        Outcome.objects.filter(test_id__in=ids)
        .values("variant_id", "metric")
        .annotate(
            n=Count("id"),
            total=_float_sum(F("value")),
            total_squares=_float_sum(F("value") * F("value")),
            pre_n=Count("pre_value"),
            pre_total=_float_sum(F("pre_value")),
            pre_total_squares=_float_sum(F("pre_value") * F("pre_value")),
            cross_total=_float_sum(F("value") * F("pre_value")),
            unpaired_total=_float_sum(F("value"), filter=Q(pre_value__isnull=True)),
        )
        .order_by()
    )
    per_variant: dict[int, dict[str, MetricSums]] = {}
    for row in outcomes:
        per_variant.setdefault(row["variant_id"], {})[row["metric"]] = MetricSums(
            n=row["n"],
            total=row["total"],
            total_squares=row["total_squares"],
            pre_n=row["pre_n"],
            pre_total=row["pre_total"],
            pre_total_squares=row["pre_total_squares"],
            cross_total=row["cross_total"],
            unpaired_total=row["unpaired_total"],
        )
    result: dict[int, TestSums] = {}
    for variant in variants:
        sums = result.setdefault(variant["test_id"], TestSums(test_id=variant["test_id"], variants=[]))
        sums.variants.append(
            VariantSums(
                variant_id=variant["id"],
                key=variant["key"],
                name=variant["name"],
                weight=variant["weight"],
                is_control=variant["is_control"],
                exposures=variant["exposures"],
                metrics=per_variant.get(variant["id"], {}),
            )
        )
    return result


def ab_test_list_decided(*, since: dt.datetime | None) -> list[ABTest]:
    """Tests decided (winner, no difference or broken) at or after ``since`` (all when None), oldest decision
    first, with their variants, winner and source hypothesis loaded."""
    tests = ABTest.objects.exclude(decision=ABTest.Decision.NONE).filter(decided_at__isnull=False)
    if since is not None:
        tests = tests.filter(decided_at__gte=since)
    return list(
        tests.select_related("winner", "source_hypothesis")
        .prefetch_related(Prefetch("variants", queryset=ABTestVariant.objects.order_by("key")))
        .order_by("decided_at", "pk")
    )
