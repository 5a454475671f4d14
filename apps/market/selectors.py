"""Reads of market intelligence."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.market.models import Insight, InsightStatus


def insight_list(
    *,
    symbol: str | None = None,
    insight_type: str | None = None,
    min_confidence: float | None = None,
) -> QuerySet[Insight]:
    """Insights that may be shown outside the pipeline, newest first.

    Discarded insights were judged wrong or noise by the analysis, so they never leave the building.
    """
    insights = Insight.objects.exclude(status=InsightStatus.DISCARDED)
    if symbol is not None:
        insights = insights.filter(symbol=symbol)
    if insight_type is not None:
        insights = insights.filter(type=insight_type)
    if min_confidence is not None:
        insights = insights.filter(confidence__gte=min_confidence)
    # The id breaks ties between insights detected in the same instant, so pages never overlap.
    return insights.order_by("-detected_at", "-id")
