"""The offline twin of the moderation clients: records in ``moderation_outbox`` every call it would have made
to Discord or Telegram, and sends its direct messages to the publishers' outbox (``outbox_messages``, kind
"dm"), where sending one idempotency key twice records it once. The twin cannot know who is in a chat, so every
call succeeds."""

from __future__ import annotations

import datetime as dt

from apps.integrations.models import ModerationCall
from apps.integrations.publishers.base import DM_PREFIX
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import OutboundPost


class TwinModeration:
    def __init__(self, platform: str) -> None:
        self.platform = platform

    def _record(self, operation: str, **fields: object) -> None:
        ModerationCall.objects.create(platform=self.platform, operation=operation, **fields)

    def delete_message(self, *, chat_id: str, message_id: str, reason: str = "") -> None:
        self._record(
            ModerationCall.Operation.DELETE_MESSAGE, space=chat_id, message_id=message_id, reason=reason
        )

    def mute(self, *, space: str, user_id: str, until: dt.datetime, reason: str = "") -> None:
        self._record(
            ModerationCall.Operation.MUTE, space=space, user_external_id=user_id, until=until, reason=reason
        )

    def unmute(self, *, space: str, user_id: str, reason: str = "") -> None:
        self._record(ModerationCall.Operation.UNMUTE, space=space, user_external_id=user_id, reason=reason)

    def ban(self, *, space: str, user_id: str, reason: str = "") -> None:
        self._record(ModerationCall.Operation.BAN, space=space, user_external_id=user_id, reason=reason)

    def unban(self, *, space: str, user_id: str, reason: str = "") -> None:
        self._record(ModerationCall.Operation.UNBAN, space=space, user_external_id=user_id, reason=reason)

    def send_dm(self, *, user_id: str, text: str, idempotency_key: str) -> str:
        post = OutboundPost(
            platform=self.platform,
            text=text,
            channel=f"{DM_PREFIX}{user_id}",
            idempotency_key=idempotency_key,
        )
        return OutboxPublisher(self.platform).publish(post).external_id
