"""Content's Celery tasks: thin, they call a service."""

from __future__ import annotations

from celery import shared_task

from apps.content.services import content_drafts_announce_waiting


@shared_task(name="content.announce_waiting_drafts")
def announce_waiting_drafts() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): one digest to the operators when new drafts wait for approval."""
    return content_drafts_announce_waiting()
