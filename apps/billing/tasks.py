"""Billing's Celery tasks: thin wrappers that load by id, call a service, retry transient failures with backoff
and mark the row failed when the retries run out."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.utils import timezone

from apps.agents.deferred import DeferrableTask, task_give_up_deferred, task_retry_with_backoff
from apps.billing.services.entitlements import entitlement_mark_sync_failed, entitlements_expire_due
from apps.billing.services.webhooks import (
    stripe_event_mark_failed,
    stripe_event_process,
    stripe_events_recover_abandoned,
)
from apps.core.resilience import PermanentError, RetryPolicy, TransientError

logger = logging.getLogger(__name__)

# Jittered exponential backoff: a Stripe event is retried over up to about 20 minutes (it was acknowledged on
# receipt, so Stripe will not redeliver it), a platform sync over up to about 2 hours.
STRIPE_EVENT_BACKOFF = RetryPolicy(max_attempts=7, base_delay=20, max_delay=900)
PLATFORM_SYNC_BACKOFF = RetryPolicy(max_attempts=9, base_delay=30, max_delay=3600)


# DeferrableTask: on the embedded default the call is kept as a deferred task and run by the in-process
# poller, so a webhook is answered once stored and a restart loses no processing or sync.
@shared_task(
    bind=True,
    base=DeferrableTask,
    name="billing.process_stripe_event",
    max_retries=STRIPE_EVENT_BACKOFF.max_attempts - 1,
)
def process_stripe_event(self: Task, event_id: int) -> str | None:
    try:
        return stripe_event_process(event_id=event_id, task_id=self.request.id or "")
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            error = f"gave up after {self.request.retries + 1} attempts: {exc}"
            stripe_event_mark_failed(event_id=event_id, error=error)
            task_give_up_deferred(self, error=error)
            logger.error("stripe event %s: retries exhausted: %s", event_id, exc)
            return None
        result: str | None = task_retry_with_backoff(self, STRIPE_EVENT_BACKOFF, exc, event_id)
        return result


@shared_task(
    bind=True,
    base=DeferrableTask,
    name="billing.sync_entitlement",
    max_retries=PLATFORM_SYNC_BACKOFF.max_attempts - 1,
)
def sync_entitlement(self: Task, entitlement_id: int) -> None:
    """Make Discord or Telegram agree with the ledger about one entitlement's user and key."""
    # Imported on use: the platform sync brings in the Discord and Telegram clients, which nothing else
    # that imports this module needs.
    from apps.billing.services.access_sync import entitlement_sync_to_platform

    try:
        entitlement_sync_to_platform(entitlement_id=entitlement_id)
    except PermanentError as exc:
        entitlement_mark_sync_failed(entitlement_id=entitlement_id, error=str(exc))
        task_give_up_deferred(self, error=str(exc))
        logger.error("entitlement %s: platform refused the sync: %s", entitlement_id, exc)
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            error = f"gave up after {self.request.retries + 1} attempts: {exc}"
            entitlement_mark_sync_failed(entitlement_id=entitlement_id, error=error)
            task_give_up_deferred(self, error=error)
            logger.error("entitlement %s: platform sync retries exhausted: %s", entitlement_id, exc)
            return
        task_retry_with_backoff(self, PLATFORM_SYNC_BACKOFF, exc, entitlement_id)


@shared_task(name="billing.expire_entitlements")
def expire_entitlements() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): take ended platform entitlements off Discord and Telegram."""
    return entitlements_expire_due(now=timezone.now())


@shared_task(name="billing.recover_stripe_events")
def recover_stripe_events() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): queue again the events a lost worker left processing."""
    return stripe_events_recover_abandoned()
