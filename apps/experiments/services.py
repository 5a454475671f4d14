"""Writes to A/B tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db.models import F
from django.utils import timezone

from apps.experiments.models import ABTest, ABTestVariant, Assignment


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
