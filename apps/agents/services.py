"""The agent framework's writes: configurations and schedules, the life of every agent run, pipeline runs.

Every run moves through its AgentRun row by conditional UPDATEs (queued → running → succeeded | failed |
skipped, with retrying between attempts), so a duplicate delivery of a task changes nothing, and each
transition is broadcast to the live dashboard. Single-flight per agent is the database's partial unique index
``agent_logs_single_flight``: the move to running fails on it while another run of the agent holds the flight,
in any process.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from celery.exceptions import SoftTimeLimitExceeded
from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.agents import orchestrator, registry, scheduler, selectors
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, PipelineRun, RunTrigger
from apps.core import live, metrics
from apps.core.live import DASHBOARD_GROUP
from apps.core.resilience import CircuitBreaker, CircuitOpenError, RateLimited, RetryPolicy, TransientError

logger = logging.getLogger(__name__)

RUN_AGENT_TASK = "apps.agents.tasks.run_agent"
RUN_PIPELINE_TASK = "apps.agents.tasks.run_pipeline"
PIPELINE_SCHEDULE_NAME = "agents: pipeline"

# Sent after every transition of an AgentRun, in the process that made it (``run``: the row as it now is).
# The terminal progress display of ``run_pipeline --once`` listens to it.
agent_run_changed = Signal()

_STARTABLE = (AgentRunStatus.QUEUED, AgentRunStatus.RETRYING)


@dataclass(frozen=True)
class RunOutcome:
    """What became of one delivery of a run; ``retry_in`` (seconds) when the task should try again."""

    status: str
    retry_in: float | None = None


# --- configurations and schedules ---------------------------------------------------------------------------


def _crontab(expression: str) -> CrontabSchedule:
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a schedule needs five crontab fields, not {expression!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    # Parsed by Celery first, so a typo fails here rather than in beat.
    crontab(minute, hour, day_of_week, day_of_month, month_of_year)
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=ZoneInfo("UTC"),
    )
    return schedule


def _default_periodic_task(agent: type[BaseAgent]) -> PeriodicTask | None:
    if not agent.default_schedule:
        return None
    try:
        schedule = _crontab(agent.default_schedule)
    except ValueError as exc:
        raise ValueError(f"{agent.name}.default_schedule: {exc}") from exc
    task, _ = PeriodicTask.objects.get_or_create(
        name=f"agent: {agent.name}",
        defaults={
            "task": RUN_AGENT_TASK,
            "kwargs": json.dumps({"agent_name": agent.name}),
            "crontab": schedule,
            "description": agent.description,
        },
    )
    return task


@transaction.atomic
def agent_config_sync() -> list[AgentConfig]:
    """A configuration for every registered agent that has none yet, with its default schedule; and the
    pipeline's schedule when AGENT_PIPELINE_SCHEDULE asks for one. Returns the configurations it created.

    An agent's schedule is created with its configuration, once: after that it belongs to the operators, who
    edit, disable or delete it in the admin. The pipeline's comes back while the setting asks for it, so it is
    stopped by disabling it.
    """
    existing = selectors.agent_config_names()
    created = []
    for agent in registry.all_agents():
        if agent.name in existing:
            continue
        config, was_created = AgentConfig.objects.get_or_create(agent_name=agent.name)
        if was_created:
            config.periodic_task = _default_periodic_task(agent)
            config.save(update_fields=["periodic_task", "updated_at"])
            created.append(config)
    pipeline_schedule = PeriodicTask.objects.filter(name=PIPELINE_SCHEDULE_NAME)
    if settings.AGENT_PIPELINE_SCHEDULE and not pipeline_schedule.exists():
        PeriodicTask.objects.get_or_create(
            name=PIPELINE_SCHEDULE_NAME,
            defaults={
                "task": RUN_PIPELINE_TASK,
                "crontab": _crontab(settings.AGENT_PIPELINE_SCHEDULE),
                "description": "Every registered agent, phase by phase",
            },
        )
    if created:
        logger.info("created agent configurations for %s", ", ".join(c.agent_name for c in created))
    return created


def agent_config_clean_parameters(*, agent_name: str, parameters: Any) -> dict[str, Any]:
    """The operator's parameter overrides, checked by the agent; raises ValidationError.

    The overrides are stored, not the merged result, so a default changed in code reaches every agent that
    did not override it. A configuration left behind by an agent that no longer exists cannot be checked and
    is kept as it is.
    """
    if not isinstance(parameters, dict):
        raise ValidationError("parameters must be a JSON object")
    try:
        agent = registry.get(agent_name)
    except registry.UnknownAgent:
        return parameters
    agent.validate_parameters(parameters)
    return parameters


def agent_config_pause(*, agent_names: Iterable[str]) -> int:
    """Pause the agents' scheduled and pipeline runs; returns how many were running unpaused."""
    return AgentConfig.objects.filter(agent_name__in=list(agent_names), paused=False).update(
        paused=True, updated_at=timezone.now()
    )


