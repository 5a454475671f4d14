"""Helpers for the engine's tests: messages and a clean engine state per test."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.utils import timezone

from apps.moderation.engine.types import InboundMessage
from apps.moderation.services.judging import moderation_state_reset, shared_history

_ids = itertools.count(1)
REGULAR_AUTHOR = "4242"


def message(text: str, **overrides: Any) -> InboundMessage:
    """A Telegram group message from a member who joined a month ago (not new) unless ``overrides`` say so."""
    now = overrides.pop("sent_at", None) or timezone.now()
    fields: dict[str, Any] = {
        "platform": "telegram",
        "chat_id": "-100123",
        "message_id": str(next(_ids)),
        "author_id": REGULAR_AUTHOR,
        "text": text,
        "sent_at": now,
        "author_username": "regular_member",
        "author_display_name": "Regular Member",
        "author_joined_at": now - dt.timedelta(days=30),
    }
    fields.update(overrides)
    return InboundMessage(**fields)


@pytest.fixture
def fresh_engine(settings: Any) -> Any:
    """Every process-wide cache of the engine forgotten, and refreshes checked on every judgement."""
    settings.MODERATION_REFRESH_SECONDS = 0
    moderation_state_reset()
    # The default author of ``message`` is an established member: many messages judged already.
    history = shared_history()
    for _ in range(10):
        history.messages_before(author=f"telegram:{REGULAR_AUTHOR}")
    yield
    moderation_state_reset()
