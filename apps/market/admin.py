"""Market intelligence in the admin: candles are read-only, insights can be discarded before planning."""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.utils.safestring import SafeString

from apps.core.admin import ReadOnlyAdmin, SelectRelatedAdmin, bulk_status_action, pretty_json
from apps.market.models import Insight, MarketData, NewsArticle, SentimentData
from apps.market.services import insight_discard


@admin.register(MarketData)
class MarketDataAdmin(ReadOnlyAdmin):
    list_display = ("symbol", "exchange", "timeframe", "ts", "open", "high", "low", "close", "volume")
    list_filter = ("exchange", "timeframe")
    search_fields = ("symbol", "exchange")
    date_hierarchy = "ts"
    ordering = ("-ts",)
    # Counting every candle on each page view is the slowest query here and tells an operator nothing.
    show_full_result_count = False


@admin.register(NewsArticle)
class NewsArticleAdmin(SelectRelatedAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("title", "source", "published_at", "sentiment_label", "sentiment_score")
    list_filter = ("sentiment_label", "source")
    search_fields = ("title", "summary", "source", "guid")
    date_hierarchy = "published_at"
    readonly_fields = ("created_at", "updated_at")


@admin.register(SentimentData)
class SentimentDataAdmin(SelectRelatedAdmin):
    list_display = ("symbol", "source", "window_start", "window_end", "score", "sample_size")
    list_filter = ("source",)
    search_fields = ("symbol", "source")
    date_hierarchy = "window_end"
    ordering = ("-window_end",)
    readonly_fields = ("created_at",)


@admin.register(Insight)
class InsightAdmin(SelectRelatedAdmin):
    list_display = ("headline", "symbol", "type", "timeframe", "confidence", "status", "detected_at")
    list_filter = ("status", "type", "timeframe")
    search_fields = ("headline", "symbol")
    date_hierarchy = "detected_at"
    fields = (
        "type",
        "symbol",
        "timeframe",
        "confidence",
        "headline",
        "status",
        "detected_at",
        "expires_at",
        "evidence_pretty",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("evidence_pretty", "created_at", "updated_at")
    actions = ("discard",)

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: Insight) -> SafeString:
        return pretty_json(obj.evidence)

    discard = bulk_status_action(
        description="Discard selected new insights",
        change=lambda ids, user: insight_discard(insight_ids=ids),
        message="Discarded {changed} of {selected} selected insights; only new insights can be discarded.",
    )