def agent_config_resume(*, agent_names: Iterable[str]) -> int:
    return AgentConfig.objects.filter(agent_name__in=list(agent_names), paused=True).update(
        paused=False, updated_at=timezone.now()
    )


# --- announcing transitions ---------------------------------------------------------------------------------


def _run_payload(run: AgentRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "agent": run.agent_name,
        "status": run.status,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "pipeline_run": run.pipeline_run_id,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "counters": run.counters,
        "summary": run.summary,
        "error": run.error,
        "degraded_reason": run.degraded_reason,
    }


def _announce_run(run: AgentRun, **extra: Any) -> None:
    metrics.agent_run_changed(agent=run.agent_name, status=run.status, duration_ms=run.duration_ms)
    live.broadcast(DASHBOARD_GROUP, "agent_run", {**_run_payload(run), **extra})
    agent_run_changed.send(sender=AgentRun, run=run)


def _announce_pipeline(pipeline: PipelineRun) -> None:
    metrics.pipeline_run_changed(status=pipeline.status)
    payload = {
        "id": pipeline.pk,
        "name": pipeline.name,
        "status": pipeline.status,
        "trigger": pipeline.trigger,
        "agents": pipeline.agents,
        "queued_at": pipeline.queued_at,
        "started_at": pipeline.started_at,
        "finished_at": pipeline.finished_at,
        "summary": pipeline.summary,
        "error": pipeline.error,
        "degraded_reason": pipeline.degraded_reason,
    }
    live.broadcast(DASHBOARD_GROUP, "pipeline_run", payload)


def _transition(
    run_id: int, *, from_statuses: Sequence[str], announce: dict[str, Any] | None = None, **changes: Any
) -> AgentRun | None:
    """Move the run on when it is still in one of ``from_statuses``; None when something else moved it."""
    if not AgentRun.objects.filter(pk=run_id, status__in=from_statuses).update(**changes):
        return None
    run = AgentRun.objects.get(pk=run_id)
    _announce_run(run, **(announce or {}))
    return run


def _duration_ms(started_at: dt.datetime | None, finished_at: dt.datetime) -> int | None:
    if started_at is None:
        return None
    # Clamped: the wall clock may step back between the two readings.
    return max(0, int((finished_at - started_at).total_seconds() * 1000))


def _finish(run: AgentRun, status: str, *, from_statuses: Sequence[str], **changes: Any) -> RunOutcome:
    """Close the run; its duration runs from the start of its (last) attempt, when it had one."""
    now = timezone.now()
    attempted = run.status == AgentRunStatus.RUNNING
    _transition(
        run.pk,
        from_statuses=from_statuses,
        status=status,
        finished_at=now,
        duration_ms=_duration_ms(run.started_at, now) if attempted else None,
        **changes,
    )
    return RunOutcome(status)


def _skip(run: AgentRun, reason: str, *, from_statuses: Sequence[str] = _STARTABLE) -> RunOutcome:
    logger.info("agent run #%s of %s skipped: %s", run.pk, run.agent_name, reason)
    return _finish(run, AgentRunStatus.SKIPPED, from_statuses=from_statuses, summary=reason)


# --- agent runs ---------------------------------------------------------------------------------------------


def agent_run_create(*, agent_name: str, trigger: str, pipeline_run: PipelineRun | None = None) -> AgentRun:
    run = AgentRun.objects.create(agent_name=agent_name, trigger=trigger, pipeline_run=pipeline_run)
    _announce_run(run)
    return run


