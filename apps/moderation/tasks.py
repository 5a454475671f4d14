"""Moderation's Celery task: one platform call of an action (a deletion, a mute, a ban, a notice), loaded by id,
retried with backoff on transient errors, and marked failed when the platform refuses or the retries run out."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from apps.agents.deferred import DeferrableTask, task_give_up_deferred, task_retry_with_backoff
from apps.core.resilience import RetryPolicy, TransientError
from apps.moderation.services.enforcement import (
    moderation_operation_execute,
    moderation_operation_mark_failed,
)

logger = logging.getLogger(__name__)

# A scammer should be stopped in seconds, so the first retries come fast; an outage is sat out for about an hour.
OPERATION_BACKOFF = RetryPolicy(max_attempts=8, base_delay=5, max_delay=900)


@shared_task(
    bind=True,
    base=DeferrableTask,
    name="moderation.execute_operation",
    max_retries=OPERATION_BACKOFF.max_attempts - 1,
)
def execute_operation(self: Task, operation_id: int) -> str | None:
    """Carry out one ``PlatformOperation``."""
    try:
        return moderation_operation_execute(operation_id=operation_id)
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            error = f"gave up after {self.request.retries + 1} attempts: {exc}"
            moderation_operation_mark_failed(operation_id=operation_id, error=error)
            task_give_up_deferred(self, error=error)
            logger.error("moderation operation %s: retries exhausted: %s", operation_id, exc)
            return "failed"
        result: str | None = task_retry_with_backoff(self, OPERATION_BACKOFF, exc, operation_id)
        return result
