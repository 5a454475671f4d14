"""The business's KPIs over the API, for staff (operators' tools and reports)."""

from __future__ import annotations

import dataclasses
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from apps.billing.kpis import DEFAULT_PERIOD_DAYS, KpiReport, kpi_report, parse_period


class KpiQuerySerializer(serializers.Serializer[dict[str, Any]]):
    period = serializers.CharField(
        required=False,
        default=f"{DEFAULT_PERIOD_DAYS}d",
        help_text="The look-back of churn and the funnel: days, from 1d to 366d",
    )

    def validate_period(self, value: str) -> int:
        try:
            return parse_period(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class KpiPeriodSerializer(serializers.Serializer[dict[str, Any]]):
    days = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class KpiChurnSerializer(serializers.Serializer[dict[str, Any]]):
    subscriptions_at_start = serializers.IntegerField(help_text="Paying subscriptions at the period's start")
    ended = serializers.IntegerField(help_text="Of those, how many ended in the period")
    rate = serializers.FloatField(
        allow_null=True, help_text="ended / subscriptions_at_start; null without any"
    )


class KpiFunnelSerializer(serializers.Serializer[dict[str, Any]]):
    offers_sent = serializers.IntegerField(help_text="Offers sent in the period")
    clicked = serializers.IntegerField(help_text="Of those, clicked (a conversion counts as a click)")
    converted = serializers.IntegerField(help_text="Of those, converted")


class KpiReportSerializer(serializers.Serializer[dict[str, Any]]):
    as_of = serializers.DateTimeField()
    period = KpiPeriodSerializer()
    mrr_minor = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=(
            "Monthly recurring revenue in minor units per currency: active and in-grace past-due "
            "subscriptions, yearly prices at a twelfth (rounded half up once per currency); trials excluded"
        ),
    )
    active_members = serializers.IntegerField(help_text="People with a paying subscription")
    trials = serializers.IntegerField(help_text="People with a trialing subscription")
    churn = KpiChurnSerializer()
    funnel = KpiFunnelSerializer()


def kpi_report_data(report: KpiReport) -> dict[str, Any]:
    return {
        "as_of": report.as_of,
        "period": {"days": report.period_days, "start": report.period_start, "end": report.period_end},
        "mrr_minor": report.mrr_minor,
        "active_members": report.active_members,
        "trials": report.trials,
        "churn": dataclasses.asdict(report.churn),
        "funnel": dataclasses.asdict(report.funnel),
    }


class KpiView(APIView):
    """Revenue, members, churn and the offer funnel. Staff only: these are the business's own numbers."""

    permission_classes = [IsAdminUser]
    throttle_classes = [AnonRateThrottle, UserRateThrottle]

    @extend_schema(
        tags=["kpis"],
        summary="Get the KPIs",
        parameters=[KpiQuerySerializer],
        responses={
            200: KpiReportSerializer,
            400: OpenApiResponse(description="The period is not a number of days from 1d to 366d."),
            403: OpenApiResponse(description="No valid session or token of a staff member."),
        },
    )
    def get(self, request: Request) -> Response:
        query = KpiQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = kpi_report(period_days=query.validated_data["period"])
        return Response(KpiReportSerializer(kpi_report_data(report)).data)
