"""Moderation's Celery task: one platform call of an action (a deletion, a mute, a ban, a notice), loaded by id,
retried with backoff on transient errors, and marked failed when the platform refuses or the retries run out."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from apps.agents.deferred import DeferrableTask, task_give_up_deferred, task_retry_deferred
from apps.core.resilience import RateLimited, RetryPolicy, TransientError
from apps.moderation.services.enforcement import (
    moderation_operation_execute,
    moderation_operation_mark_failed,
)

logger = logging.getLogger(__name__)

# A scammer should be stopped in seconds, so the first retries come fast; an outage is sat out for about an hour.
OPERATION_BACKOFF = RetryPolicy(max_attempts=8, base_delay=5, max_delay=900)


def _retry(task: Task, exc: TransientError, *args: Any) -> Any:
    """Try again later with jittered exponential backoff, and no sooner than the platform asked us to wait.

    With a broker, Celery's countdown retry. Run eagerly by the embedded runtime, the next attempt is kept in
    ``deferred_tasks`` for the same wait; run eagerly anywhere else (one-off commands, tests) it runs at once."""
    wait = OPERATION_BACKOFF.delay(task.request.retries + 1)
    if isinstance(exc, RateLimited):
        wait = max(wait, exc.retry_after)
    if task.request.is_eager:
        if task_retry_deferred(task, countdown=wait, error=str(exc)):
            return None
        return task.apply(args=args, retries=task.request.retries + 1).result
    raise task.retry(exc=exc, countdown=wait) from exc


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
        result: str | None = _retry(self, exc, operation_id)
        return result
