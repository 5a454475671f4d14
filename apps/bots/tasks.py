"""The bots' Celery tasks: thin wrappers that load by id and call the handler."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.bots.telegram import telegram_update_process
from apps.bots.x import x_mentions_poll
from apps.core.resilience import IntegrationError

logger = logging.getLogger(__name__)


@shared_task(name="bots.process_telegram_update")
def process_telegram_update(update_pk: int) -> None:
    # No retries: a command's effect (a spent link code) must not run twice; a failure is kept on the row.
    telegram_update_process(update_pk=update_pk)


@shared_task(name="bots.poll_x_mentions")
def poll_x_mentions() -> dict[str, object]:
    # No retries: the schedule is the retry, and the cursor has not moved past what failed.
    try:
        result = x_mentions_poll()
    except IntegrationError as exc:
        logger.warning("x mentions: read failed, trying again on schedule: %s", exc)
        return {"error": str(exc)}
    return {"read": result.read, "new": result.new, "removed": result.removed, "skipped": result.skipped}
