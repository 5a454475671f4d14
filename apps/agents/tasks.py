"""Celery tasks of the agent framework: thin, they take ids and call the services.

``execute_agent_run`` executes one AgentRun row; the orchestrator's canvas and ``run_agent`` send it with
the agent's own time limits. None of them raises for what an agent does (it is recorded on the row), so a
failed agent never aborts the chord that carries the next level of a pipeline.
"""

from __future__ import annotations

import time
from typing import Any

from billiard.einfo import ExceptionInfo
from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded, WorkerLostError

from apps.agents import services
from apps.agents.deferred import task_give_up_deferred, task_retry_deferred
from apps.agents.models import AgentRun, AgentRunStatus, RunTrigger


def _record_task_failure(
    task: Task,
    exc: Exception,
    task_id: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    einfo: ExceptionInfo,
) -> None:
    """``execute_agent_run.on_failure``: reached when the task itself dies, not the agent. The worker killed
    it at the hard time limit (Celery calls this in the worker's main process), its worker was lost, or the
    framework hit an error of its own (the database, say)."""
    run_id = args[0] if args else kwargs["run_id"]
    if isinstance(exc, TimeLimitExceeded):
        reason = f"killed at the hard time limit of {exc.args[0] if exc.args else '?'} s"
    elif isinstance(exc, WorkerLostError):
        reason = "its worker process was lost"
    else:
        reason = f"the run's task failed: {type(exc).__name__}: {exc}"
    services.agent_run_mark_lost(run_id=run_id, reason=reason)


@shared_task(bind=True, max_retries=None, on_failure=_record_task_failure)
def execute_agent_run(self: Task, run_id: int) -> str:
    # The service bounds the attempts (per agent); Celery's own limit is off so it never cuts in first.
    attempt = self.request.retries + 1
    while True:
        outcome = services.agent_run_execute(run_id=run_id, task_id=self.request.id or "", attempt=attempt)
        if outcome.retry_in is None:
            if outcome.status == AgentRunStatus.FAILED:
                # Its attempts ran out (when it ran from a deferred call, that row says so too).
                task_give_up_deferred(self, error=f"agent run #{run_id} failed")
            return outcome.status
        if not self.request.is_eager:
            raise self.retry(countdown=outcome.retry_in)
        # Eagerly Celery would retry at once, or, with task_eager_propagates, hand the Retry to the caller.
        # The embedded runtime keeps the next attempt as a deferred call (the run stays retrying, its next
        # attempt's time in deferred_tasks), so its one worker thread goes on to other work. A run inside a
        # pipeline is the exception: the eager canvas starts the next level as soon as this task returns,
        # and its dependants must see how the retries end (as a chord waits for them with a broker).
        run = AgentRun.objects.only("pipeline_run_id", "error").get(pk=run_id)
        if run.pipeline_run_id is None and task_retry_deferred(
            self, countdown=outcome.retry_in, error=run.error
        ):
            return outcome.status
        # Elsewhere (a pipeline, ``run_pipeline --once``, the tests) the task sits out the backoff (or the
        # platform's wait) and tries again.
        time.sleep(outcome.retry_in)
        attempt += 1


@shared_task
def run_agent(agent_name: str, trigger: str = RunTrigger.SCHEDULE) -> int:
    """Beat's entry for an agent's schedule: queue one run."""
    return services.agent_run_enqueue(agent_name=agent_name, trigger=trigger).pk


@shared_task
def run_pipeline(agent_names: list[str] | None = None, trigger: str = RunTrigger.SCHEDULE) -> int:
    """Beat's entry for a pipeline schedule: every registered agent unless ``agent_names`` says otherwise."""
    return services.pipeline_run_start(agent_names=agent_names, trigger=trigger).pk


@shared_task(name="agents.recover_abandoned_runs")
def recover_abandoned_runs() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): fail the runs a lost worker left running past their time limit."""
    return services.agent_runs_recover_abandoned()


@shared_task
def finish_pipeline_run(pipeline_run_id: int) -> str:
    return services.pipeline_run_finish(pipeline_run_id=pipeline_run_id).status
