"""Moderation in Telegram groups through python-telegram-bot, as the bot: the same ``TelegramBotClient`` the
publisher and the access gateway use (base URL, error translation, circuit breaker, flood-control waits).

The bot must be an administrator of each group with the rights to delete messages and to restrict and ban
members. A mute is ``restrictChatMember`` with every permission off until ``until_date``; lifting it passes every
permission on, which Telegram reads as "no restrictions" (the group's defaults apply again). A direct message
reaches only people who have started the bot: Telegram answers anyone else with 403, a ``PermanentError``.
"""

from __future__ import annotations

import datetime as dt
import time

import telegram
from django.conf import settings
from telegram.error import BadRequest

from apps.core.resilience import RetryPolicy
from apps.integrations.moderation import SINGLE_ATTEMPT, NotInCommunity
from apps.integrations.publishers.base import Sleep
from apps.integrations.publishers.telegram import MAX_TEXT, SERVICE, TelegramBotClient

# How the Bot API says the person is not in the chat (or never met the bot) and that a message is gone.
_NOT_IN_CHAT = ("user not found", "participant_id_invalid", "user_not_participant", "member not found")
_MESSAGE_GONE = ("message to delete not found", "message_id_invalid")


def _says(exc: BadRequest, phrases: tuple[str, ...]) -> bool:
    return any(phrase in exc.message.lower() for phrase in phrases)


def _chat(chat_id: str) -> int | str:
    """A numeric chat id as a number; a public ``@username`` as it is."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


class TelegramModeration:
    platform = SERVICE

    def __init__(self, *, client: TelegramBotClient) -> None:
        self.client = client

    @classmethod
    def from_settings(
        cls, *, policy: RetryPolicy = SINGLE_ATTEMPT, sleep: Sleep = time.sleep
    ) -> TelegramModeration:
        return cls(
            client=TelegramBotClient(
                token=settings.TELEGRAM_BOT_TOKEN,
                api_base_url=settings.TELEGRAM_API_BASE_URL,
                policy=policy,
                sleep=sleep,
            )
        )

    def delete_message(self, *, chat_id: str, message_id: str, reason: str = "") -> None:
        async def delete(bot: telegram.Bot) -> None:
            try:
                await bot.delete_message(chat_id=_chat(chat_id), message_id=int(message_id))
            except BadRequest as exc:
                if not _says(exc, _MESSAGE_GONE):
                    raise

        self.client.call(delete)

    def mute(self, *, space: str, user_id: str, until: dt.datetime, reason: str = "") -> None:
        async def restrict(bot: telegram.Bot) -> None:
            try:
                await bot.restrict_chat_member(
                    chat_id=_chat(space),
                    user_id=int(user_id),
                    permissions=telegram.ChatPermissions.no_permissions(),
                    until_date=until,
                )
            except BadRequest as exc:
                if _says(exc, _NOT_IN_CHAT):
                    raise NotInCommunity(
                        f"Telegram user {user_id} is not in chat {space}", service=SERVICE
                    ) from exc
                raise

        self.client.call(restrict)

    def unmute(self, *, space: str, user_id: str, reason: str = "") -> None:
        async def lift(bot: telegram.Bot) -> None:
            try:
                await bot.restrict_chat_member(
                    chat_id=_chat(space),
                    user_id=int(user_id),
                    permissions=telegram.ChatPermissions.all_permissions(),
                )
            except BadRequest as exc:
                if not _says(exc, _NOT_IN_CHAT):
                    raise
                # They have left the chat, and their restriction with it.

        self.client.call(lift)

    def ban(self, *, space: str, user_id: str, reason: str = "") -> None:
        async def ban(bot: telegram.Bot) -> None:
            await bot.ban_chat_member(chat_id=_chat(space), user_id=int(user_id))

        self.client.call(ban)

    def unban(self, *, space: str, user_id: str, reason: str = "") -> None:
        async def unban(bot: telegram.Bot) -> None:
            # only_if_banned: someone who is in the chat is not kicked out by an unban.
            await bot.unban_chat_member(chat_id=_chat(space), user_id=int(user_id), only_if_banned=True)

        self.client.call(unban)

    def send_dm(self, *, user_id: str, text: str, idempotency_key: str) -> str:
        async def send(bot: telegram.Bot) -> telegram.Message:
            return await bot.send_message(chat_id=int(user_id), text=text[:MAX_TEXT])

        # A private chat's id is the person's user id: the per-chat quota applies to it.
        return str(self.client.call(send, chat=user_id).message_id)
