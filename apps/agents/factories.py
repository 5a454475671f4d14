"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, PerformanceSnapshot, PipelineRun


class AgentConfigFactory(DjangoModelFactory[AgentConfig]):
    class Meta:
        model = AgentConfig
        django_get_or_create = ("agent_name",)

    agent_name = factory.Sequence(lambda n: f"agent_{n}")


class PipelineRunFactory(DjangoModelFactory[PipelineRun]):
    class Meta:
        model = PipelineRun

    name = "full"
    status = PipelineRun.Status.SUCCEEDED
    agents = factory.LazyFunction(lambda: ["market_scanner", "analysis"])
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda o: o.started_at + dt.timedelta(seconds=42))


class AgentRunFactory(DjangoModelFactory[AgentRun]):
    class Meta:
        model = AgentRun

    agent_name = "market_scanner"
    status = AgentRunStatus.SUCCEEDED
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda o: o.started_at + dt.timedelta(seconds=3))
    duration_ms = 3000
    counters = factory.LazyFunction(lambda: {"candles": 240, "articles": 12})
    summary = "Fetched 240 candles and 12 articles"


class PerformanceSnapshotFactory(DjangoModelFactory[PerformanceSnapshot]):
    class Meta:
        model = PerformanceSnapshot

    metric = "engagement_rate"
    scope = "platform:x"
    value = 0.042
    sample_size = 30
    captured_at = factory.Sequence(
        lambda n: timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=n)
    )
