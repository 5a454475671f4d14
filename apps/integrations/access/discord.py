"""Roles in the creator's Discord server (``DISCORD_GUILD_ID``) through discord.py's HTTP layer, as the bot: the
same ``DiscordBotClient`` the publisher uses, so the base URL, error translation, circuit breaker and shared
rate-limit buckets are the publisher's.

The bot needs the Manage Roles permission with its own role above the roles it hands out, and, for
``role_holders`` (the drift check), the Server Members privileged intent, without which Discord refuses to list
members (403, a ``PermanentError``).
"""

from __future__ import annotations

import time
from typing import Any

import discord
import discord.http
from django.conf import settings

from apps.core.resilience import RetryPolicy
from apps.integrations.access import SINGLE_ATTEMPT, MemberNotFound
from apps.integrations.publishers.base import Sleep
from apps.integrations.publishers.discord import SERVICE, DiscordBotClient

# Discord's JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
UNKNOWN_MEMBER = 10007
UNKNOWN_USER = 10013
MEMBERS_PAGE = 1000  # the most GET /guilds/{guild}/members returns at once
AUDIT_REASON = "CoinLink membership"


class DiscordAccessGateway:
    platform = "discord"

    def __init__(self, *, client: DiscordBotClient, guild_id: str) -> None:
        self.client = client
        self.guild_id = guild_id

    @classmethod
    def from_settings(
        cls, *, policy: RetryPolicy = SINGLE_ATTEMPT, sleep: Sleep = time.sleep
    ) -> DiscordAccessGateway:
        client = DiscordBotClient(
            bot_token=settings.DISCORD_BOT_TOKEN,
            api_base_url=settings.DISCORD_API_BASE_URL,
            policy=policy,
            sleep=sleep,
        )
        return cls(client=client, guild_id=settings.DISCORD_GUILD_ID)

    def _role_bucket(self, method: str) -> str:
        return self.client.bucket(method, f"/guilds/{self.guild_id}/members/0/roles/0")

    def grant_role(self, user_id: str, role_id: str) -> None:
        guild = int(self.guild_id)

        async def add(http: discord.http.HTTPClient, me: Any) -> None:
            try:
                await http.add_role(guild, int(user_id), int(role_id), reason=AUDIT_REASON)
            except discord.NotFound as exc:
                if exc.code in (UNKNOWN_MEMBER, UNKNOWN_USER):
                    raise MemberNotFound(
                        f"Discord user {user_id} is not in the server", service=SERVICE
                    ) from exc
                raise

        self.client.call(add, bucket=self._role_bucket("PUT"))

    def revoke_role(self, user_id: str, role_id: str) -> None:
        guild = int(self.guild_id)

        async def remove(http: discord.http.HTTPClient, me: Any) -> None:
            try:
                await http.remove_role(guild, int(user_id), int(role_id), reason=AUDIT_REASON)
            except discord.NotFound as exc:
                if exc.code not in (UNKNOWN_MEMBER, UNKNOWN_USER):
                    raise
                # They have left the server, and their roles with it.

        self.client.call(remove, bucket=self._role_bucket("DELETE"))

    def role_holders(self, role_id: str) -> set[str]:
        guild = int(self.guild_id)

        async def read(http: discord.http.HTTPClient, me: Any) -> set[str]:
            holders: set[str] = set()
            after: int | None = None
            while True:
                page = await http.get_members(guild, MEMBERS_PAGE, after)
                holders |= {
                    str(member["user"]["id"])
                    for member in page
                    if role_id in {str(role) for role in member.get("roles", [])}
                }
                if len(page) < MEMBERS_PAGE:
                    return holders
                after = max(int(member["user"]["id"]) for member in page)

        return self.client.call(read, bucket=self.client.bucket("GET", f"/guilds/{self.guild_id}/members"))
