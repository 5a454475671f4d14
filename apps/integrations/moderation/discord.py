"""Moderation in the creator's Discord server through discord.py's HTTP layer, as the bot: the same
``DiscordBotClient`` the publisher and the access gateway use (base URL, error translation, circuit breaker,
rate-limit buckets shared through the cache).

A mute is a timeout (``communication_disabled_until`` on the member, at most 28 days ahead); a ban also deletes
the person's messages of the last hour. The bot needs the Manage Messages, Moderate Members and Ban Members
permissions, with its role above the people it acts on (Discord refuses with 403 otherwise, a
``PermanentError``). A direct message opens the DM channel and sends with a nonce derived from the idempotency
key, so Discord drops the duplicate of a retried send.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import discord
import discord.http
from django.conf import settings

from apps.core.resilience import PermanentError, RetryPolicy
from apps.integrations.moderation import AUDIT_REASON_MAX, SINGLE_ATTEMPT, NotInCommunity
from apps.integrations.publishers.base import Sleep
from apps.integrations.publishers.discord import MAX_CONTENT, SERVICE, DiscordBotClient, nonce_for

# Discord's JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_BAN = 10026
BAN_DELETES_MESSAGES_SECONDS = 3600
DEFAULT_REASON = "CoinLink moderation"


def _reason(reason: str) -> str:
    return (reason or DEFAULT_REASON)[:AUDIT_REASON_MAX]


def _guild(space: str) -> int:
    if not space.isdigit():
        raise PermanentError(
            f"no Discord server to act in ({space!r}): set DISCORD_GUILD_ID", service=SERVICE
        )
    return int(space)


class DiscordModeration:
    platform = SERVICE

    def __init__(self, *, client: DiscordBotClient) -> None:
        self.client = client

    @classmethod
    def from_settings(
        cls, *, policy: RetryPolicy = SINGLE_ATTEMPT, sleep: Sleep = time.sleep
    ) -> DiscordModeration:
        return cls(
            client=DiscordBotClient(
                bot_token=settings.DISCORD_BOT_TOKEN,
                api_base_url=settings.DISCORD_API_BASE_URL,
                policy=policy,
                sleep=sleep,
            )
        )

    def delete_message(self, *, chat_id: str, message_id: str, reason: str = "") -> None:
        async def delete(http: discord.http.HTTPClient, me: Any) -> None:
            try:
                await http.delete_message(int(chat_id), int(message_id), reason=_reason(reason))
            except discord.NotFound as exc:
                if exc.code != UNKNOWN_MESSAGE:
                    raise

        self.client.call(delete, bucket=self.client.bucket("DELETE", f"/channels/{chat_id}/messages/0"))

    def _edit_member(self, space: str, user_id: str, reason: str, *, until: dt.datetime | None) -> None:
        guild = _guild(space)

        async def edit(http: discord.http.HTTPClient, me: Any) -> None:
            value = until.astimezone(dt.UTC).isoformat() if until is not None else None
            try:
                await http.edit_member(
                    guild, int(user_id), reason=_reason(reason), communication_disabled_until=value
                )
            except discord.NotFound as exc:
                if exc.code not in (UNKNOWN_MEMBER, UNKNOWN_USER):
                    raise
                if until is not None:
                    raise NotInCommunity(
                        f"Discord user {user_id} is not in the server", service=SERVICE
                    ) from exc
                # Lifting: they have left the server, and their timeout with it.

        self.client.call(edit, bucket=self.client.bucket("PATCH", f"/guilds/{space}/members/0"))

    def mute(self, *, space: str, user_id: str, until: dt.datetime, reason: str = "") -> None:
        self._edit_member(space, user_id, reason, until=until)

    def unmute(self, *, space: str, user_id: str, reason: str = "") -> None:
        self._edit_member(space, user_id, reason, until=None)

    def ban(self, *, space: str, user_id: str, reason: str = "") -> None:
        guild = _guild(space)

        async def ban(http: discord.http.HTTPClient, me: Any) -> None:
            await http.ban(int(user_id), guild, BAN_DELETES_MESSAGES_SECONDS, reason=_reason(reason))

        self.client.call(ban, bucket=self.client.bucket("PUT", f"/guilds/{space}/bans/0"))

    def unban(self, *, space: str, user_id: str, reason: str = "") -> None:
        guild = _guild(space)

        async def unban(http: discord.http.HTTPClient, me: Any) -> None:
            try:
                await http.unban(int(user_id), guild, reason=_reason(reason))
            except discord.NotFound as exc:
                if exc.code != UNKNOWN_BAN:
                    raise

        self.client.call(unban, bucket=self.client.bucket("DELETE", f"/guilds/{space}/bans/0"))

    def send_dm(self, *, user_id: str, text: str, idempotency_key: str) -> str:
        async def send(http: discord.http.HTTPClient, me: Any) -> str:
            channel = await http.start_private_message(int(user_id))
            with discord.http.handle_message_parameters(
                content=text[:MAX_CONTENT],
                nonce=nonce_for(idempotency_key),
                allowed_mentions=discord.AllowedMentions.none(),
            ) as params:
                message = await http.send_message(int(channel["id"]), params=params)
            return str(message["id"])

        # DM channels have buckets of their own, unknown until the channel is opened.
        return self.client.call(send, bucket="")