def agent_run_enqueue(*, agent_name: str, trigger: str) -> AgentRun:
    """Queue one run of the agent; its task is sent once the row is committed."""
    try:
        agent: type[BaseAgent] | None = registry.get(agent_name)
    except registry.UnknownAgent:
        # Still recorded, and then failed by the run itself, so a stale schedule shows up in the logs.
        agent = None
    run = agent_run_create(agent_name=agent_name, trigger=trigger)
    signature = orchestrator.agent_run_signature(run_id=run.pk, agent=agent)
    transaction.on_commit(partial(scheduler.dispatch, signature))
    return run


def _dependency_problem(run: AgentRun, agent: type[BaseAgent]) -> str | None:
    if run.pipeline_run_id is None or not agent.depends_on:
        return None
    planned = set(selectors.pipeline_run_get(pipeline_run_id=run.pipeline_run_id).agents)
    dependencies = [name for name in agent.depends_on if name in planned]
    statuses = selectors.agent_run_statuses_in_pipeline(
        pipeline_run_id=run.pipeline_run_id, agent_names=set(dependencies)
    )
    for name in dependencies:
        status = statuses.get(name)
        if status == AgentRunStatus.SUCCEEDED:
            continue
        if status == AgentRunStatus.FAILED:
            return f"dependency {name} failed in this pipeline run"
        if status == AgentRunStatus.SKIPPED:
            return f"dependency {name} was skipped in this pipeline run"
        return f"dependency {name} has not succeeded in this pipeline run (it is {status or 'missing'})"
    return None


def _skip_reason(run: AgentRun, agent: type[BaseAgent], config: AgentConfig | None) -> str | None:
    if config is not None and not config.enabled:
        return "disabled in its configuration"
    # A paused agent still runs when an operator starts it by hand.
    if config is not None and config.paused and run.trigger != RunTrigger.MANUAL:
        return "paused"
    if problem := _dependency_problem(run, agent):
        return problem
    open_services = [service for service in agent.services if CircuitBreaker(service).is_open()]
    blocked = {
        "all": bool(open_services),
        "any": bool(open_services) and len(open_services) == len(agent.services),
        "none": False,
    }[agent.service_policy]
    if blocked:
        noun = "breaker" if len(open_services) == 1 else "breakers"
        return f"circuit {noun} open for {', '.join(open_services)}"
    return None


def _recover_stale(agent: type[BaseAgent], *, now: dt.datetime, current: AgentRun | None) -> int:
    """Fail the runs a killed worker left 'running': no run outlives the hard time limit, so one that has is
    not running any more, and it would otherwise hold the agent's flight for ever. Returns how many."""
    _, hard = orchestrator.time_limits(agent)
    stale = AgentRun.objects.filter(
        agent_name=agent.name, status=AgentRunStatus.RUNNING, started_at__lt=now - dt.timedelta(seconds=hard)
    )
    if current is not None:
        stale = stale.exclude(pk=current.pk)
    recovered_count = 0
    for run in stale:
        assert run.started_at is not None
        elapsed = now - run.started_at
        recovered = _transition(
            run.pk,
            from_statuses=[AgentRunStatus.RUNNING],
            status=AgentRunStatus.FAILED,
            finished_at=now,
            duration_ms=int(elapsed.total_seconds() * 1000),
            error=(
                f"abandoned: still marked running {int(elapsed.total_seconds())} s after it started, past the "
                f"hard time limit of {hard} s (its worker was lost)"
            ),
        )
        if recovered is not None:
            recovered_count += 1
            logger.warning("agent run #%s of %s was abandoned; marked failed", run.pk, agent.name)
            if run.pipeline_run_id is not None:
                # Its pipeline's canvas waited for this run's task, which is gone.
                pipeline_run_abort(pipeline_run_id=run.pipeline_run_id, reason=f"{agent.name}: abandoned")
    return recovered_count


