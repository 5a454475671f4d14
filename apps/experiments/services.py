"""Writes to A/B tests."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from apps.experiments.models import ABTest


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
