"""Public, read-only API over what was published on X, Telegram and Discord."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from apps.accounts.models import User
from apps.billing.selectors import user_entitlement_keys
from apps.content.models import ExclusiveContent, Media, PublishedContent
from apps.content.selectors import (
    LIBRARY_ENTITLEMENT,
    exclusive_content_list_published,
    exclusive_content_list_readable,
    published_content_list,
)
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


class MemberMediaSerializer(serializers.ModelSerializer[Media]):
    url = serializers.SerializerMethodField(
        help_text="Fetch with the same credentials; served to members only"
    )

    class Meta:
        model = Media
        fields = ["id", "kind", "content_type", "alt_text", "width", "height", "url"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, media: Media) -> str:
        path = reverse("portal:member_media", args=[media.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class ExclusiveContentSerializer(serializers.ModelSerializer[ExclusiveContent]):
    media = MemberMediaSerializer(many=True, read_only=True)

    class Meta:
        model = ExclusiveContent
        fields = [
            "slug",
            "title",
            "kind",
            "summary",
            "body",
            "required_entitlement",
            "published_at",
            "period_start",
            "media",
        ]
        read_only_fields = fields


def _entitlement_keys(request: Request) -> set[str]:
    """The member's entitlement keys, read from the ledger once per request."""
    cached: set[str] | None = getattr(request, "_coinlink_entitlement_keys", None)
    if cached is None:
        user = request.user
        cached = user_entitlement_keys(user=user) if isinstance(user, User) else set()
        request._coinlink_entitlement_keys = cached  # type: ignore[attr-defined]
    return cached


class HasLibraryAccess(BasePermission):
    """The library opens with its entitlement; each piece may ask for its own on top (a higher tier)."""

    message = "Your membership does not include the members' library."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return LIBRARY_ENTITLEMENT in _entitlement_keys(request)

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        self.message = "Your membership does not include this piece."
        return isinstance(obj, ExclusiveContent) and obj.required_entitlement in _entitlement_keys(request)


_REFUSED = OpenApiResponse(
    description="No valid session or token, or the membership does not include the library (or this piece)."
)


@extend_schema(tags=["exclusive-content"])
@extend_schema_view(
    list=extend_schema(
        summary="List the members' library",
        description="Every published piece the member's entitlements open, in full, newest first.",
        responses={200: ExclusiveContentSerializer(many=True), 403: _REFUSED},
    ),
    retrieve=extend_schema(
        summary="Get a piece from the members' library",
        responses={
            200: ExclusiveContentSerializer,
            403: _REFUSED,
            404: OpenApiResponse(description="No published piece has this slug."),
        },
    ),
)
class ExclusiveContentViewSet(viewsets.ReadOnlyModelViewSet[ExclusiveContent]):
    """Members-only analysis, guides and reports. Only members whose entitlements open a piece see any of it;
    the titles and summaries that are public live on the portal's library page."""

    serializer_class = ExclusiveContentSerializer
    permission_classes = [IsAuthenticated, HasLibraryAccess]
    throttle_classes = [AnonRateThrottle, UserRateThrottle]
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[ExclusiveContent]:
        if self.action == "list":
            return exclusive_content_list_readable(entitlement_keys=_entitlement_keys(self.request))
        # Any published piece, so that one the member's plan does not open is refused (403), not hidden (404).
        return exclusive_content_list_published()