def agent_runs_recover_abandoned(*, now: dt.datetime | None = None) -> int:
    """The periodic sweep (beat, ``agents.recover_abandoned_runs``): every agent's runs left 'running' past
    its hard time limit are failed as abandoned, without waiting for the agent's next start. A worker lost
    mid-run gets its message back first (late acknowledgement) and takes its run over; this catches the runs
    whose message is gone for good. Returns how many it failed.

    Not on the embedded default: there runs have no time limit (nothing can stop a thread), so a long run
    past the limit is still working; a run a restart left behind is failed at its agent's next start, and a
    deferred retry's lease brings its attempt back."""
    if settings.AGENTS_RUN_IN_PROCESS:
        return 0
    now = now or timezone.now()
    names = set(
        AgentRun.objects.filter(status=AgentRunStatus.RUNNING).values_list("agent_name", flat=True).distinct()
    )
    recovered = 0
    for name in sorted(names):
        try:
            agent = registry.get(name)
        except registry.UnknownAgent:
            continue
        recovered += _recover_stale(agent, now=now, current=None)
    return recovered


class _Flight(enum.Enum):
    HELD_ELSEWHERE = "another run of the agent holds the flight"
    MOVED_ON = "another delivery moved the row first"


def _claim_flight(
    run: AgentRun, *, attempt: int, task_id: str, from_statuses: Sequence[str]
) -> AgentRun | _Flight:
    """Move the run to running; the row as it now is when it holds the agent's flight."""
    rows = AgentRun.objects.filter(pk=run.pk, status__in=from_statuses)
    try:
        # A savepoint, so the violation leaves any surrounding transaction usable.
        with transaction.atomic():
            changed = rows.update(
                status=AgentRunStatus.RUNNING,
                attempt=attempt,
                started_at=timezone.now(),
                finished_at=None,
                duration_ms=None,
                celery_task_id=task_id,
                error="",
                traceback="",
            )
    except IntegrityError:
        return _Flight.HELD_ELSEWHERE
    if not changed:
        return _Flight.MOVED_ON
    claimed = AgentRun.objects.get(pk=run.pk)
    _announce_run(claimed)
    return claimed


def _mark_pipeline_running(pipeline_run_id: int) -> None:
    now = timezone.now()
    if PipelineRun.objects.filter(pk=pipeline_run_id, status=PipelineRun.Status.QUEUED).update(
        status=PipelineRun.Status.RUNNING, started_at=now
    ):
        _announce_pipeline(selectors.pipeline_run_get(pipeline_run_id=pipeline_run_id))


def _retry_delay(error: TransientError, attempt: int) -> float:
    if isinstance(error, RateLimited):
        # The platform said how long to wait; waiting less only earns another 429.
        return error.retry_after
    policy = RetryPolicy(base_delay=settings.AGENT_RETRY_BASE_DELAY, max_delay=settings.AGENT_RETRY_MAX_DELAY)
    return policy.delay(attempt)


def agent_run_execute(*, run_id: int, task_id: str = "", attempt: int = 1) -> RunOutcome:
    """Run the agent of one queued (or retrying) AgentRun row, recording everything on the row.

    Never raises for what the agent does: a failure is recorded, a transient error asks for another attempt
    through ``RunOutcome.retry_in`` until the agent's attempts are used up.
    """
    run = AgentRun.objects.filter(pk=run_id).first()
    if run is None:
        logger.warning("agent run #%s does not exist", run_id)
        return RunOutcome("missing")
    from_statuses: Sequence[str] = _STARTABLE
    if run.status not in _STARTABLE:
        # With late acknowledgement a message comes back when its worker died mid-run; the row it left
        # running is this very run, so it starts again. Any other delivery of a started run is a duplicate.
        if not (run.status == AgentRunStatus.RUNNING and task_id and run.celery_task_id == task_id):
            logger.info("agent run #%s is %s already; nothing to do", run.pk, run.status)
            return RunOutcome(run.status)
        logger.warning("agent run #%s: its worker was lost mid-run; running it again", run.pk)
        from_statuses = [AgentRunStatus.RUNNING]

    if run.pipeline_run_id is not None:
        _mark_pipeline_running(run.pipeline_run_id)
    try:
        agent = registry.get(run.agent_name)
    except registry.UnknownAgent:
        return _finish(
            run,
            AgentRunStatus.FAILED,
            from_statuses=from_statuses,
            error=f"no agent named {run.agent_name!r} is registered",
        )
    config = selectors.agent_config_get(agent_name=agent.name)
    if reason := _skip_reason(run, agent, config):
        return _skip(run, reason, from_statuses=from_statuses)
    try:
        parameters = agent.validate_parameters(config.parameters if config else {})
    except ValidationError as exc:
        return _finish(
            run,
            AgentRunStatus.FAILED,
            from_statuses=from_statuses,
            error=f"invalid parameters: {'; '.join(exc.messages)}",
        )

    _recover_stale(agent, now=timezone.now(), current=run)
    claimed = _claim_flight(run, attempt=attempt, task_id=task_id, from_statuses=from_statuses)
    if claimed is _Flight.HELD_ELSEWHERE:
        holder = selectors.agent_run_in_flight(agent_name=agent.name)
        holding = f"run #{holder.pk}" if holder else "another run"
        return _skip(run, f"already running ({holding} holds the flight)", from_statuses=from_statuses)
    if claimed is _Flight.MOVED_ON:
        return RunOutcome(AgentRun.objects.get(pk=run.pk).status)
    return _execute(claimed, agent, parameters=parameters, attempt=attempt)


