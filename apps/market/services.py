"""Writes to the market intelligence rows."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from apps.market.models import Insight, InsightStatus


def insight_discard(*, insight_ids: Iterable[int]) -> int:
    """Keep new insights out of content planning; returns how many changed. Insights already planned or used
    are left alone: content exists for them."""
    return Insight.objects.filter(pk__in=list(insight_ids), status=InsightStatus.NEW).update(
        status=InsightStatus.DISCARDED, updated_at=timezone.now()
    )
