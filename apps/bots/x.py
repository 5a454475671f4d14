"""X mentions and replies through the one inbound path, on a schedule (``bots.poll_x_mentions``, every
``X_MENTIONS_POLL_SECONDS``): read since the newest one read before (kept in ``bot_inbound_cursors``), each
recorded as an interaction and judged by the moderation engine. One read at a time across workers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.core.cache import cache

from apps.bots.models import InboundCursor
from apps.bots.services import inbound_message_handle
from apps.integrations.x_mentions import fetch_mentions

logger = logging.getLogger(__name__)

CURSOR = "x.mentions.since_id"
LOCK = "bots:x-mentions:lock"
LOCK_SECONDS = 600


@dataclass(frozen=True, slots=True)
class MentionsRead:
    read: int = 0
    new: int = 0
    removed: int = 0
    since_id: str = ""
    skipped: str = ""


def x_mentions_poll() -> MentionsRead:
    """Read the mentions newer than the stored ``since_id`` and hand each to the inbound path; the cursor moves
    only after every one of them was handled, so a failed read is read again."""
    if not cache.add(LOCK, 1, timeout=LOCK_SECONDS):
        return MentionsRead(skipped="another read is running")
    try:
        cursor, _ = InboundCursor.objects.get_or_create(name=CURSOR)
        page = fetch_mentions(since_id=cursor.value)
        new = removed = 0
        for event in page.events:
            result = inbound_message_handle(event=event, chat_id="x", message_id=event.external_id)
            new += result.interaction_new
            removed += bool(result.actions)
        if page.newest_id:
            InboundCursor.objects.filter(pk=cursor.pk).update(value=page.newest_id)
        logger.info("x mentions: %s read, %s new, %s removed", len(page.events), new, removed)
        return MentionsRead(
            read=len(page.events), new=new, removed=removed, since_id=page.newest_id or cursor.value
        )
    finally:
        cache.delete(LOCK)