def _execute(
    run: AgentRun, agent: type[BaseAgent], *, parameters: dict[str, Any], attempt: int
) -> RunOutcome:
    running = [AgentRunStatus.RUNNING]
    context = AgentContext(
        run_id=run.pk,
        agent_name=agent.name,
        trigger=run.trigger,
        now=timezone.now(),
        parameters=parameters,
        pipeline_run_id=run.pipeline_run_id,
        logger=logging.getLogger(f"apps.agents.run.{agent.name}"),
    )
    max_attempts = agent.max_attempts or settings.AGENT_RETRY_MAX_ATTEMPTS
    try:
        result = agent().execute(context)
    except SoftTimeLimitExceeded:
        soft, _ = orchestrator.time_limits(agent)
        return _finish(
            run,
            AgentRunStatus.FAILED,
            from_statuses=running,
            error=f"stopped at the soft time limit of {soft} s",
            traceback=traceback.format_exc(),
        )
    except CircuitOpenError as exc:
        # The breaker opened while the agent ran: like one found open before the start, not a failure.
        service = exc.service or "a service"
        return _finish(
            run,
            AgentRunStatus.SKIPPED,
            from_statuses=running,
            summary=f"circuit breaker open for {service} (opened during the run)",
        )
    except TransientError as exc:
        error = f"{type(exc).__name__}: {exc}"
        if attempt >= max_attempts:
            return _finish(
                run,
                AgentRunStatus.FAILED,
                from_statuses=running,
                error=f"{error} (attempt {attempt} of {max_attempts})",
                traceback=traceback.format_exc(),
            )
        delay = _retry_delay(exc, attempt)
        logger.info("agent run #%s of %s: %s; retrying in %.1f s", run.pk, agent.name, error, delay)
        _transition(
            run.pk,
            from_statuses=running,
            announce={"retry_in": round(delay, 3)},
            status=AgentRunStatus.RETRYING,
            duration_ms=_duration_ms(run.started_at, timezone.now()),
            error=error,
            traceback=traceback.format_exc(),
        )
        return RunOutcome(AgentRunStatus.RETRYING, retry_in=delay)
    except Exception as exc:
        logger.exception("agent run #%s of %s failed", run.pk, agent.name)
        return _finish(
            run,
            AgentRunStatus.FAILED,
            from_statuses=running,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
    if not isinstance(result, AgentResult):
        return _finish(
            run,
            AgentRunStatus.FAILED,
            from_statuses=running,
            error=f"execute() returned {type(result).__name__}, not an AgentResult",
        )
    degraded_reason = result.degraded_reason()
    if degraded_reason:
        logger.warning("agent run #%s of %s succeeded degraded: %s", run.pk, agent.name, degraded_reason)
    return _finish(
        run,
        AgentRunStatus.SUCCEEDED,
        from_statuses=running,
        counters=dict(result.counters),
        summary=result.summary,
        degraded_reason=degraded_reason,
    )


def agent_run_mark_lost(*, run_id: int, reason: str) -> bool:
    """Record that the task executing the run died outside the agent's control (killed at the hard time
    limit, or an error in the framework itself). Such a task failure breaks the pipeline's canvas, so the
    rest of its pipeline run is closed here."""
    run = AgentRun.objects.filter(pk=run_id).first()
    if run is None:
        return False
    now = timezone.now()
    moved = _transition(
        run.pk,
        from_statuses=[*_STARTABLE, AgentRunStatus.RUNNING],
        status=AgentRunStatus.FAILED,
        finished_at=now,
        duration_ms=_duration_ms(run.started_at, now) if run.status == AgentRunStatus.RUNNING else None,
        error=reason,
    )
    if run.pipeline_run_id is not None:
        pipeline_run_abort(pipeline_run_id=run.pipeline_run_id, reason=f"{run.agent_name}: {reason}")
    return moved is not None


# --- pipeline runs ------------------------------------------------------------------------------------------


def pipeline_run_start(
    *, agent_names: Sequence[str] | None = None, trigger: str = RunTrigger.MANUAL
) -> PipelineRun:
    """Plan the agents (all registered ones by default), queue a run row for each and send the canvas once
    they are committed. Raises UnknownAgent or InvalidPipeline before writing anything."""
    agents = registry.all_agents() if agent_names is None else [registry.get(name) for name in agent_names]
    if not agents:
        raise orchestrator.InvalidPipeline("there are no agents to run")
    levels = orchestrator.plan_levels(agents)
    with transaction.atomic():
        pipeline = PipelineRun.objects.create(
            name="full" if agent_names is None else "selection",
            trigger=trigger,
            agents=[agent.name for level in levels for agent in level],
            summary={"levels": [[agent.name for agent in level] for level in levels]},
        )
        _announce_pipeline(pipeline)
        planned = [
            [
                (
                    agent,
                    agent_run_create(
                        agent_name=agent.name, trigger=RunTrigger.PIPELINE, pipeline_run=pipeline
                    ).pk,
                )
                for agent in level
            ]
            for level in levels
        ]
        canvas = orchestrator.build_canvas(pipeline_run_id=pipeline.pk, levels=planned)
        transaction.on_commit(partial(scheduler.dispatch, canvas))
    return pipeline


def _close_pipeline(pipeline_run_id: int, *, error: str = "") -> PipelineRun:
    counts = selectors.agent_run_status_counts(pipeline_run_id=pipeline_run_id)
    total = sum(counts.values())
    succeeded = counts[AgentRunStatus.SUCCEEDED]
    degraded = selectors.agent_run_degraded_in_pipeline(pipeline_run_id=pipeline_run_id)
    degraded_reason = "\n".join(f"{name}: {reason}" for name, reason in degraded)
    if total and succeeded == total:
        status = PipelineRun.Status.DEGRADED if degraded else PipelineRun.Status.SUCCEEDED
    elif succeeded:
        status = PipelineRun.Status.PARTIAL
    else:
        status = PipelineRun.Status.FAILED
    pipeline = selectors.pipeline_run_get(pipeline_run_id=pipeline_run_id)
    summary = {
        **pipeline.summary,
        "total": total,
        **{state: counts[state] for state in ("succeeded", "failed", "skipped")},
    }
    now = timezone.now()
    closing = PipelineRun.objects.filter(
        pk=pipeline_run_id, status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING]
    )
    if closing.update(
        status=status,
        finished_at=now,
        started_at=Coalesce("started_at", now),
        summary=summary,
        error=error,
        degraded_reason=degraded_reason,
    ):
        pipeline = selectors.pipeline_run_get(pipeline_run_id=pipeline_run_id)
        _announce_pipeline(pipeline)
    return pipeline


def pipeline_run_finish(*, pipeline_run_id: int) -> PipelineRun:
    """Close the pipeline run from its agents' outcomes: succeeded when all succeeded (degraded when one of
    them worked without a source it needed), failed when none did, partial otherwise."""
    return _close_pipeline(pipeline_run_id)


def pipeline_run_abort(*, pipeline_run_id: int, reason: str) -> PipelineRun:
    """Close a pipeline run whose canvas broke: the runs still queued will never be sent."""
    for run in selectors.agent_run_list_for_pipeline(pipeline_run_id=pipeline_run_id).filter(
        status=AgentRunStatus.QUEUED
    ):
        _skip(run, f"pipeline stopped: {reason}", from_statuses=[AgentRunStatus.QUEUED])
    return _close_pipeline(pipeline_run_id, error=reason)
