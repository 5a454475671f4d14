"""Public, read-only API over what was published on X, Telegram and Discord."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from apps.content.models import PublishedContent
from apps.content.selectors import published_content_list
from apps.core.models import Platform


class PublishedContentSerializer(serializers.ModelSerializer[PublishedContent]):
    # The platform's latest counters (impressions, likes, reposts, replies, ...); keys vary by platform.
    metrics = serializers.DictField(read_only=True)
    # A CharField, not a URLField, because the schema must admit the empty string of posts without a link.
    url = serializers.CharField(
        read_only=True, help_text="Link to the post; empty when the platform gives none"
    )
    part_ids = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Ids of every part of a thread, in order"
    )

    class Meta:
        model = PublishedContent
        fields = [
            "id",
            "platform",
            "format",
            "external_id",
            "part_ids",
            "url",
            "text",
            "published_at",
            "metrics",
            "engagement_rate",
            "metrics_updated_at",
        ]
        read_only_fields = fields


class PublishedContentFilterSerializer(serializers.Serializer[dict[str, Any]]):
    """The list's query parameters; anything else in the query string is ignored."""

    platform = serializers.ChoiceField(required=False, choices=Platform.choices)


@extend_schema(tags=["published-content"])
@extend_schema_view(
    list=extend_schema(
        summary="List published content",
        parameters=[PublishedContentFilterSerializer],
        responses={
            200: PublishedContentSerializer(many=True),
            400: OpenApiResponse(description="A filter is invalid."),
        },
    ),
    retrieve=extend_schema(
        summary="Get a published post",
        responses={200: PublishedContentSerializer, 404: OpenApiResponse(description="No such post.")},
    ),
)
class PublishedContentViewSet(viewsets.ReadOnlyModelViewSet[PublishedContent]):
    """Posts as they went out on the platforms, newest first.

    Everything here is already public on the platforms and is marketing, so anyone may read it; the
    anonymous rate limit bounds scraping.
    """

    serializer_class = PublishedContentSerializer
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle, UserRateThrottle]

    def get_queryset(self) -> QuerySet[PublishedContent]:
        if self.action != "list":
            return published_content_list()
        filters = PublishedContentFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return published_content_list(**filters.validated_data)
