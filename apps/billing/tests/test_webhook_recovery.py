"""Stripe events a lost worker left ``processing``: the redelivery of that same task takes the row over, any
other delivery keeps off it, and the periodic sweep queues again the rows left there past any task's time
limit. The real processes (a worker killed with SIGKILL) are in tests/test_topology.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from pytest_httpserver import HTTPServer

from apps.billing.models import StripeEvent, StripeEventStatus, Subscription
from apps.billing.services.webhooks import stripe_event_process, stripe_events_recover_abandoned
from apps.billing.tasks import process_stripe_event, recover_stripe_events, sync_entitlement
from apps.billing.tests.stripe_fakes import FakeStripe, at_second, event, member, subscription_object, unique

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_stripe(httpserver: HTTPServer, settings: Any) -> FakeStripe:
    return FakeStripe.install(httpserver, settings)


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


def _stored_event(fake_stripe: FakeStripe, **row: Any) -> tuple[StripeEvent, str]:
    """A ``customer.subscription.updated`` event stored as ingest stores it, its subscription on fake Stripe."""
    m = member()
    now = at_second(timezone.now())
    subscription = fake_stripe.put(
        subscription_object(
            subscription_id=unique("sub"),
            customer=m.customer_id,
            price_id=str(m.price.stripe_price_id),
            period_start=now - dt.timedelta(days=1),
            period_end=now + dt.timedelta(days=29),
        )
    )
    data = event("customer.subscription.updated", subscription, created=now)
    stored = StripeEvent.objects.create(
        stripe_id=data["id"], type=data["type"], stripe_created=now, payload=data, **row
    )
    return stored, subscription["id"]


def _processing(claimed_by: str, claimed_ago: float) -> dict[str, Any]:
    return {
        "status": StripeEventStatus.PROCESSING,
        "attempts": 1,
        "claimed_by": claimed_by,
        "claimed_at": timezone.now() - dt.timedelta(seconds=claimed_ago),
    }


def test_a_claim_records_the_task_and_the_time(fake_stripe: FakeStripe) -> None:
    stored, subscription_id = _stored_event(fake_stripe)

    assert stripe_event_process(event_id=stored.pk, task_id="task-1") == StripeEventStatus.PROCESSED

    stored.refresh_from_db()
    assert (stored.attempts, stored.claimed_by) == (1, "task-1")
    assert stored.claimed_at is not None
    assert Subscription.objects.filter(stripe_subscription_id=subscription_id).count() == 1


def test_the_redelivered_task_takes_over_the_row_its_lost_worker_left_processing(
    fake_stripe: FakeStripe,
) -> None:
    stored, subscription_id = _stored_event(fake_stripe, **_processing("task-1", claimed_ago=2))

    assert stripe_event_process(event_id=stored.pk, task_id="task-1") == StripeEventStatus.PROCESSED

    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.claimed_by) == (StripeEventStatus.PROCESSED, 2, "task-1")
    assert fake_stripe.reads(subscription_id) == 1
    assert Subscription.objects.filter(stripe_subscription_id=subscription_id).count() == 1


def test_another_task_keeps_off_a_row_being_processed(fake_stripe: FakeStripe) -> None:
    stored, _ = _stored_event(fake_stripe, **_processing("task-1", claimed_ago=2))
    before = StripeEvent.objects.values().get(pk=stored.pk)

    assert stripe_event_process(event_id=stored.pk, task_id="task-2") is None
    assert stripe_event_process(event_id=stored.pk) is None

    assert StripeEvent.objects.values().get(pk=stored.pk) == before
    assert fake_stripe.reads() == 0
    assert not Subscription.objects.exists()


def test_the_task_passes_its_own_id(fake_stripe: FakeStripe) -> None:
    stored, _ = _stored_event(fake_stripe, **_processing("fixed-task-id", claimed_ago=2))

    result = process_stripe_event.apply(args=[stored.pk], task_id="fixed-task-id")

    assert result.get() == StripeEventStatus.PROCESSED
    stored.refresh_from_db()
    assert stored.attempts == 2


def test_the_sweep_queues_again_only_events_left_processing_past_the_time_limit(
    fake_stripe: FakeStripe, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CELERY_TASK_TIME_LIMIT = 360
    abandoned, subscription_id = _stored_event(fake_stripe, **_processing("task-1", claimed_ago=421))
    # Claimed before claims were recorded: its age is the event's.
    legacy, _ = _stored_event(fake_stripe, status=StripeEventStatus.PROCESSING, attempts=1)
    StripeEvent.objects.filter(pk=legacy.pk).update(received_at=timezone.now() - dt.timedelta(hours=1))
    busy, _ = _stored_event(fake_stripe, **_processing("task-3", claimed_ago=400))
    waiting, _ = _stored_event(fake_stripe)
    failed, _ = _stored_event(fake_stripe, status=StripeEventStatus.FAILED)
    untouched = {row.pk: StripeEvent.objects.values().get(pk=row.pk) for row in (busy, waiting, failed)}

    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert stripe_events_recover_abandoned() == 2

    assert len(queued) == 2
    for row in (abandoned, legacy):
        row.refresh_from_db()
        assert (row.status, row.claimed_by) == (StripeEventStatus.RECEIVED, "")
        assert row.error == "recovered: left processing by a lost worker"
    assert {pk: StripeEvent.objects.values().get(pk=pk) for pk in untouched} == untouched

    # What was queued processes each event once; a late redelivery of the lost task finds it done.
    for callback in queued:
        callback()
    abandoned.refresh_from_db()
    assert (abandoned.status, abandoned.attempts) == (StripeEventStatus.PROCESSED, 2)
    assert stripe_event_process(event_id=abandoned.pk, task_id="task-1") is None
    assert fake_stripe.reads(subscription_id) == 1


def test_the_sweep_is_a_beat_task(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["billing.recover_stripe_events"] == {
        "task": "billing.recover_stripe_events",
        "schedule": 60.0,
    }
    with django_capture_on_commit_callbacks(execute=False):
        assert recover_stripe_events.apply().get() == 0
