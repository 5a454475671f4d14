"""The bots' Celery tasks: thin wrappers that load by id and call the handler."""

from __future__ import annotations

from celery import shared_task

from apps.bots.telegram import telegram_update_process


@shared_task(name="bots.process_telegram_update")
def process_telegram_update(update_pk: int) -> None:
    # No retries: a command's effect (a spent link code) must not run twice; a failure is kept on the row.
    telegram_update_process(update_pk=update_pk)
