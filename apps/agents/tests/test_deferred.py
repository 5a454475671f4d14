"""Deferred task calls, the embedded default's durable retries: an agent run's transient failure keeps its
next attempt in ``deferred_tasks`` (the run stays retrying) instead of sleeping in the one worker thread; the
poller runs it when due and not before; a restart takes up calls a dead runner left claimed once their lease
has expired; with real threads, the runtime's poller runs a call as soon as it is written and a new runtime
takes up what the old one left. The admin shows the calls."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import time_machine
from django.db import connections
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as DjangoSettings

from apps.accounts.factories import UserFactory
from apps.agents import scheduler
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.deferred import (
    KEEP_SUCCEEDED,
    LEASE,
    deferred_task_schedule,
    deferred_tasks_claim_due,
    deferred_tasks_prune,
    deferred_tasks_run_due,
)
from apps.agents.models import AgentRun, AgentRunStatus, DeferredTask, DeferredTaskStatus, RunTrigger
from apps.agents.services import agent_run_enqueue
from apps.agents.tests.conftest import Broadcasts
from apps.core.resilience import RateLimited, TransientError

AgentFactory = Callable[..., type[BaseAgent]]
Capture = Callable[..., AbstractContextManager[list[Callable[[], None]]]]

T0 = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
EXECUTE = "apps.agents.tasks.execute_agent_run"


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch, settings: DjangoSettings) -> None:
    """This process runs the embedded runtime, whose poller is driven by the test (``deferred_tasks_run_due``
    is what it runs each time it wakes); backoffs of real length."""
    monkeypatch.setattr(scheduler, "runs_deferred_calls", lambda: True)
    settings.AGENT_RETRY_BASE_DELAY = 60
    settings.AGENT_RETRY_MAX_DELAY = 300


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr("apps.agents.tasks.time.sleep", waited.append)
    return waited


@pytest.fixture
def run_now(django_capture_on_commit_callbacks: Capture) -> Callable[..., AgentRun]:
    def run(agent_name: str) -> AgentRun:
        with django_capture_on_commit_callbacks(execute=True):
            queued = agent_run_enqueue(agent_name=agent_name, trigger=RunTrigger.MANUAL)
        return AgentRun.objects.get(pk=queued.pk)

    return run


def _failing(*errors: Exception) -> Callable[[AgentContext], AgentResult]:
    """Raises the errors one call after another, then succeeds."""
    pending = list(errors)

    def behaviour(ctx: AgentContext) -> AgentResult:
        if pending:
            raise pending.pop(0)
        return AgentResult(counters=Counter(items=1), summary="ok")

    return behaviour


@pytest.mark.django_db
def test_a_transient_failure_defers_the_next_attempt_instead_of_sleeping(
    embedded: None,
    clock: Any,
    agent: AgentFactory,
    run_now: Callable[..., AgentRun],
    broadcasts: Broadcasts,
    sleeps: list[float],
) -> None:
    agent("scanner", _failing(TransientError("exchange 502")))

    run = run_now("scanner")

    assert sleeps == []
    assert (run.status, run.attempt, run.error) == (
        AgentRunStatus.RETRYING,
        1,
        "TransientError: exchange 502",
    )
    (retrying,) = [e for e in broadcasts.runs("scanner") if e["status"] == "retrying"]
    row = DeferredTask.objects.get()
    assert (row.task_name, row.args, row.retries, row.status) == (
        EXECUTE,
        [run.pk],
        1,
        DeferredTaskStatus.PENDING,
    )
    assert row.last_error == "TransientError: exchange 502"
    # The wait the framework announced, from the agents' policy (60 s for the first retry, jittered).
    assert 30 <= retrying["retry_in"] <= 60
    assert abs((row.eta - T0).total_seconds() - retrying["retry_in"]) < 0.001

    clock.move_to(row.eta - dt.timedelta(seconds=1))
    assert deferred_tasks_run_due() == 0
    assert AgentRun.objects.get(pk=run.pk).status == AgentRunStatus.RETRYING

    clock.move_to(row.eta)
    assert deferred_tasks_run_due() == 1

    run.refresh_from_db()
    assert (run.status, run.attempt, run.summary, run.error) == (AgentRunStatus.SUCCEEDED, 2, "ok", "")
    assert run.celery_task_id == f"deferred-{row.pk}-1"
    row.refresh_from_db()
    assert row.status == DeferredTaskStatus.SUCCEEDED
    assert sleeps == []
    assert broadcasts.statuses("scanner") == ["queued", "running", "retrying", "running", "succeeded"]


@pytest.mark.django_db
def test_a_platform_wait_is_the_deferral(
    embedded: None, clock: Any, agent: AgentFactory, run_now: Callable[..., AgentRun], sleeps: list[float]
) -> None:
    agent("publisher", _failing(RateLimited("429 from X", retry_after=420.0, service="x")))

    run_now("publisher")

    assert DeferredTask.objects.get().eta == T0 + dt.timedelta(seconds=420)
    assert sleeps == []


@pytest.mark.django_db
def test_attempts_running_out_fail_the_run_and_its_deferred_call(
    embedded: None, clock: Any, agent: AgentFactory, run_now: Callable[..., AgentRun], sleeps: list[float]
) -> None:
    agent("scanner", _failing(*[TransientError("exchange 502")] * 5), max_attempts=3)

    run = run_now("scanner")
    for attempt in (2, 3):
        row = DeferredTask.objects.get()
        assert row.retries == attempt - 1
        clock.move_to(row.eta)
        assert deferred_tasks_run_due() == 1

    run.refresh_from_db()
    assert (run.status, run.attempt, run.error) == (
        AgentRunStatus.FAILED,
        3,
        "TransientError: exchange 502 (attempt 3 of 3)",
    )
    row = DeferredTask.objects.get()
    assert (row.status, row.retries, row.last_error) == (
        DeferredTaskStatus.FAILED,
        2,
        f"agent run #{run.pk} failed",
    )
    assert sleeps == []


@pytest.mark.django_db
def test_without_the_embedded_runtime_the_run_sits_out_its_backoff_as_before(
    agent: AgentFactory, run_now: Callable[..., AgentRun], sleeps: list[float]
) -> None:
    # A one-off command (``run_pipeline --once``) or the tests: nothing would come back for a deferred call.
    agent("scanner", _failing(TransientError("exchange 502")))

    run = run_now("scanner")

    assert run.status == AgentRunStatus.SUCCEEDED
    assert len(sleeps) == 1
    assert not DeferredTask.objects.exists()


@pytest.mark.django_db
def test_a_run_inside_a_pipeline_still_waits_for_its_retry_so_its_dependants_see_the_outcome(
    embedded: None,
    agent: AgentFactory,
    start: Callable[..., Any],
    sleeps: list[float],
) -> None:
    agent("scanner", _failing(TransientError("exchange 502")))
    agent("analysis", depends_on=("scanner",))

    pipeline = start(["scanner", "analysis"])

    assert pipeline.status == "succeeded"
    assert len(sleeps) == 1
    assert dict(AgentRun.objects.values_list("agent_name", "status")) == {
        "scanner": AgentRunStatus.SUCCEEDED,
        "analysis": AgentRunStatus.SUCCEEDED,
    }
    assert not DeferredTask.objects.exists()


@pytest.mark.django_db
def test_a_restart_runs_again_an_attempt_its_dead_runner_left_running_once_the_lease_expires(
    embedded: None, clock: Any, agent: AgentFactory, run_now: Callable[..., AgentRun], sleeps: list[float]
) -> None:
    calls: list[int] = []

    def behaviour(ctx: AgentContext) -> AgentResult:
        calls.append(ctx.run_id)
        if len(calls) == 1:
            raise TransientError("exchange 502")
        return AgentResult(summary="ok")

    agent("scanner", behaviour)
    run = run_now("scanner")
    row = DeferredTask.objects.get()
    # The old server's poller claimed the second attempt and the process died mid-run: the row is running
    # under its lease, and the agent run is left running under the deferred call's task id.
    clock.move_to(row.eta)
    (claimed,) = deferred_tasks_claim_due(now=row.eta)
    assert claimed.pk == row.pk
    AgentRun.objects.filter(pk=run.pk).update(
        status=AgentRunStatus.RUNNING, attempt=2, started_at=row.eta, celery_task_id=f"deferred-{row.pk}-1"
    )

    clock.move_to(row.eta + LEASE - dt.timedelta(seconds=1))
    assert deferred_tasks_run_due() == 0
    assert calls == [run.pk]

    clock.move_to(row.eta + LEASE + dt.timedelta(seconds=1))
    assert deferred_tasks_run_due() == 1

    assert calls == [run.pk, run.pk]
    run.refresh_from_db()
    assert (run.status, run.attempt, run.summary) == (AgentRunStatus.SUCCEEDED, 2, "ok")
    row.refresh_from_db()
    assert (row.status, row.locked_until) == (DeferredTaskStatus.SUCCEEDED, None)


@pytest.mark.django_db
def test_of_two_pollers_one_claims_a_due_call(embedded: None, clock: Any) -> None:
    row = deferred_task_schedule(task_name=EXECUTE, args=[1])

    first = deferred_tasks_claim_due(now=T0)
    second = deferred_tasks_claim_due(now=T0)

    assert [r.pk for r in first] == [row.pk]
    assert second == []
    row.refresh_from_db()
    assert (row.status, row.locked_until) == (DeferredTaskStatus.RUNNING, T0 + LEASE)


@pytest.mark.django_db
def test_a_call_of_an_unknown_task_or_one_that_breaks_is_failed_with_the_reason(
    embedded: None, clock: Any
) -> None:
    unknown = deferred_task_schedule(task_name="nobody.knows")
    broken = deferred_task_schedule(task_name=EXECUTE, args=["not a run id"])

    assert deferred_tasks_run_due() == 2

    unknown.refresh_from_db()
    broken.refresh_from_db()
    assert (unknown.status, unknown.last_error) == (DeferredTaskStatus.FAILED, "no task named 'nobody.knows'")
    assert broken.status == DeferredTaskStatus.FAILED
    assert broken.last_error.startswith("ValueError: ")


@pytest.mark.django_db
def test_pruning_deletes_only_calls_that_succeeded_before_the_cutoff(clock: Any) -> None:
    def row(status: str, age: dt.timedelta) -> DeferredTask:
        created = DeferredTask.objects.create(task_name=EXECUTE, args=[1], eta=T0, status=status)
        DeferredTask.objects.filter(pk=created.pk).update(updated_at=T0 - age)
        return created

    old_success = row(DeferredTaskStatus.SUCCEEDED, dt.timedelta(days=8))
    recent_success = row(DeferredTaskStatus.SUCCEEDED, dt.timedelta(days=6))
    old_failure = row(DeferredTaskStatus.FAILED, dt.timedelta(days=30))
    old_pending = row(DeferredTaskStatus.PENDING, dt.timedelta(days=30))

    assert deferred_tasks_prune(finished_before=T0 - KEEP_SUCCEEDED) == 1

    assert set(DeferredTask.objects.values_list("pk", flat=True)) == {
        recent_success.pk,
        old_failure.pk,
        old_pending.pk,
    }
    assert not DeferredTask.objects.filter(pk=old_success.pk).exists()


# --- the admin ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_shows_each_call_with_its_eta_attempt_and_last_error_and_runs_one_now(
    embedded: None, clock: Any, client: Client
) -> None:
    client.force_login(UserFactory.create(staff=True))
    waiting = deferred_task_schedule(
        task_name="billing.process_stripe_event",
        args=[7],
        retries=3,
        countdown=600,
        error="stripe is unavailable (circuit open)",
    )
    done = deferred_task_schedule(task_name="billing.sync_entitlement", args=[8])
    DeferredTask.objects.filter(pk=done.pk).update(status=DeferredTaskStatus.SUCCEEDED)
    url = reverse("admin:agents_deferredtask_changelist")

    page = client.get(url).content.decode()

    assert "billing.process_stripe_event" in page
    assert "stripe is unavailable (circuit open)" in page
    assert "12:10" in page  # its eta
    detail = client.get(reverse("admin:agents_deferredtask_change", args=[waiting.pk])).content.decode()
    assert '<div class="readonly">4</div>' in detail  # the attempt it will be

    response = client.post(url, {"action": "run_now", "_selected_action": [waiting.pk, done.pk]}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "1 of 2 selected calls are due now; the rest are running or done."
    ]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.eta, waiting.retries) == (DeferredTaskStatus.PENDING, T0, 3)
    assert DeferredTask.objects.get(pk=done.pk).status == DeferredTaskStatus.SUCCEEDED


# --- the real runtime ---------------------------------------------------------------------------------------


class PollerOnly:
    """The embedded runtime with its real poller thread but without beat: on the test database (SQLite in
    memory, shared cache) beat's start-up writes and the poller's would answer each other "table is
    locked" at once, where a database file waits for the lock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.poller: scheduler.DeferredPoller | None = None

    def start(self) -> None:
        self.poller = scheduler.DeferredPoller()
        runtime = scheduler.EmbeddedRuntime(
            worker=scheduler.EmbeddedWorker(),
            beat=threading.Thread(),
            service=None,  # type: ignore[arg-type]
            poller=self.poller,
        )
        self.monkeypatch.setattr(scheduler, "_runtime", runtime)
        self.poller.start()

    def stop(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller.join(10)
            assert not self.poller.is_alive()
        connections.close_all()


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[PollerOnly]:
    embedded = PollerOnly(monkeypatch)
    yield embedded
    embedded.stop()


@pytest.mark.django_db(transaction=True)
def test_the_runtimes_poller_runs_a_call_once_written_and_a_new_runtime_takes_up_what_a_dead_one_left(
    agent: AgentFactory, runtime: PollerOnly
) -> None:
    threads: list[str] = []
    ran = [threading.Event(), threading.Event()]

    def behaviour(ctx: AgentContext) -> AgentResult:
        threads.append(threading.current_thread().name)
        ran[len(threads) - 1].set()
        return AgentResult(summary="ok")

    agent("scanner", behaviour)
    first = AgentRun.objects.create(agent_name="scanner", trigger=RunTrigger.MANUAL)

    runtime.start()
    assert scheduler.runs_deferred_calls()
    # Let the poller's first look (at start-up) pass, so that only the write's wake-up can explain a quick run.
    time.sleep(0.2)
    written = time.monotonic()
    deferred_task_schedule(task_name=EXECUTE, args=[first.pk])

    assert ran[0].wait(5)
    assert time.monotonic() - written < scheduler.DEFERRED_POLL_SECONDS / 2
    runtime.stop()

    assert not scheduler.runs_deferred_calls()
    assert threads == ["agents-deferred"]
    assert DeferredTask.objects.get().status == DeferredTaskStatus.SUCCEEDED
    assert AgentRun.objects.get(pk=first.pk).status == AgentRunStatus.SUCCEEDED

    # The server went away with a call claimed and unfinished; a new one starts.
    second = AgentRun.objects.create(agent_name="scanner", trigger=RunTrigger.MANUAL)
    left = DeferredTask.objects.create(
        task_name=EXECUTE,
        args=[second.pk],
        eta=T0,
        status=DeferredTaskStatus.RUNNING,
        locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
    )
    runtime.start()

    assert ran[1].wait(10)
    runtime.stop()

    assert DeferredTask.objects.get(pk=left.pk).status == DeferredTaskStatus.SUCCEEDED
    assert AgentRun.objects.get(pk=second.pk).status == AgentRunStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_starting_the_embedded_runtime_starts_its_poller(runtime: PollerOnly) -> None:
    scheduler.start()
    try:
        assert scheduler.runs_deferred_calls()
        assert any(thread.name == "agents-deferred" for thread in threading.enumerate())
    finally:
        scheduler.stop(timeout=10)
    assert not scheduler.runs_deferred_calls()
    assert not any(thread.name == "agents-deferred" for thread in threading.enumerate())
