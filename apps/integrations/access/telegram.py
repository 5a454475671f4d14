"""Seats in private Telegram channels through python-telegram-bot, as the bot: the same ``TelegramBotClient`` the
publisher uses (base URL, error translation, circuit breaker, flood-control waits).

A bot cannot add anyone to a channel: it hands out invite links (single-use here, and expiring), and it removes
people by banning and at once unbanning them, so that a new invite lets them back in when they pay again. The Bot
API has no way to list a channel's members, so membership is asked one person at a time (``getChatMember``).
The bot must be an administrator of the channel with the rights to invite and to ban users.
"""

from __future__ import annotations

import datetime as dt
import time

import telegram
from django.conf import settings
from telegram.constants import ChatMemberStatus
from telegram.error import BadRequest

from apps.core.resilience import RetryPolicy
from apps.integrations.access import SINGLE_ATTEMPT
from apps.integrations.publishers.base import Sleep
from apps.integrations.publishers.telegram import TelegramBotClient

INVITE_NAME_MAX = 32
# How the Bot API says that a person is not in the chat (or never met the bot): removing them is then done.
_NOT_IN_CHAT = ("user not found", "participant_id_invalid", "user_not_participant", "member not found")
_IN_CHAT = {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER}


def _not_in_chat(exc: BadRequest) -> bool:
    return any(phrase in exc.message.lower() for phrase in _NOT_IN_CHAT)


def _chat(chat_id: str) -> int | str:
    """A numeric chat id as a number; a public ``@username`` as it is."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


class TelegramAccessGateway:
    platform = "telegram"

    def __init__(self, *, client: TelegramBotClient) -> None:
        self.client = client

    @classmethod
    def from_settings(
        cls, *, policy: RetryPolicy = SINGLE_ATTEMPT, sleep: Sleep = time.sleep
    ) -> TelegramAccessGateway:
        return cls(client=_client_from_settings(policy=policy, sleep=sleep))

    def create_invite_link(self, chat_id: str, name: str, expire_at: dt.datetime) -> str:
        async def create(bot: telegram.Bot) -> telegram.ChatInviteLink:
            return await bot.create_chat_invite_link(
                chat_id=_chat(chat_id), name=name[:INVITE_NAME_MAX], expire_date=expire_at, member_limit=1
            )

        return self.client.call(create).invite_link

    def remove_member(self, chat_id: str, user_id: str) -> None:
        async def remove(bot: telegram.Bot) -> None:
            try:
                await bot.ban_chat_member(chat_id=_chat(chat_id), user_id=int(user_id))
            except BadRequest as exc:
                if _not_in_chat(exc):
                    return
                raise
            # Only lifts the ban we just made: someone an admin banned for cause stays banned.
            await bot.unban_chat_member(chat_id=_chat(chat_id), user_id=int(user_id), only_if_banned=True)

        self.client.call(remove)

    def is_member(self, chat_id: str, user_id: str) -> bool:
        async def read(bot: telegram.Bot) -> bool:
            try:
                member = await bot.get_chat_member(chat_id=_chat(chat_id), user_id=int(user_id))
            except BadRequest as exc:
                if _not_in_chat(exc):
                    return False
                raise
            if member.status in _IN_CHAT:
                return True
            return isinstance(member, telegram.ChatMemberRestricted) and member.is_member

        return self.client.call(read)


def telegram_webhook_set(*, url: str, secret_token: str, allowed_updates: list[str]) -> None:
    """Tell Telegram to deliver the bot's updates to ``url`` with ``secret_token`` in the
    ``X-Telegram-Bot-Api-Secret-Token`` header."""

    async def set_webhook(bot: telegram.Bot) -> bool:
        return await bot.set_webhook(url=url, secret_token=secret_token, allowed_updates=allowed_updates)

    _client_from_settings(policy=RetryPolicy(), sleep=time.sleep).call(set_webhook)


def _client_from_settings(*, policy: RetryPolicy, sleep: Sleep) -> TelegramBotClient:
    return TelegramBotClient(
        token=settings.TELEGRAM_BOT_TOKEN,
        api_base_url=settings.TELEGRAM_API_BASE_URL,
        policy=policy,
        sleep=sleep,
    )
