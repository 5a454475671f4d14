"""Who may reach the paid places on Discord and Telegram: a role in the creator's Discord server, a seat in a
private Telegram channel. ``get_access_gateway(platform)`` returns the real client when the platform's
``*_BACKEND`` setting is ``api`` (the same switch as publishing) and the offline twin (``outbox``, the default)
otherwise, which records what it would have done in ``access_grants`` and answers from that record.

The gateways make one attempt per call by default: their caller is the ``billing.sync_entitlement`` task, whose
retries back off for hours where an in-process retry would hold a worker. Errors are ``apps.core.resilience``
errors: ``TransientError`` (5xx, timeouts), ``RateLimited`` (429: wait ``retry_after``), ``PermanentError``
(400, 403, a missing role), and its subclass ``MemberNotFound`` when a Discord user is not in the server.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, Protocol, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core.resilience import PermanentError, RetryPolicy

# Each call is tried once: the task that drives the sync retries with backoff (see the module's docstring).
SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)


class MemberNotFound(PermanentError):
    """The person is not in the Discord server, so no role can be given to them until they join."""


class DiscordAccess(Protocol):
    def grant_role(self, user_id: str, role_id: str) -> None: ...

    def revoke_role(self, user_id: str, role_id: str) -> None:
        """Succeeds when the person does not hold the role, or has left the server."""

    def role_holders(self, role_id: str) -> set[str]:
        """The user ids of everyone in the server holding the role."""


class TelegramAccess(Protocol):
    def create_invite_link(self, chat_id: str, name: str, expire_at: dt.datetime) -> str:
        """A link that lets one person join, until ``expire_at``."""

    def remove_member(self, chat_id: str, user_id: str) -> None:
        """Take the person out of the chat, free to join again with a new invite; succeeds when they are not
        in it."""

    def is_member(self, chat_id: str, user_id: str) -> bool: ...


AccessGateway = DiscordAccess | TelegramAccess

INVITE_NAME_PREFIX = "CoinLink member "


def invite_name(user_id: str) -> str:
    """The name of an invite link made for the Telegram user ``user_id``: the channel's admins see whom each
    link was for (and the twin, which cannot watch anyone click it, lets that person in)."""
    return f"{INVITE_NAME_PREFIX}{user_id}"


@overload
def get_access_gateway(
    platform: Literal["discord"], *, policy: RetryPolicy | None = None
) -> DiscordAccess: ...
@overload
def get_access_gateway(
    platform: Literal["telegram"], *, policy: RetryPolicy | None = None
) -> TelegramAccess: ...
@overload
def get_access_gateway(platform: str, *, policy: RetryPolicy | None = None) -> AccessGateway: ...
def get_access_gateway(platform: str, *, policy: RetryPolicy | None = None) -> AccessGateway:
    """The access gateway of ``platform`` ("discord" or "telegram"); ``policy`` replaces the single attempt
    for callers that no task retries (the drift check)."""
    backend = {"discord": settings.DISCORD_BACKEND, "telegram": settings.TELEGRAM_BACKEND}.get(platform)
    if backend is None:
        raise ValueError(f"no access gateway for platform {platform!r}")
    if backend == "outbox":
        from apps.integrations.access.twin import TwinDiscordAccess, TwinTelegramAccess

        return TwinDiscordAccess() if platform == "discord" else TwinTelegramAccess()
    if platform == "discord":
        from apps.integrations.access.discord import DiscordAccessGateway

        _require("discord", ["DISCORD_BOT_TOKEN", "DISCORD_GUILD_ID"])
        return DiscordAccessGateway.from_settings(policy=policy or SINGLE_ATTEMPT)
    from apps.integrations.access.telegram import TelegramAccessGateway

    _require("telegram", ["TELEGRAM_BOT_TOKEN"])
    return TelegramAccessGateway.from_settings(policy=policy or SINGLE_ATTEMPT)


def _require(platform: str, names: list[str]) -> None:
    if missing := [name for name in names if not getattr(settings, name)]:
        raise ImproperlyConfigured(
            f"{platform.upper()}_BACKEND=api needs {', '.join(missing)} for access sync"
        )
