"""Moderation on Discord and Telegram: delete a message, mute someone for a while, ban and unban them, and tell
them by direct message. ``get_moderation_client(platform)`` returns the real client when the platform's
``*_BACKEND`` setting is ``api`` (the same switch as publishing and access) and the offline twin (``outbox``, the
default) otherwise, which records every call it would have made in ``moderation_outbox`` (direct messages go to
the publishers' outbox, ``outbox_messages``, like every other message the twins would send).

Where a sanction applies differs by platform, so every call names its ``space``: a Telegram chat id (groups,
supergroups and channels each keep their own bans and restrictions) or the Discord server (guild) id.

Calls are tried once by default: the caller is the ``moderation.execute_operation`` task, whose retries back off
where an in-process retry would hold a worker. Errors are ``apps.core.resilience`` errors: ``TransientError``
(5xx, timeouts), ``RateLimited`` (429: wait ``retry_after``), ``PermanentError`` (400, 403) and its subclass
``NotInCommunity`` when the person is not in the chat or server, so there is nothing to mute.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core.resilience import PermanentError, RetryPolicy

# Each call is tried once: the task that drives it retries with backoff (see the module's docstring).
SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)
# Discord refuses a timeout longer than 28 days; Telegram reads a restriction of over 366 days as forever.
MAX_MUTE = dt.timedelta(days=28)
AUDIT_REASON_MAX = 512  # Discord's X-Audit-Log-Reason limit


class NotInCommunity(PermanentError):
    """The person is not in the chat or server, so there is nobody there to mute."""


class PlatformModeration(Protocol):
    platform: str

    def delete_message(self, *, chat_id: str, message_id: str, reason: str = "") -> None:
        """Succeeds when the message is already gone."""

    def mute(self, *, space: str, user_id: str, until: dt.datetime, reason: str = "") -> None:
        """Stop the person writing until ``until`` (at most ``MAX_MUTE`` from now)."""

    def unmute(self, *, space: str, user_id: str, reason: str = "") -> None:
        """Lift a mute; succeeds when there is none, or the person has left."""

    def ban(self, *, space: str, user_id: str, reason: str = "") -> None:
        """Ban the person (on Discord also when they are not in the server: they cannot join)."""

    def unban(self, *, space: str, user_id: str, reason: str = "") -> None:
        """Lift a ban; succeeds when there is none."""

    def send_dm(self, *, user_id: str, text: str, idempotency_key: str) -> str:
        """A direct message to the person; returns its id. ``PermanentError`` when the platform will not let
        the bot write to them (on Telegram, people who never started the bot)."""


def get_moderation_client(platform: str, *, policy: RetryPolicy | None = None) -> PlatformModeration:
    """The moderation client of ``platform`` ("discord" or "telegram"); ``policy`` replaces the single attempt
    for callers that no task retries."""
    backend = {"discord": settings.DISCORD_BACKEND, "telegram": settings.TELEGRAM_BACKEND}.get(platform)
    if backend is None:
        raise ValueError(f"no moderation client for platform {platform!r}")
    if backend == "outbox":
        from apps.integrations.moderation.twin import TwinModeration

        return TwinModeration(platform)
    if platform == "discord":
        from apps.integrations.moderation.discord import DiscordModeration

        _require("discord", ["DISCORD_BOT_TOKEN"])
        return DiscordModeration.from_settings(policy=policy or SINGLE_ATTEMPT)
    from apps.integrations.moderation.telegram import TelegramModeration

    _require("telegram", ["TELEGRAM_BOT_TOKEN"])
    return TelegramModeration.from_settings(policy=policy or SINGLE_ATTEMPT)


def _require(platform: str, names: list[str]) -> None:
    if missing := [name for name in names if not getattr(settings, name)]:
        raise ImproperlyConfigured(
            f"{platform.upper()}_BACKEND=api needs {', '.join(missing)} for moderation"
        )
