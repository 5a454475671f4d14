"""A pipeline through the real broker to a real worker: the canvas (chords of groups), retries with a
countdown, and ``run_pipeline`` following it by polling."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from io import StringIO

import pytest
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.models import AgentRun, AgentRunStatus, PipelineRun
from apps.agents.tests.conftest import Broadcasts
from apps.core.resilience import TransientError
from coinlink.celery import app as celery_app

AgentFactory = Callable[..., type[BaseAgent]]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_pipeline_runs_on_a_worker_through_redis(
    world: Callable[..., None],
    agent: AgentFactory,
    log: list[str],
    broadcasts: Broadcasts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    # A queue of its own, so a worker running elsewhere on this machine cannot take the messages.
    monkeypatch.setitem(celery_app.conf, "task_default_queue", f"coinlink-test-{uuid.uuid4().hex}")
    world(fail=("analysis",))
    attempts: list[int] = []

    def flaky(ctx: AgentContext) -> AgentResult:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise TransientError("exchange timed out")
        return AgentResult(counters=Counter(tries=len(attempts)), summary="second time lucky")

    agent("flaky", flaky, phase=1)
    executed_before = worker_state.total_count["apps.agents.tasks.execute_agent_run"]
    out = StringIO()

    with (
        start_worker(
            celery_app,
            pool="solo",
            perform_ping_check=False,
            queues=[celery_app.conf.task_default_queue],
            shutdown_timeout=20,
        ),
        pytest.raises(CommandError) as raised,
    ):
        call_command("run_pipeline", "--poll", "0.05", stdout=out)

    assert raised.value.returncode == 1
    pipeline = PipelineRun.objects.get()
    runs = {run.agent_name: run for run in AgentRun.objects.all()}
    assert {name: run.status for name, run in runs.items()} == {
        "scanner": AgentRunStatus.SUCCEEDED,
        "news": AgentRunStatus.SUCCEEDED,
        "flaky": AgentRunStatus.SUCCEEDED,
        "analysis": AgentRunStatus.FAILED,
        "writer": AgentRunStatus.SKIPPED,
        "publisher": AgentRunStatus.SKIPPED,
    }
    assert sorted(log) == ["analysis", "news", "scanner"]
    assert (runs["flaky"].attempt, runs["flaky"].counters, attempts) == (2, {"tries": 2}, [1, 2])
    assert broadcasts.statuses("flaky") == ["queued", "running", "retrying", "running", "succeeded"]
    assert runs["writer"].summary == "dependency analysis failed in this pipeline run"
    assert pipeline.status == PipelineRun.Status.PARTIAL
    assert {key: pipeline.summary[key] for key in ("succeeded", "failed", "skipped")} == {
        "succeeded": 3,
        "failed": 1,
        "skipped": 2,
    }
    # Executed by the worker, not in this process: once per agent, and once more for the retry.
    assert worker_state.total_count["apps.agents.tasks.execute_agent_run"] == executed_before + 7
    assert all(run.celery_task_id for run in runs.values() if run.status != AgentRunStatus.SKIPPED)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"Pipeline run #{pipeline.pk}: 6 agents."
    assert re.fullmatch(
        rf"Pipeline run #{pipeline.pk} partial: 3 succeeded, 1 failed, 2 skipped in [\d.]+ s\.", lines[-1]
    )
