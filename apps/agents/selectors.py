"""Reads of the agent framework's rows: configurations, runs and pipeline runs."""

from __future__ import annotations

from collections import Counter

from django.db.models import QuerySet

from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, PipelineRun

# A run in one of these states will not change again.
FINISHED_STATUSES = frozenset({AgentRunStatus.SUCCEEDED, AgentRunStatus.FAILED, AgentRunStatus.SKIPPED})
PIPELINE_FINISHED_STATUSES = frozenset(
    {
        PipelineRun.Status.SUCCEEDED,
        PipelineRun.Status.DEGRADED,
        PipelineRun.Status.PARTIAL,
        PipelineRun.Status.FAILED,
        PipelineRun.Status.CANCELLED,
    }
)


def agent_config_get(*, agent_name: str) -> AgentConfig | None:
    return AgentConfig.objects.filter(agent_name=agent_name).first()


def agent_config_names() -> set[str]:
    return set(AgentConfig.objects.values_list("agent_name", flat=True))


def agent_run_in_flight(*, agent_name: str) -> AgentRun | None:
    """The run that holds the agent's single flight, if any."""
    return AgentRun.objects.filter(agent_name=agent_name, status=AgentRunStatus.RUNNING).first()


def agent_run_list_for_pipeline(*, pipeline_run_id: int) -> QuerySet[AgentRun]:
    return AgentRun.objects.filter(pipeline_run_id=pipeline_run_id).order_by("pk")


def agent_run_statuses_in_pipeline(*, pipeline_run_id: int, agent_names: set[str]) -> dict[str, str]:
    """Each named agent's status in the pipeline run (one run per agent and pipeline run)."""
    rows = AgentRun.objects.filter(pipeline_run_id=pipeline_run_id, agent_name__in=agent_names)
    return dict(rows.values_list("agent_name", "status"))


def agent_run_status_counts(*, pipeline_run_id: int) -> Counter[str]:
    statuses = AgentRun.objects.filter(pipeline_run_id=pipeline_run_id).values_list("status", flat=True)
    return Counter(statuses)


def agent_run_degraded_in_pipeline(*, pipeline_run_id: int) -> list[tuple[str, str]]:
    """(agent, reason) of the pipeline's runs that succeeded degraded, in run order."""
    rows = AgentRun.objects.filter(
        pipeline_run_id=pipeline_run_id, status=AgentRunStatus.SUCCEEDED, degraded_reason__gt=""
    ).order_by("pk")
    return list(rows.values_list("agent_name", "degraded_reason"))


def pipeline_run_get(*, pipeline_run_id: int) -> PipelineRun:
    return PipelineRun.objects.get(pk=pipeline_run_id)
