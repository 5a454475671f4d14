"""Public, read-only API over the insights the analysis produced."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from apps.market.models import Insight, InsightType, Timeframe
from apps.market.selectors import insight_list


class InsightSerializer(serializers.ModelSerializer[Insight]):
    # Evidence is the numbers behind the insight; its keys depend on the insight type.
    evidence = serializers.DictField(read_only=True)
    # Declared so the schema admits the empty string the model allows for insights not tied to a timeframe.
    timeframe = serializers.ChoiceField(choices=Timeframe.choices, allow_blank=True, read_only=True)

    class Meta:
        model = Insight
        fields = [
            "id",
            "type",
            "symbol",
            "timeframe",
            "confidence",
            "headline",
            "evidence",
            "detected_at",
            "expires_at",
        ]
        read_only_fields = fields


class InsightFilterSerializer(serializers.Serializer[dict[str, Any]]):
    """The list's query parameters; anything else in the query string is ignored."""

    symbol = serializers.CharField(
        required=False, max_length=30, help_text="Unified symbol, e.g. BTC/USDT (case-insensitive)"
    )
    type = serializers.ChoiceField(required=False, choices=InsightType.choices, source="insight_type")
    min_confidence = serializers.FloatField(
        required=False, min_value=0.0, max_value=1.0, help_text="Only insights at least this confident"
    )

    def validate_symbol(self, value: str) -> str:
        # Unified symbols are stored upper-case; matching exactly keeps the lookup on the index.
        return value.upper()


@extend_schema(tags=["insights"])
@extend_schema_view(
    list=extend_schema(
        summary="List insights",
        parameters=[InsightFilterSerializer],
        responses={
            200: InsightSerializer(many=True),
            400: OpenApiResponse(description="A filter is invalid."),
        },
    ),
    retrieve=extend_schema(
        summary="Get an insight",
        responses={200: InsightSerializer, 404: OpenApiResponse(description="No such insight.")},
    ),
)
class InsightViewSet(viewsets.ReadOnlyModelViewSet[Insight]):
    """Market insights, newest first. Discarded insights are never listed.

    Insights are the public face of the product, so anyone may read them; the anonymous rate limit bounds
    scraping.
    """

    serializer_class = InsightSerializer
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle, UserRateThrottle]

    def get_queryset(self) -> QuerySet[Insight]:
        if self.action != "list":
            return insight_list()
        filters = InsightFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return insight_list(**filters.validated_data)
