"""Billing's tasks on the embedded default with its runtime running: a webhook is answered once stored and
processed by the in-process poller; a transient failure (the Stripe read-back, a platform sync) is retried
after the policy's backoff through ``deferred_tasks``, not at once; retries running out fail the row and the
event or entitlement exactly as under Celery.

The runtime's poller thread is not started here: ``runs_deferred_calls`` says it runs, and each test calls
``deferred_tasks_run_due``, which is what the poller runs each time it wakes, at the times it chooses."""

from __future__ import annotations

import datetime as dt
import sys
import types
from typing import Any

import pytest
import time_machine
from django.test import Client

from apps.agents import scheduler
from apps.agents.deferred import LEASE, deferred_tasks_run_due
from apps.agents.models import DeferredTask, DeferredTaskStatus
from apps.billing.factories import EntitlementFactory
from apps.billing.models import Entitlement, StripeEvent, StripeEventStatus, Subscription, SyncStatus
from apps.billing.tasks import PLATFORM_SYNC_BACKOFF, STRIPE_EVENT_BACKOFF, sync_entitlement
from apps.billing.tests.stripe_fakes import FakeStripe, deliver, event, member, subscription_object, unique
from apps.billing.tests.test_tasks import StandInAccessSync
from apps.core.resilience import PermanentError, RetryPolicy, TransientError
from coinlink.celery import app as celery_app

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
PROCESS = "billing.process_stripe_event"


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process runs the embedded runtime (no broker): calls are deferred, not run in the caller."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setattr(scheduler, "runs_deferred_calls", lambda: True)


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def fake_stripe(httpserver: Any, settings: Any, platform_syncs: list[int]) -> FakeStripe:
    # The first failed read opens the breaker, so later attempts fail without calling a dead Stripe; it lets
    # a trial call through 5 s later, long before any retry is due.
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_SECONDS = 5
    return FakeStripe.install(httpserver, settings)


@pytest.fixture
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The entitlement syncs a processed event sends, recorded (they are the next test's business)."""
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


@pytest.fixture
def access_sync(monkeypatch: pytest.MonkeyPatch) -> StandInAccessSync:
    stand_in = StandInAccessSync()
    module = types.ModuleType("apps.billing.services.access_sync")
    module.entitlement_sync_to_platform = stand_in.entitlement_sync_to_platform  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "apps.billing.services.access_sync", module)
    return stand_in


