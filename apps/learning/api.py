"""The strategy-change log over the API, for staff: what the self-learning loop changed, why, and with what
evidence."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from apps.learning.models import StrategyChange


class StrategyChangeSerializer(serializers.ModelSerializer[StrategyChange]):
    evidence = serializers.DictField(read_only=True, help_text="The figures behind the change")
    target = serializers.JSONField(read_only=True, help_text="The value learnt, before bounding")
    before = serializers.JSONField(read_only=True, help_text="The value in force before")
    after = serializers.JSONField(read_only=True, help_text="The value applied")

    class Meta:
        model = StrategyChange
        fields = [
            "id",
            "agent_name",
            "parameter",
            "source",
            "status",
            "reason",
            "evidence",
            "target",
            "before",
            "after",
            "cycle",
            "created_at",
            "applied_at",
            "skip_reason",
            "reverted_at",
        ]
        read_only_fields = fields


class StrategyChangeFilterSerializer(serializers.Serializer[dict[str, Any]]):
    status = serializers.ChoiceField(required=False, choices=StrategyChange.Status.choices)
    # Named "origin" because "source" is a serializer field's own attribute.
    origin = serializers.ChoiceField(
        required=False, choices=StrategyChange.Source.choices, help_text="What proposed the change"
    )
    agent_name = serializers.CharField(required=False, max_length=60)


@extend_schema(tags=["strategy-changes"])
@extend_schema_view(
    list=extend_schema(
        summary="List strategy changes, newest first",
        parameters=[StrategyChangeFilterSerializer],
        responses={
            200: StrategyChangeSerializer(many=True),
            400: OpenApiResponse(description="A filter is invalid."),
        },
    ),
    retrieve=extend_schema(
        summary="Get a strategy change",
        responses={200: StrategyChangeSerializer, 404: OpenApiResponse(description="No such change.")},
    ),
)
class StrategyChangeViewSet(viewsets.ReadOnlyModelViewSet[StrategyChange]):
    """Every parameter the feedback loop proposed, applied, skipped or had reverted. Staff only."""

    serializer_class = StrategyChangeSerializer
    permission_classes = [IsAdminUser]
    throttle_classes = [AnonRateThrottle, UserRateThrottle]

    def get_queryset(self) -> QuerySet[StrategyChange]:
        changes = StrategyChange.objects.order_by("-created_at", "-pk")
        if self.action != "list":
            return changes
        filters = StrategyChangeFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = dict(filters.validated_data)
        if "origin" in wanted:
            wanted["source"] = wanted.pop("origin")
        return changes.filter(**wanted)
