"""A/B tests and their results over the API, for staff: the operators' tools and reports read what the A/B
testing agent decided and why."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from apps.experiments.models import ABTest, ABTestVariant


class ABTestVariantSerializer(serializers.ModelSerializer[ABTestVariant]):
    payload = serializers.DictField(read_only=True, help_text="What the variant changes (tone, offer, ...)")

    class Meta:
        model = ABTestVariant
        fields = ["key", "name", "payload", "weight", "is_control"]
        read_only_fields = fields


class ABTestSerializer(serializers.ModelSerializer[ABTest]):
    variants = ABTestVariantSerializer(many=True, read_only=True)
    metrics = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The primary metric first, then guardrails"
    )
    winner = serializers.SerializerMethodField(help_text="The winning variant's key, when one won")
    result = serializers.DictField(
        read_only=True,
        help_text=(
            "The last evaluation: srm_p_value, exposures per variant, and per metric the variants' n and mean "
            "and each treatment's effect (relative), ci, p_value, adjusted_p_value, chance_to_win, significant"
        ),
    )

    class Meta:
        model = ABTest
        fields = [
            "slug",
            "name",
            "subject",
            "hypothesis",
            "status",
            "metrics",
            "alpha",
            "correction",
            "min_sample_size",
            "horizon_days",
            "started_at",
            "ended_at",
            "decision",
            "decided_at",
            "winner",
            "srm_p_value",
            "evaluated_at",
            "variants",
            "result",
        ]
        read_only_fields = fields

    def get_winner(self, test: ABTest) -> str | None:
        return test.winner.key if test.winner is not None else None


class ABTestFilterSerializer(serializers.Serializer[dict[str, Any]]):
    status = serializers.ChoiceField(required=False, choices=ABTest.Status.choices)
    subject = serializers.ChoiceField(required=False, choices=ABTest.Subject.choices)


@extend_schema(tags=["experiments"])
@extend_schema_view(
    list=extend_schema(
        summary="List A/B tests with their latest results",
        parameters=[ABTestFilterSerializer],
        responses={
            200: ABTestSerializer(many=True),
            400: OpenApiResponse(description="A filter is invalid."),
        },
    ),
    retrieve=extend_schema(
        summary="Get an A/B test and its latest result",
        responses={200: ABTestSerializer, 404: OpenApiResponse(description="No such test.")},
    ),
)
class ABTestViewSet(viewsets.ReadOnlyModelViewSet[ABTest]):
    """A/B tests on posts and offers, newest first, each with its variants and its last evaluation.

    Staff only: results steer the business and are not for members."""

    serializer_class = ABTestSerializer
    permission_classes = [IsAdminUser]
    throttle_classes = [AnonRateThrottle, UserRateThrottle]
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[ABTest]:
        tests = ABTest.objects.select_related("winner").prefetch_related(
            Prefetch("variants", queryset=ABTestVariant.objects.order_by("key"))
        )
        if self.action != "list":
            return tests
        filters = ABTestFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return tests.filter(**filters.validated_data)
