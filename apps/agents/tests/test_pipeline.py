"""Pipelines: phases in order, dependencies before their dependants, independent agents unaffected by a
failure, dependants skipped with the reason, and the PipelineRun closed with its counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from celery.exceptions import TimeLimitExceeded
from channels.layers import get_channel_layer
from pytest_django.fixtures import Settings as DjangoSettings

from apps.agents import registry
from apps.agents.base import AgentResult, BaseAgent
from apps.agents.factories import AgentConfigFactory
from apps.agents.models import AgentRun, AgentRunStatus, PipelineRun, RunTrigger
from apps.agents.orchestrator import InvalidPipeline, plan_levels
from apps.agents.services import pipeline_run_start
from apps.agents.tasks import execute_agent_run, run_pipeline
from apps.agents.tests.conftest import Broadcasts
from apps.core.live import DASHBOARD_GROUP

pytestmark = pytest.mark.django_db

AgentFactory = Callable[..., type[BaseAgent]]
Capture = Callable[..., AbstractContextManager[list[Callable[[], None]]]]


def _names(levels: list[list[type[BaseAgent]]]) -> list[list[str]]:
    return [[agent.name for agent in level] for level in levels]


def _runs(pipeline: PipelineRun) -> dict[str, AgentRun]:
    return {run.agent_name: run for run in pipeline.agent_runs.all()}


def test_levels_follow_phases_then_dependencies(agent: AgentFactory) -> None:
    agents = [
        agent("f", phase=3),
        agent("e", phase=2, depends_on=("d", "b")),
        agent("d", phase=2),
        agent("c", phase=1),
        agent("b", phase=1, depends_on=("a",)),
        agent("a", phase=1),
    ]

    assert _names(plan_levels(agents)) == [["a", "c"], ["b"], ["d"], ["e"], ["f"]]


def test_impossible_orders_are_refused(agent: AgentFactory) -> None:
    loop = [agent("x", depends_on=("y",)), agent("y", depends_on=("x",))]
    with pytest.raises(InvalidPipeline, match="dependency cycle among x, y"):
        plan_levels(loop)

    backwards = [agent("early", phase=1, depends_on=("late",)), agent("late", phase=2)]
    with pytest.raises(
        InvalidPipeline, match=r"early \(phase 1\) depends on late, which runs later \(phase 2\)"
    ):
        plan_levels(backwards)

    with pytest.raises(InvalidPipeline, match="lonely depends on unknown agents: ghost"):
        plan_levels([agent("lonely", depends_on=("ghost",))])


def test_a_full_pipeline_runs_in_order_and_succeeds(
    world: Callable[..., None], start: Callable[..., PipelineRun], log: list[str], broadcasts: Broadcasts
) -> None:
    world()

    pipeline = start()

    assert log == ["news", "scanner", "analysis", "writer", "publisher"]
    assert pipeline.status == PipelineRun.Status.SUCCEEDED
    assert (pipeline.name, pipeline.trigger, pipeline.error) == ("full", RunTrigger.MANUAL, "")
    assert pipeline.agents == ["news", "scanner", "analysis", "writer", "publisher"]
    assert pipeline.summary == {
        "levels": [["news", "scanner"], ["analysis"], ["writer"], ["publisher"]],
        "total": 5,
        "succeeded": 5,
        "failed": 0,
        "skipped": 0,
    }
    assert pipeline.started_at is not None
    assert pipeline.finished_at is not None
    assert pipeline.started_at <= pipeline.finished_at
    runs = _runs(pipeline)
    assert {(run.status, run.trigger, run.attempt) for run in runs.values()} == {
        (AgentRunStatus.SUCCEEDED, RunTrigger.PIPELINE, 1)
    }
    assert runs["writer"].counters == {"writer": 1}
    assert broadcasts.pipelines() == ["queued", "running", "succeeded"]
    for name in pipeline.agents:
        assert broadcasts.statuses(name) == ["queued", "running", "succeeded"]


def test_a_failure_skips_its_dependants_and_spares_the_rest(
    world: Callable[..., None], start: Callable[..., PipelineRun], log: list[str], broadcasts: Broadcasts
) -> None:
    world(fail=("analysis",))

    pipeline = start()

    runs = _runs(pipeline)
    assert log == ["news", "scanner", "analysis"]
    assert {name: run.status for name, run in runs.items()} == {
        "scanner": AgentRunStatus.SUCCEEDED,
        "news": AgentRunStatus.SUCCEEDED,
        "analysis": AgentRunStatus.FAILED,
        "writer": AgentRunStatus.SKIPPED,
        "publisher": AgentRunStatus.SKIPPED,
    }
    assert runs["analysis"].error == "RuntimeError: analysis broke"
    assert runs["writer"].summary == "dependency analysis failed in this pipeline run"
    assert runs["publisher"].summary == "dependency writer was skipped in this pipeline run"
    assert pipeline.status == PipelineRun.Status.PARTIAL
    assert {key: pipeline.summary[key] for key in ("total", "succeeded", "failed", "skipped")} == {
        "total": 5,
        "succeeded": 2,
        "failed": 1,
        "skipped": 2,
    }
    assert broadcasts.pipelines() == ["queued", "running", "partial"]
    assert broadcasts.statuses("analysis") == ["queued", "running", "failed"]
    assert broadcasts.statuses("writer") == ["queued", "skipped"]


def test_nothing_succeeding_fails_the_pipeline(
    world: Callable[..., None], start: Callable[..., PipelineRun]
) -> None:
    world(fail=("scanner", "news"))

    pipeline = start(["scanner", "news", "analysis"])

    assert pipeline.status == PipelineRun.Status.FAILED
    assert (pipeline.summary["failed"], pipeline.summary["skipped"]) == (2, 1)


def test_a_paused_agent_is_skipped_and_so_are_its_dependants(
    world: Callable[..., None], start: Callable[..., PipelineRun], log: list[str]
) -> None:
    world()
    AgentConfigFactory.create(agent_name="analysis", paused=True)

    pipeline = start()

    runs = _runs(pipeline)
    assert runs["analysis"].summary == "paused"
    assert runs["writer"].summary == "dependency analysis was skipped in this pipeline run"
    assert log == ["news", "scanner"]
    assert pipeline.status == PipelineRun.Status.PARTIAL


def test_a_selection_runs_only_those_agents(
    world: Callable[..., None], start: Callable[..., PipelineRun], log: list[str]
) -> None:
    world()

    pipeline = start(["writer", "analysis"])

    # The scanner is not in this run: the analysis works from the data already there.
    assert log == ["analysis", "writer"]
    assert (pipeline.name, pipeline.agents, pipeline.status) == (
        "selection",
        ["analysis", "writer"],
        PipelineRun.Status.SUCCEEDED,
    )


def test_an_unknown_agent_starts_nothing(world: Callable[..., None]) -> None:
    world()

    with pytest.raises(registry.UnknownAgent):
        pipeline_run_start(agent_names=["scanner", "nope"])

    assert not PipelineRun.objects.exists()
    assert not AgentRun.objects.exists()


def test_a_scheduled_pipeline(
    world: Callable[..., None], django_capture_on_commit_callbacks: Capture, log: list[str]
) -> None:
    world()

    with django_capture_on_commit_callbacks(execute=True):
        pipeline_id = run_pipeline.delay(["scanner"]).get()

    pipeline = PipelineRun.objects.get(pk=pipeline_id)
    assert (pipeline.trigger, pipeline.status, log) == (
        RunTrigger.SCHEDULE,
        PipelineRun.Status.SUCCEEDED,
        ["scanner"],
    )


def test_a_killed_task_closes_its_pipeline(world: Callable[..., None], broadcasts: Broadcasts) -> None:
    world()
    # Queued, not sent: the canvas is held back so the test plays the worker.
    pipeline = pipeline_run_start()
    runs = _runs(pipeline)
    AgentRun.objects.filter(pk=runs["scanner"].pk).update(status=AgentRunStatus.SUCCEEDED)
    AgentRun.objects.filter(pk=runs["news"].pk).update(status=AgentRunStatus.RUNNING)

    execute_agent_run.on_failure(TimeLimitExceeded(360), "task-1", (runs["news"].pk,), {}, None)

    pipeline.refresh_from_db()
    runs = _runs(pipeline)
    reason = "news: killed at the hard time limit of 360 s"
    assert runs["news"].status == AgentRunStatus.FAILED
    assert {runs[name].summary for name in ("analysis", "writer", "publisher")} == {
        f"pipeline stopped: {reason}"
    }
    assert {runs[name].status for name in ("analysis", "writer", "publisher")} == {AgentRunStatus.SKIPPED}
    assert (pipeline.status, pipeline.error) == (PipelineRun.Status.PARTIAL, reason)
    assert broadcasts.pipelines()[-1] == "partial"


def test_every_transition_reaches_the_dashboard_group(
    world: Callable[..., None], start: Callable[..., PipelineRun], settings: DjangoSettings
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(DASHBOARD_GROUP, channel)
    world(fail=("writer",))

    pipeline = start(["scanner", "analysis", "writer", "publisher"])

    received: list[tuple[str, Any, Any]] = []
    while layer.channels.get(channel):
        message = async_to_sync(layer.receive)(channel)
        payload = message["payload"]
        received.append((message["event"], payload.get("agent"), payload["status"]))
    assert received == [
        ("pipeline_run", None, "queued"),
        ("agent_run", "scanner", "queued"),
        ("agent_run", "analysis", "queued"),
        ("agent_run", "writer", "queued"),
        ("agent_run", "publisher", "queued"),
        ("pipeline_run", None, "running"),
        ("agent_run", "scanner", "running"),
        ("agent_run", "scanner", "succeeded"),
        ("agent_run", "analysis", "running"),
        ("agent_run", "analysis", "succeeded"),
        ("agent_run", "writer", "running"),
        ("agent_run", "writer", "failed"),
        ("agent_run", "publisher", "skipped"),
        ("pipeline_run", None, "partial"),
    ]
    assert pipeline.status == PipelineRun.Status.PARTIAL


def test_a_source_down_marks_the_run_and_its_pipeline_degraded_with_the_reason(
    agent: AgentFactory, start: Callable[..., PipelineRun], broadcasts: Broadcasts
) -> None:
    def scan_without_news(ctx: Any) -> AgentResult:
        result = AgentResult(summary="40 candles; failed: news")
        result.incr("candles", 40)
        result.incr("errors.news", 2)
        return result

    def publish_one_failed(ctx: Any) -> AgentResult:
        result = AgentResult(summary="3 published, 1 failed")
        result.incr("published", 3)
        result.incr("failed", 1)
        result.degrade("discord refused the post")
        return result

    agent("scanner", scan_without_news)
    agent("publisher", publish_one_failed, phase=2)
    agent("clean", phase=2)

    pipeline = start()

    runs = _runs(pipeline)
    assert {name: run.status for name, run in runs.items()} == dict.fromkeys(
        ("scanner", "publisher", "clean"), AgentRunStatus.SUCCEEDED
    )
    assert runs["scanner"].degraded_reason == "errors.news=2"
    assert runs["publisher"].degraded_reason == "discord refused the post; failed=1"
    assert runs["clean"].degraded_reason == ""
    assert pipeline.status == PipelineRun.Status.DEGRADED
    assert pipeline.degraded_reason == "scanner: errors.news=2\npublisher: discord refused the post; failed=1"
    assert broadcasts.pipelines() == ["queued", "running", "degraded"]
    finished = [p for _, e, p in broadcasts.events if e == "pipeline_run" and p["status"] == "degraded"]
    assert finished[0]["degraded_reason"] == pipeline.degraded_reason


def test_zero_failure_counters_do_not_degrade(agent: AgentFactory, start: Callable[..., PipelineRun]) -> None:
    agent("quiet", lambda ctx: AgentResult(counters=Counter({"errors.news": 0, "failed": 0, "items": 3})))

    pipeline = start()

    assert pipeline.status == PipelineRun.Status.SUCCEEDED
    assert pipeline.degraded_reason == ""
