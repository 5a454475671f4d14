"""One agent run, wrapped by the framework: every outcome recorded exactly on its AgentRun row and broadcast."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.db import connections
from django.utils import timezone

from apps.agents import orchestrator
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.factories import AgentConfigFactory, AgentRunFactory
from apps.agents.models import AgentRun, AgentRunStatus, RunTrigger
from apps.agents.services import agent_run_enqueue, agent_run_execute
from apps.agents.tasks import execute_agent_run, run_agent
from apps.agents.tests.conftest import Broadcasts
from apps.core.models import CircuitBreakerState
from apps.core.resilience import CircuitOpenError, PermanentError, RateLimited, TransientError

pytestmark = pytest.mark.django_db

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
AgentFactory = Callable[..., type[BaseAgent]]
Capture = Callable[..., AbstractContextManager[list[Callable[[], None]]]]


@pytest.fixture
def run_now(django_capture_on_commit_callbacks: Capture) -> Callable[..., AgentRun]:
    """Queue a run the way the admin and beat do, let its task run (eagerly) and return the row."""

    def run(agent_name: str, trigger: str = RunTrigger.MANUAL) -> AgentRun:
        with django_capture_on_commit_callbacks(execute=True):
            queued = agent_run_enqueue(agent_name=agent_name, trigger=trigger)
        return AgentRun.objects.get(pk=queued.pk)

    return run


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits of eager retries, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr("apps.agents.tasks.time.sleep", waited.append)
    return waited


def _raising(*errors: Exception) -> Callable[[AgentContext], AgentResult]:
    """Raises the errors one call after another, then succeeds."""
    pending = list(errors)

    def behaviour(ctx: AgentContext) -> AgentResult:
        if pending:
            raise pending.pop(0)
        return AgentResult(counters=Counter(items=2), summary=f"attempt ok for run {ctx.run_id}")

    return behaviour


def _recording(calls: list[int]) -> Callable[[AgentContext], AgentResult]:
    def behaviour(ctx: AgentContext) -> AgentResult:
        calls.append(ctx.run_id)
        return AgentResult()

    return behaviour


def test_a_successful_run_records_everything(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts
) -> None:
    seen: list[AgentContext] = []

    def behaviour(ctx: AgentContext) -> AgentResult:
        seen.append(ctx)
        traveller.shift(dt.timedelta(seconds=2, milliseconds=500))
        return AgentResult(counters=Counter(candles=240, articles=12), summary="Fetched 240 candles")

    agent("scanner", behaviour, default_parameters={"limit": 10})
    AgentConfigFactory.create(agent_name="scanner", parameters={"limit": 3})
    with time_machine.travel(START, tick=False) as traveller:
        run = run_now("scanner")

    assert run.status == AgentRunStatus.SUCCEEDED
    assert run.trigger == RunTrigger.MANUAL
    assert run.attempt == 1
    assert run.counters == {"candles": 240, "articles": 12}
    assert run.summary == "Fetched 240 candles"
    assert (run.queued_at, run.started_at) == (START, START)
    assert run.finished_at == START + dt.timedelta(seconds=2.5)
    assert run.duration_ms == 2500
    assert (run.error, run.traceback, run.pipeline_run) == ("", "", None)
    assert run.celery_task_id
    (ctx,) = seen
    assert (ctx.run_id, ctx.agent_name, ctx.trigger, ctx.now) == (run.pk, "scanner", "manual", START)
    assert ctx.parameters == {"limit": 3}
    assert ctx.pipeline_run_id is None

    assert broadcasts.statuses("scanner") == ["queued", "running", "succeeded"]
    assert {group for group, _, _ in broadcasts.events} == {"dashboard"}
    final = broadcasts.runs("scanner")[-1]
    assert final == {
        "id": run.pk,
        "agent": "scanner",
        "status": "succeeded",
        "trigger": "manual",
        "attempt": 1,
        "pipeline_run": None,
        "queued_at": START,
        "started_at": START,
        "finished_at": START + dt.timedelta(seconds=2.5),
        "duration_ms": 2500,
        "counters": {"candles": 240, "articles": 12},
        "summary": "Fetched 240 candles",
        "error": "",
        "degraded_reason": "",
    }


def test_a_failure_stores_the_error_and_traceback(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts, sleeps: list[float]
) -> None:
    def behaviour(ctx: AgentContext) -> AgentResult:
        raise RuntimeError("exchange returned nonsense")

    agent("scanner", behaviour)

    run = run_now("scanner")

    assert run.status == AgentRunStatus.FAILED
    assert run.error == "RuntimeError: exchange returned nonsense"
    assert run.traceback.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("exchange returned nonsense")' in run.traceback
    assert run.attempt == 1
    assert run.finished_at is not None
    assert run.started_at is not None
    assert run.duration_ms == int((run.finished_at - run.started_at).total_seconds() * 1000)
    assert run.counters == {}
    assert broadcasts.statuses("scanner") == ["queued", "running", "failed"]
    assert sleeps == []


def test_transient_errors_are_retried_with_backoff_until_success(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts, sleeps: list[float]
) -> None:
    agent("scanner", _raising(TransientError("timeout"), TransientError("502 from the exchange")))

    run = run_now("scanner")

    assert run.status == AgentRunStatus.SUCCEEDED
    assert run.attempt == 3
    assert (run.error, run.traceback) == ("", "")
    assert run.summary == f"attempt ok for run {run.pk}"
    events = broadcasts.runs("scanner")
    assert [(e["status"], e["attempt"]) for e in events] == [
        ("queued", 1),
        ("running", 1),
        ("retrying", 1),
        ("running", 2),
        ("retrying", 2),
        ("running", 3),
        ("succeeded", 3),
    ]
    retrying = [e for e in events if e["status"] == "retrying"]
    assert [e["error"] for e in retrying] == [
        "TransientError: timeout",
        "TransientError: 502 from the exchange",
    ]
    # Exponential with jitter: attempt n waits between half and all of base * 2**(n-1) (base 0.01 s here).
    first, second = (e["retry_in"] for e in retrying)
    assert 0.005 <= first <= 0.01
    assert 0.01 <= second <= 0.02
    # Eagerly, the task itself sits out the backoff before its next attempt.
    assert sleeps == pytest.approx([first, second], abs=0.001)


def test_a_platform_wait_is_the_countdown(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts, sleeps: list[float]
) -> None:
    agent("publisher", _raising(RateLimited("429 from X", retry_after=42.0, service="x")))

    run = run_now("publisher")

    assert (run.status, run.attempt) == (AgentRunStatus.SUCCEEDED, 2)
    (retrying,) = [e for e in broadcasts.runs("publisher") if e["status"] == "retrying"]
    assert retrying["retry_in"] == 42.0
    assert sleeps == [42.0]


def test_transient_errors_fail_the_run_when_attempts_run_out(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts, sleeps: list[float]
) -> None:
    agent("scanner", _raising(*(TransientError(f"timeout {n}") for n in range(1, 4))), max_attempts=2)

    run = run_now("scanner")

    assert (run.status, run.attempt) == (AgentRunStatus.FAILED, 2)
    assert run.error == "TransientError: timeout 2 (attempt 2 of 2)"
    assert "TransientError: timeout 2" in run.traceback
    assert broadcasts.statuses("scanner") == ["queued", "running", "retrying", "running", "failed"]
    assert len(sleeps) == 1


def test_a_permanent_error_is_not_retried(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts, sleeps: list[float]
) -> None:
    agent("publisher", _raising(PermanentError("403: the app may not post", service="x")))

    run = run_now("publisher")

    assert (run.status, run.attempt) == (AgentRunStatus.FAILED, 1)
    assert run.error == "PermanentError: 403: the app may not post"
    assert broadcasts.statuses("publisher") == ["queued", "running", "failed"]
    assert sleeps == []


def test_the_soft_time_limit_fails_the_run_with_the_reason(
    agent: AgentFactory, run_now: Callable[..., AgentRun]
) -> None:
    agent("slow", _raising(SoftTimeLimitExceeded()), soft_time_limit=5)

    run = run_now("slow")

    assert run.status == AgentRunStatus.FAILED
    assert run.error == "stopped at the soft time limit of 5 s"
    assert "SoftTimeLimitExceeded" in run.traceback


def test_time_limits_travel_with_each_run(agent: AgentFactory, settings: Any) -> None:
    settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT = 300, 360
    default = agent("default")
    own = agent("own", soft_time_limit=30, time_limit=45)
    longer = agent("longer", soft_time_limit=900)

    def options(agent_class: type[BaseAgent] | None) -> tuple[int, int]:
        signature = orchestrator.agent_run_signature(run_id=1, agent=agent_class)
        assert signature.immutable
        return signature.options["soft_time_limit"], signature.options["time_limit"]

    assert options(default) == (300, 360)
    assert options(own) == (30, 45)
    # Raising only the soft limit keeps the usual minute between the warning and the kill.
    assert options(longer) == (900, 960)
    assert options(None) == (300, 360)


def test_killed_at_the_hard_time_limit(agent: AgentFactory, broadcasts: Broadcasts) -> None:
    agent("slow")
    run = AgentRunFactory.create(
        agent_name="slow", status=AgentRunStatus.RUNNING, finished_at=None, duration_ms=None
    )

    # What the worker's main process calls when it kills the task.
    execute_agent_run.on_failure(TimeLimitExceeded(360), "task-1", (run.pk,), {}, None)

    run.refresh_from_db()
    assert run.status == AgentRunStatus.FAILED
    assert run.error == "killed at the hard time limit of 360 s"
    assert run.finished_at is not None
    assert broadcasts.statuses("slow") == ["failed"]


def test_a_second_start_while_one_runs_is_skipped(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts
) -> None:
    calls: list[int] = []
    agent("scanner", _recording(calls))
    holder = AgentRunFactory.create(
        agent_name="scanner", status=AgentRunStatus.RUNNING, finished_at=None, duration_ms=None
    )
    before = AgentRun.objects.filter(pk=holder.pk).values().get()

    run = run_now("scanner")

    assert run.status == AgentRunStatus.SKIPPED
    assert run.summary == f"already running (run #{holder.pk} holds the flight)"
    assert (run.started_at, run.duration_ms, run.error) == (None, None, "")
    assert calls == []
    assert AgentRun.objects.filter(pk=holder.pk).values().get() == before
    assert broadcasts.statuses("scanner") == ["queued", "skipped"]


def test_other_agents_are_not_held_by_a_running_one(
    agent: AgentFactory, run_now: Callable[..., AgentRun]
) -> None:
    agent("analysis")
    AgentRunFactory.create(
        agent_name="scanner", status=AgentRunStatus.RUNNING, finished_at=None, duration_ms=None
    )

    assert run_now("analysis").status == AgentRunStatus.SUCCEEDED


def test_a_stale_running_row_is_abandoned_before_the_attempt(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts
) -> None:
    agent("scanner", time_limit=60, soft_time_limit=50)
    with time_machine.travel(START, tick=False):
        stale = AgentRunFactory.create(
            agent_name="scanner",
            status=AgentRunStatus.RUNNING,
            started_at=START - dt.timedelta(seconds=61),
            finished_at=None,
            duration_ms=None,
        )
        run = run_now("scanner")

    stale.refresh_from_db()
    assert stale.status == AgentRunStatus.FAILED
    assert stale.error == (
        "abandoned: still marked running 61 s after it started, past the hard time limit of 60 s "
        "(its worker was lost)"
    )
    assert (stale.finished_at, stale.duration_ms) == (START, 61000)
    assert run.status == AgentRunStatus.SUCCEEDED
    assert broadcasts.statuses("scanner") == ["queued", "failed", "running", "succeeded"]


def test_a_running_row_within_the_hard_limit_still_holds_the_flight(
    agent: AgentFactory, run_now: Callable[..., AgentRun]
) -> None:
    agent("scanner", time_limit=60, soft_time_limit=50)
    with time_machine.travel(START, tick=False):
        holder = AgentRunFactory.create(
            agent_name="scanner",
            status=AgentRunStatus.RUNNING,
            started_at=START - dt.timedelta(seconds=59),
            finished_at=None,
            duration_ms=None,
        )
        run = run_now("scanner")

    holder.refresh_from_db()
    assert holder.status == AgentRunStatus.RUNNING
    assert run.status == AgentRunStatus.SKIPPED


def test_an_open_breaker_skips_the_agent_that_needs_it(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts
) -> None:
    calls: list[int] = []
    agent("scanner", _recording(calls), services=("exchange", "news"))
    agent("writer", services=("llm",))
    CircuitBreakerState.objects.create(
        service="exchange", state=CircuitBreakerState.State.OPEN, opened_at=timezone.now()
    )
    CircuitBreakerState.objects.create(service="news", consecutive_failures=2)

    skipped = run_now("scanner")
    unaffected = run_now("writer")

    assert skipped.status == AgentRunStatus.SKIPPED
    assert skipped.summary == "circuit breaker open for exchange"
    assert skipped.error == ""
    assert calls == []
    assert unaffected.status == AgentRunStatus.SUCCEEDED
    assert broadcasts.statuses("scanner") == ["queued", "skipped"]


def test_an_agent_that_works_with_any_of_its_services_is_skipped_only_when_all_are_open(
    agent: AgentFactory, run_now: Callable[..., AgentRun]
) -> None:
    calls: list[int] = []
    agent("publisher", _recording(calls), services=("x", "telegram"), service_policy="any")
    CircuitBreakerState.objects.create(
        service="x", state=CircuitBreakerState.State.OPEN, opened_at=timezone.now()
    )

    assert run_now("publisher").status == AgentRunStatus.SUCCEEDED
    assert len(calls) == 1

    CircuitBreakerState.objects.filter(service="telegram").update(
        state=CircuitBreakerState.State.OPEN, opened_at=timezone.now()
    )
    skipped = run_now("publisher")

    assert (skipped.status, skipped.summary) == (
        AgentRunStatus.SKIPPED,
        "circuit breakers open for x, telegram",
    )
    assert len(calls) == 1


def test_a_breaker_due_for_its_trial_does_not_skip(
    agent: AgentFactory, run_now: Callable[..., AgentRun], settings: Any
) -> None:
    agent("scanner", services=("exchange",))
    settings.CIRCUIT_BREAKER_RESET_SECONDS = 60
    CircuitBreakerState.objects.create(
        service="exchange",
        state=CircuitBreakerState.State.OPEN,
        opened_at=timezone.now() - dt.timedelta(seconds=61),
    )

    assert run_now("scanner").status == AgentRunStatus.SUCCEEDED


def test_a_breaker_that_opens_during_the_run_skips_it(
    agent: AgentFactory, run_now: Callable[..., AgentRun], sleeps: list[float]
) -> None:
    agent("publisher", _raising(CircuitOpenError("telegram is unavailable", service="telegram")))

    run = run_now("publisher")

    assert (run.status, run.attempt) == (AgentRunStatus.SKIPPED, 1)
    assert run.summary == "circuit breaker open for telegram (opened during the run)"
    assert run.duration_ms is not None
    assert sleeps == []


def test_a_paused_agent_skips_scheduled_runs_but_runs_by_hand(
    agent: AgentFactory, run_now: Callable[..., AgentRun]
) -> None:
    agent("scanner")
    AgentConfigFactory.create(agent_name="scanner", paused=True)

    scheduled = run_now("scanner", RunTrigger.SCHEDULE)
    manual = run_now("scanner", RunTrigger.MANUAL)

    assert (scheduled.status, scheduled.summary) == (AgentRunStatus.SKIPPED, "paused")
    assert manual.status == AgentRunStatus.SUCCEEDED


def test_a_disabled_agent_is_skipped_however_it_is_started(
    agent: AgentFactory, run_now: Callable[..., AgentRun]
) -> None:
    agent("scanner")
    AgentConfigFactory.create(agent_name="scanner", enabled=False)

    for trigger in (RunTrigger.SCHEDULE, RunTrigger.MANUAL):
        run = run_now("scanner", trigger)
        assert (run.status, run.summary) == (AgentRunStatus.SKIPPED, "disabled in its configuration")


def test_invalid_parameters_fail_the_run(agent: AgentFactory, run_now: Callable[..., AgentRun]) -> None:
    agent("scanner", default_parameters={"limit": 10})
    AgentConfigFactory.create(agent_name="scanner", parameters={"limit": "ten"})

    run = run_now("scanner")

    assert run.status == AgentRunStatus.FAILED
    assert run.error == "invalid parameters: scanner.limit must be int, not str"


def test_a_schedule_for_an_unknown_agent_fails_visibly(django_capture_on_commit_callbacks: Capture) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run_id = run_agent.delay("retired_agent").get()

    run = AgentRun.objects.get(pk=run_id)
    assert (run.status, run.trigger) == (AgentRunStatus.FAILED, RunTrigger.SCHEDULE)
    assert run.error == "no agent named 'retired_agent' is registered"


def test_an_agent_that_returns_no_result_fails(agent: AgentFactory, run_now: Callable[..., AgentRun]) -> None:
    agent("sloppy", lambda ctx: None)

    run = run_now("sloppy")

    assert (run.status, run.error) == (
        AgentRunStatus.FAILED,
        "execute() returned NoneType, not an AgentResult",
    )


def test_a_duplicate_delivery_changes_nothing(
    agent: AgentFactory, run_now: Callable[..., AgentRun], broadcasts: Broadcasts
) -> None:
    calls: list[int] = []
    agent("scanner", _recording(calls))
    run = run_now("scanner")
    before = AgentRun.objects.filter(pk=run.pk).values().get()
    events = len(broadcasts.events)

    outcome = agent_run_execute(run_id=run.pk, task_id="another-delivery")

    assert outcome.status == AgentRunStatus.SUCCEEDED
    assert AgentRun.objects.filter(pk=run.pk).values().get() == before
    assert len(calls) == 1
    assert len(broadcasts.events) == events


def test_a_message_redelivered_after_its_worker_died_runs_again(agent: AgentFactory) -> None:
    agent("scanner")
    lost = AgentRunFactory.create(
        agent_name="scanner",
        status=AgentRunStatus.RUNNING,
        celery_task_id="task-abc",
        finished_at=None,
        duration_ms=None,
    )

    other = agent_run_execute(run_id=lost.pk, task_id="task-xyz")
    same = agent_run_execute(run_id=lost.pk, task_id="task-abc")

    lost.refresh_from_db()
    assert other.status == AgentRunStatus.RUNNING
    assert same.status == AgentRunStatus.SUCCEEDED
    assert lost.status == AgentRunStatus.SUCCEEDED


# --- single-flight across connections ------------------------------------------------------------------------


@pytest.fixture
def blocking_agent(agent: AgentFactory) -> Iterator[tuple[threading.Event, threading.Event]]:
    started, release = threading.Event(), threading.Event()

    def behaviour(ctx: AgentContext) -> AgentResult:
        started.set()
        assert release.wait(10)
        return AgentResult(summary="held the flight")

    agent("scanner", behaviour)
    yield started, release
    release.set()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_single_flight_holds_across_concurrent_workers(
    blocking_agent: tuple[threading.Event, threading.Event],
) -> None:
    started, release = blocking_agent
    runs = [AgentRun.objects.create(agent_name="scanner") for _ in range(4)]
    go = threading.Barrier(len(runs))
    outcomes: dict[int, str] = {}

    def worker(run_id: int) -> None:
        try:
            go.wait(5)
            outcomes[run_id] = agent_run_execute(run_id=run_id, task_id=f"task-{run_id}").status
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(run.pk,)) for run in runs]
    for thread in threads:
        thread.start()
    assert started.wait(10)
    # Everyone but the holder gives up at once, while the holder is still running.
    deadline = time.monotonic() + 10
    while AgentRun.objects.filter(status=AgentRunStatus.SKIPPED).count() < len(runs) - 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    release.set()
    for thread in threads:
        thread.join(10)

    statuses = Counter(outcomes.values())
    assert statuses == {AgentRunStatus.SUCCEEDED: 1, AgentRunStatus.SKIPPED: len(runs) - 1}
    holder = AgentRun.objects.get(status=AgentRunStatus.SUCCEEDED)
    skipped = AgentRun.objects.filter(status=AgentRunStatus.SKIPPED)
    assert {run.summary for run in skipped} == {f"already running (run #{holder.pk} holds the flight)"}