def _bounds(policy: RetryPolicy, retry: int) -> tuple[dt.timedelta, dt.timedelta]:
    """The jittered backoff before retry number ``retry``: between half the ceiling and the ceiling."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (retry - 1))
    return dt.timedelta(seconds=ceiling / 2), dt.timedelta(seconds=ceiling)


def _subscription_event(fake_stripe: FakeStripe) -> dict[str, Any]:
    m = member()
    sub = subscription_object(
        subscription_id=unique("sub"),
        customer=m.customer_id,
        price_id=str(m.price.stripe_price_id),
        period_start=T0 - dt.timedelta(days=1),
        period_end=T0 + dt.timedelta(days=29),
    )
    fake_stripe.put(sub)
    return event("customer.subscription.updated", sub, created=T0 - dt.timedelta(seconds=5))


def _receive(client: Client, data: dict[str, Any], capture: Any) -> StripeEvent:
    with capture(execute=True):
        assert deliver(client, data).status_code == 200
    return StripeEvent.objects.get(stripe_id=data["id"])


def test_the_webhook_is_answered_once_stored_and_processed_by_the_poller(
    embedded: None,
    clock: Any,
    fake_stripe: FakeStripe,
    client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    stored = _receive(client, _subscription_event(fake_stripe), django_capture_on_commit_callbacks)

    # Nothing was processed inside the request: the event waits, its processing kept for the poller.
    assert (stored.status, stored.attempts, fake_stripe.reads()) == (StripeEventStatus.RECEIVED, 0, 0)
    row = DeferredTask.objects.get()
    assert (row.task_name, row.args, row.kwargs, row.retries, row.status, row.eta) == (
        PROCESS,
        [stored.pk],
        {},
        0,
        DeferredTaskStatus.PENDING,
        T0,
    )

    assert deferred_tasks_run_due() == 1

    stored.refresh_from_db()
    assert (stored.status, stored.attempts, fake_stripe.reads()) == (StripeEventStatus.PROCESSED, 1, 1)
    assert Subscription.objects.count() == 1
    row.refresh_from_db()
    assert (row.status, row.retries, row.locked_until) == (DeferredTaskStatus.SUCCEEDED, 0, None)
    assert deferred_tasks_run_due() == 0


def test_without_the_embedded_runtime_the_webhook_is_processed_in_the_request(
    fake_stripe: FakeStripe, client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    # The tests, a one-off command: nothing would come back for a deferred call, so Celery runs it eagerly.
    data = _subscription_event(fake_stripe)
    with time_machine.travel(T0, tick=False):
        stored = _receive(client, data, django_capture_on_commit_callbacks)

    assert stored.status == StripeEventStatus.PROCESSED
    assert not DeferredTask.objects.exists()


def test_a_transient_read_back_failure_is_retried_after_the_backoff_and_not_before(
    embedded: None,
    clock: Any,
    fake_stripe: FakeStripe,
    client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    data = _subscription_event(fake_stripe)
    stored = _receive(client, data, django_capture_on_commit_callbacks)
    fake_stripe.fail_with(500, {"type": "api_error", "message": "Stripe is having a bad day"})

    assert deferred_tasks_run_due() == 1

    # One attempt, not seven in a row: the next is kept with the policy's backoff.
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEventStatus.RECEIVED, 1)
    row = DeferredTask.objects.get()
    low, high = _bounds(STRIPE_EVENT_BACKOFF, 1)
    assert row.status == DeferredTaskStatus.PENDING
    assert row.retries == 1
    assert T0 + low <= row.eta <= T0 + high
    # (The failed read opened the breaker, so the attempt's last word was the open circuit.)
    assert row.last_error == "stripe is unavailable (circuit open)"
    reads = fake_stripe.reads()

    clock.move_to(row.eta - dt.timedelta(seconds=1))
    assert deferred_tasks_run_due() == 0
    assert fake_stripe.reads() == reads
    assert StripeEvent.objects.get(pk=stored.pk).attempts == 1

    # Stripe is back by the time the retry is due.
    fake_stripe.failure = None
    clock.move_to(row.eta)
    assert deferred_tasks_run_due() == 1

    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEventStatus.PROCESSED, 2)
    assert Subscription.objects.get().stripe_subscription_id == data["data"]["object"]["id"]
    row.refresh_from_db()
    assert (row.status, row.retries) == (DeferredTaskStatus.SUCCEEDED, 1)
    assert DeferredTask.objects.count() == 1


def test_retries_running_out_fail_the_row_and_the_event_as_under_celery(
    embedded: None,
    clock: Any,
    fake_stripe: FakeStripe,
    client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    stored = _receive(client, _subscription_event(fake_stripe), django_capture_on_commit_callbacks)
    fake_stripe.fail_with(500, {"type": "api_error", "message": "Stripe is having a bad day"})
    attempts = STRIPE_EVENT_BACKOFF.max_attempts

    now = T0
    for attempt in range(1, attempts):
        assert deferred_tasks_run_due() == 1
        row = DeferredTask.objects.get()
        low, high = _bounds(STRIPE_EVENT_BACKOFF, attempt)
        assert (row.status, row.retries) == (DeferredTaskStatus.PENDING, attempt)
        assert now + low <= row.eta <= now + high
        assert StripeEvent.objects.get(pk=stored.pk).status == StripeEventStatus.RECEIVED
        now = row.eta
        clock.move_to(now)

    assert deferred_tasks_run_due() == 1

    stored.refresh_from_db()
    row = DeferredTask.objects.get()
    assert stored.status == StripeEventStatus.FAILED
    assert stored.attempts == attempts
    assert stored.error.startswith(f"gave up after {attempts} attempts: ")
    assert (row.status, row.retries, row.last_error) == (
        DeferredTaskStatus.FAILED,
        attempts - 1,
        stored.error,
    )
    # Over minutes, as the policy says (at least the sum of the shortest waits), not within two seconds.
    shortest = sum((_bounds(STRIPE_EVENT_BACKOFF, n)[0] for n in range(1, attempts)), dt.timedelta())
    assert now - T0 >= shortest >= dt.timedelta(minutes=10)
    assert Subscription.objects.count() == 0
    clock.move_to(T0 + dt.timedelta(days=1))
    assert deferred_tasks_run_due() == 0


def test_a_restart_takes_up_a_call_its_dead_runner_left_claimed_once_the_lease_expires(
    embedded: None,
    clock: Any,
    fake_stripe: FakeStripe,
    client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    stored = _receive(client, _subscription_event(fake_stripe), django_capture_on_commit_callbacks)
    # The server claimed the call and died before it finished: the row is left running under its lease.
    row = DeferredTask.objects.get()
    DeferredTask.objects.filter(pk=row.pk).update(status=DeferredTaskStatus.RUNNING, locked_until=T0 + LEASE)

    # The restarted server's poller leaves it while the lease runs (its runner might still be alive)...
    clock.move_to(T0 + LEASE - dt.timedelta(seconds=1))
    assert deferred_tasks_run_due() == 0
    assert StripeEvent.objects.get(pk=stored.pk).status == StripeEventStatus.RECEIVED

    # ...and takes it once the lease has expired.
    clock.move_to(T0 + LEASE + dt.timedelta(seconds=1))
    assert deferred_tasks_run_due() == 1

    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEventStatus.PROCESSED, 1)
    row.refresh_from_db()
    assert (row.status, row.locked_until) == (DeferredTaskStatus.SUCCEEDED, None)


def test_a_platform_sync_is_retried_with_backoff_and_parks_the_row_when_it_never_succeeds(
    embedded: None, clock: Any, access_sync: StandInAccessSync
) -> None:
    entitlement = EntitlementFactory.create(key="discord.role:111", sync_status=SyncStatus.PENDING)
    access_sync.failures = [TransientError("discord 502")] * 20
    attempts = PLATFORM_SYNC_BACKOFF.max_attempts

    sync_entitlement.delay(entitlement.pk)

    assert access_sync.calls == []  # kept for the poller, not run in the caller
    now = T0
    for attempt in range(1, attempts):
        assert deferred_tasks_run_due() == 1
        assert len(access_sync.calls) == attempt
        row = DeferredTask.objects.get()
        low, high = _bounds(PLATFORM_SYNC_BACKOFF, attempt)
        assert row.retries == attempt
        assert now + low <= row.eta <= now + high
        assert row.last_error == "discord 502"
        now = row.eta
        clock.move_to(now)
    assert deferred_tasks_run_due() == 1

    assert access_sync.calls == [entitlement.pk] * attempts
    entitlement.refresh_from_db()
    error = f"gave up after {attempts} attempts: discord 502"
    assert (entitlement.sync_status, entitlement.sync_error) == (SyncStatus.FAILED, error)
    row = DeferredTask.objects.get()
    assert (row.status, row.last_error) == (DeferredTaskStatus.FAILED, error)


def test_a_platform_refusal_fails_the_row_at_once(
    embedded: None, clock: Any, access_sync: StandInAccessSync
) -> None:
    entitlement = EntitlementFactory.create(key="discord.role:111", sync_status=SyncStatus.PENDING)
    access_sync.failures = [PermanentError("Missing Permissions")]
    DeferredTask.objects.create(task_name="billing.sync_entitlement", args=[entitlement.pk], eta=T0)

    assert deferred_tasks_run_due() == 1

    assert access_sync.calls == [entitlement.pk]
    entitlement.refresh_from_db()
    assert (entitlement.sync_status, entitlement.sync_error) == (SyncStatus.FAILED, "Missing Permissions")
    row = DeferredTask.objects.get()
    assert (row.status, row.retries, row.last_error) == (DeferredTaskStatus.FAILED, 0, "Missing Permissions")


def test_entitlement_rows_stay_as_they_were_when_nothing_is_due(embedded: None, clock: Any) -> None:
    entitlement = EntitlementFactory.create(key="discord.role:111", sync_status=SyncStatus.PENDING)
    DeferredTask.objects.create(
        task_name="billing.sync_entitlement", args=[entitlement.pk], eta=T0 + dt.timedelta(minutes=1)
    )

    assert deferred_tasks_run_due() == 0

    assert Entitlement.objects.get(pk=entitlement.pk).sync_status == SyncStatus.PENDING
    assert DeferredTask.objects.get().status == DeferredTaskStatus.PENDING
