"""The periodic sweep of agent runs a lost worker left ``running``: past their agent's hard time limit they are
failed as abandoned (their pipeline closed with them), without waiting for the agent's next start. The take
over by a redelivered task is in test_runs.py; real killed workers in tests/test_topology.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from pytest_django.fixtures import Settings as DjangoSettings

from apps.agents.base import BaseAgent
from apps.agents.factories import AgentRunFactory
from apps.agents.models import AgentRun, AgentRunStatus, PipelineRun
from apps.agents.services import agent_runs_recover_abandoned
from apps.agents.tasks import recover_abandoned_runs

pytestmark = pytest.mark.django_db

AgentFactory = Callable[..., type[BaseAgent]]
NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def with_workers(settings: DjangoSettings) -> None:
    """The sweep is for processes with a broker and time limits (the production topology)."""
    settings.AGENTS_RUN_IN_PROCESS = False


def _running(agent_name: str, *, seconds_ago: float, **extra: Any) -> AgentRun:
    return AgentRunFactory.create(
        agent_name=agent_name,
        status=AgentRunStatus.RUNNING,
        started_at=NOW - dt.timedelta(seconds=seconds_ago),
        finished_at=None,
        duration_ms=None,
        **extra,
    )


def test_runs_past_their_agents_hard_limit_are_failed_and_the_rest_left_alone(agent: AgentFactory) -> None:
    agent("scanner", time_limit=60, soft_time_limit=50)
    agent("writer", time_limit=600, soft_time_limit=500)
    with time_machine.travel(NOW, tick=False):
        lost = _running("scanner", seconds_ago=61)
        working = _running("writer", seconds_ago=300)
        # An agent no longer registered has no time limit to judge by: an operator's call.
        orphan = _running("retired", seconds_ago=86400)
        done = AgentRunFactory.create(agent_name="scanner", status=AgentRunStatus.SUCCEEDED)
        untouched = {row.pk: AgentRun.objects.values().get(pk=row.pk) for row in (working, orphan, done)}

        assert agent_runs_recover_abandoned() == 1
        # A second sweep finds nothing more to do.
        assert agent_runs_recover_abandoned() == 0

    lost.refresh_from_db()
    assert lost.status == AgentRunStatus.FAILED
    assert lost.error == (
        "abandoned: still marked running 61 s after it started, past the hard time limit of 60 s "
        "(its worker was lost)"
    )
    assert (lost.finished_at, lost.duration_ms) == (NOW, 61000)
    assert {pk: AgentRun.objects.values().get(pk=pk) for pk in untouched} == untouched


def test_an_abandoned_run_closes_its_pipeline_and_skips_what_waited_for_it(agent: AgentFactory) -> None:
    agent("scanner", time_limit=60, soft_time_limit=50)
    agent("writer", depends_on=("scanner",), phase=2)
    with time_machine.travel(NOW, tick=False):
        pipeline = PipelineRun.objects.create(
            name="full", agents=["scanner", "writer"], status=PipelineRun.Status.RUNNING, started_at=NOW
        )
        lost = _running("scanner", seconds_ago=90, pipeline_run=pipeline)
        waiting = AgentRunFactory.create(
            agent_name="writer",
            status=AgentRunStatus.QUEUED,
            pipeline_run=pipeline,
            started_at=None,
            finished_at=None,
            duration_ms=None,
        )

        assert recover_abandoned_runs.apply().get() == 1

    lost.refresh_from_db()
    waiting.refresh_from_db()
    pipeline.refresh_from_db()
    assert lost.status == AgentRunStatus.FAILED
    assert (waiting.status, waiting.summary) == (
        AgentRunStatus.SKIPPED,
        "pipeline stopped: scanner: abandoned",
    )
    assert (pipeline.status, pipeline.error) == (PipelineRun.Status.FAILED, "scanner: abandoned")


def test_the_sweep_is_scheduled_by_beat(settings: DjangoSettings) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["agents.recover_abandoned_runs"] == {
        "task": "agents.recover_abandoned_runs",
        "schedule": 60.0,
    }


def test_on_the_embedded_default_a_long_run_is_left_to_finish(
    agent: AgentFactory, settings: DjangoSettings
) -> None:
    settings.AGENTS_RUN_IN_PROCESS = True
    agent("scanner", time_limit=60, soft_time_limit=50)
    run = _running("scanner", seconds_ago=3600)

    with time_machine.travel(NOW, tick=False):
        assert agent_runs_recover_abandoned() == 0

    run.refresh_from_db()
    assert run.status == AgentRunStatus.RUNNING
