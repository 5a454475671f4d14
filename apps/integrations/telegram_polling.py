"""The Telegram bot's inbound side: every update the bot asks for, read with python-telegram-bot into plain data
(``parse_telegram_update``), the bot-only calls the inbound handlers make (join requests, callback answers), and
the long-polling process (``run_polling``: PTB's ``Application``).

Polling and the webhook (``apps.bots.views``) hand the same update JSON to the same handler, so what the bot
does never depends on how the update arrived. ``ALLOWED_UPDATES`` is what both ask Telegram for; ``chat_member``
and ``message_reaction_count`` arrive only when asked for by name, and only to a bot that is an administrator.

Outside calls go through ``TelegramBotClient`` (the publisher's: circuit breaker, rate limiter, error
translation). On the offline twin (``TELEGRAM_BACKEND=outbox``) the join-request answers and callback answers
are logged, and the decision itself is kept by the caller (``telegram_join_requests``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import telegram
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from telegram.constants import ChatMemberStatus, ChatType, MessageEntityType
from telegram.error import BadRequest, Forbidden, InvalidToken
from telegram.ext import Application, ContextTypes, TypeHandler

from apps.core.resilience import PermanentError, RetryPolicy
from apps.integrations.publishers.base import Sleep
from apps.integrations.publishers.telegram import SERVICE, TelegramBotClient, inbound_event
from apps.integrations.types import InboundEvent

logger = logging.getLogger(__name__)

ALLOWED_UPDATES = [
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
    "callback_query",
    "message_reaction_count",
]
_IN = {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER}
_ADMINS = {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR}
# Join requests the bot already answered (or that were withdrawn): answering again is done, not an error.
_ALREADY_ANSWERED = ("hide_requester_missing", "user_already_participant", "request not found")


@dataclass(frozen=True, slots=True)
class TelegramPerson:
    id: str
    username: str = ""
    display_name: str = ""
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class TelegramMessageView:
    """A message in a chat, with what the handlers need beside the platform-neutral event."""

    chat_id: str
    chat_type: str  # "private" | "group" | "supergroup" | "channel"
    message_id: str
    sent_at: dt.datetime
    text: str
    edited: bool
    sender: TelegramPerson | None  # None: a channel or an anonymous admin speaking as the chat
    sent_as_chat: bool  # an anonymous group admin, or the linked channel, posting under the chat's name
    links: tuple[str, ...]
    command: str  # "/spam" for "/spam@CoinLinkBot because", lower case; "" for no command
    argument: str  # what follows the command
    event: InboundEvent | None  # ``None`` for a message that is not a person's
    reply_to: TelegramMessageView | None = None


@dataclass(frozen=True, slots=True)
class TelegramJoinRequestView:
    chat_id: str
    chat_type: str
    user: TelegramPerson
    user_chat_id: str  # the private chat the bot may write to for 5 minutes
    bio: str
    requested_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TelegramMemberView:
    chat_id: str
    chat_type: str
    user: TelegramPerson
    old_status: str
    new_status: str
    at: dt.datetime

    @property
    def joined(self) -> bool:
        return self.old_status not in _IN and self.new_status in _IN

    @property
    def left(self) -> bool:
        return self.old_status in _IN and self.new_status not in _IN


@dataclass(frozen=True, slots=True)
class TelegramCallbackView:
    id: str
    user: TelegramPerson
    data: str
    chat_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class TelegramReactionCountView:
    chat_id: str
    message_id: str
    total: int


@dataclass(frozen=True, slots=True)
class TelegramUpdateView:
    update_id: int
    kind: str  # the update's field: "message", "edited_message", "chat_join_request", ... or "other"
    message: TelegramMessageView | None = None
    join_request: TelegramJoinRequestView | None = None
    member: TelegramMemberView | None = None
    callback: TelegramCallbackView | None = None
    reaction_count: TelegramReactionCountView | None = None


def _person(user: telegram.User) -> TelegramPerson:
    return TelegramPerson(
        id=str(user.id), username=user.username or "", display_name=user.full_name, is_bot=user.is_bot
    )


def _links(message: telegram.Message) -> tuple[str, ...]:
    found: list[str] = []
    for entities in (message.parse_entities(), message.parse_caption_entities()):
        for entity, text in entities.items():
            if entity.type == MessageEntityType.URL:
                found.append(text)
            elif entity.type == MessageEntityType.TEXT_LINK and entity.url:
                found.append(entity.url)
    return tuple(dict.fromkeys(found))


def _message_view(
    update: telegram.Update, message: telegram.Message, *, edited: bool, with_reply: bool = True
) -> TelegramMessageView:
    text = message.text or message.caption or ""
    command, argument = "", ""
    if text.startswith("/"):
        head, _, rest = text.strip().partition(" ")
        command, argument = head.split("@", 1)[0].lower(), rest.strip()
    sent_as_chat = message.sender_chat is not None
    reply = message.reply_to_message
    return TelegramMessageView(
        chat_id=str(message.chat.id),
        chat_type=str(message.chat.type),
        message_id=str(message.message_id),
        sent_at=message.edit_date or message.date,
        text=text,
        edited=edited,
        sender=_person(message.from_user) if message.from_user and not sent_as_chat else None,
        sent_as_chat=sent_as_chat,
        links=_links(message),
        command=command,
        argument=argument,
        event=None if sent_as_chat else inbound_event(update, message),
        reply_to=(
            _message_view(update, reply, edited=False, with_reply=False)
            if with_reply and reply is not None
            else None
        ),
    )


def parse_telegram_update(data: Mapping[str, Any]) -> TelegramUpdateView:
    """What one update (its JSON, as Telegram sends it) says, read with PTB's ``Update.de_json``.
    ``ValueError`` when it is no update, or a malformed one."""
    if not isinstance(data, Mapping) or type(data.get("update_id")) is not int:
        raise ValueError("not a Telegram update: no integer update_id")
    update_id = int(data["update_id"])
    try:
        update = telegram.Update.de_json(dict(data), None)
        if update.message is not None or update.edited_message is not None:
            edited = update.message is None
            message = update.edited_message if edited else update.message
            assert message is not None
            kind = "edited_message" if edited else "message"
            return TelegramUpdateView(update_id, kind, message=_message_view(update, message, edited=edited))
        if update.channel_post is not None or update.edited_channel_post is not None:
            post = update.channel_post or update.edited_channel_post
            assert post is not None
            edited = update.channel_post is None
            kind = "edited_channel_post" if edited else "channel_post"
            return TelegramUpdateView(update_id, kind, message=_message_view(update, post, edited=edited))
        if (request := update.chat_join_request) is not None:
            view = TelegramJoinRequestView(
                chat_id=str(request.chat.id),
                chat_type=str(request.chat.type),
                user=_person(request.from_user),
                user_chat_id=str(request.user_chat_id),
                bio=request.bio or "",
                requested_at=request.date,
            )
            return TelegramUpdateView(update_id, "chat_join_request", join_request=view)
        if (changed := update.chat_member or update.my_chat_member) is not None:
            member = TelegramMemberView(
                chat_id=str(changed.chat.id),
                chat_type=str(changed.chat.type),
                user=_person(changed.new_chat_member.user),
                old_status=str(changed.old_chat_member.status),
                new_status=str(changed.new_chat_member.status),
                at=changed.date,
            )
            kind = "chat_member" if update.chat_member is not None else "my_chat_member"
            return TelegramUpdateView(update_id, kind, member=member)
        if (query := update.callback_query) is not None:
            origin = query.message
            callback = TelegramCallbackView(
                id=str(query.id),
                user=_person(query.from_user),
                data=query.data or "",
                chat_id=str(origin.chat.id) if origin is not None else "",
                message_id=str(origin.message_id) if origin is not None else "",
            )
            return TelegramUpdateView(update_id, "callback_query", callback=callback)
        if (counts := update.message_reaction_count) is not None:
            total = sum(reaction.total_count for reaction in counts.reactions)
            view_counts = TelegramReactionCountView(str(counts.chat.id), str(counts.message_id), total)
            return TelegramUpdateView(update_id, "message_reaction_count", reaction_count=view_counts)
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as exc:
        raise ValueError(f"malformed Telegram update {update_id}: {exc!r}") from exc
    return TelegramUpdateView(update_id, "other")


def is_private(chat_type: str) -> bool:
    return chat_type == ChatType.PRIVATE


def is_group(chat_type: str) -> bool:
    return chat_type in (ChatType.GROUP, ChatType.SUPERGROUP)


def is_admin_status(status: str) -> bool:
    return status in _ADMINS


# --- the bot's own calls -------------------------------------------------------------------------------------


class TelegramBotActions(Protocol):
    def approve_join_request(self, *, chat_id: str, user_id: str) -> None: ...

    def decline_join_request(self, *, chat_id: str, user_id: str) -> None: ...

    def answer_callback(self, *, callback_id: str, text: str) -> None: ...


def _chat(chat_id: str) -> int | str:
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def _already_answered(exc: BadRequest) -> bool:
    return any(phrase in exc.message.lower() for phrase in _ALREADY_ANSWERED)


class ApiTelegramBotActions:
    def __init__(self, *, client: TelegramBotClient) -> None:
        self.client = client

    @classmethod
    def from_settings(
        cls, *, policy: RetryPolicy | None = None, sleep: Sleep = time.sleep
    ) -> ApiTelegramBotActions:
        client = TelegramBotClient(
            token=settings.TELEGRAM_BOT_TOKEN,
            api_base_url=settings.TELEGRAM_API_BASE_URL,
            policy=policy or RetryPolicy(max_attempts=3),
            sleep=sleep,
        )
        return cls(client=client)

    def _answer(self, call: Callable[[telegram.Bot], Awaitable[bool]]) -> None:
        async def answer(bot: telegram.Bot) -> None:
            try:
                await call(bot)
            except BadRequest as exc:
                if not _already_answered(exc):
                    raise

        self.client.call(answer)

    def approve_join_request(self, *, chat_id: str, user_id: str) -> None:
        self._answer(lambda bot: bot.approve_chat_join_request(chat_id=_chat(chat_id), user_id=int(user_id)))

    def decline_join_request(self, *, chat_id: str, user_id: str) -> None:
        self._answer(lambda bot: bot.decline_chat_join_request(chat_id=_chat(chat_id), user_id=int(user_id)))

    def answer_callback(self, *, callback_id: str, text: str) -> None:
        self._answer(lambda bot: bot.answer_callback_query(callback_query_id=callback_id, text=text[:200]))


class TwinTelegramBotActions:
    """The offline twin: nothing reaches Telegram; the caller keeps the decision (``telegram_join_requests``)."""

    def approve_join_request(self, *, chat_id: str, user_id: str) -> None:
        logger.info("telegram twin: would approve %s joining %s", user_id, chat_id)

    def decline_join_request(self, *, chat_id: str, user_id: str) -> None:
        logger.info("telegram twin: would decline %s joining %s", user_id, chat_id)

    def answer_callback(self, *, callback_id: str, text: str) -> None:
        logger.info("telegram twin: would answer callback %s: %s", callback_id, text)


def get_bot_actions() -> TelegramBotActions:
    if settings.TELEGRAM_BACKEND == "outbox":
        return TwinTelegramBotActions()
    if not settings.TELEGRAM_BOT_TOKEN:
        raise ImproperlyConfigured("TELEGRAM_BACKEND=api needs TELEGRAM_BOT_TOKEN")
    return ApiTelegramBotActions.from_settings()


# --- polling -------------------------------------------------------------------------------------------------


def build_application(
    *,
    token: str,
    api_base_url: str,
    on_update: Callable[[dict[str, Any]], object],
    on_started: Callable[[], object] | None = None,
    on_stopped: Callable[[], object] | None = None,
) -> Application:  # type: ignore[type-arg]
    """PTB's ``Application`` with one handler that gives every update's JSON to ``on_update`` (sync code: it
    runs in Django's thread for sync work, one update at a time)."""

    async def handle(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, telegram.Update):
            return
        await sync_to_async(_call_fresh)(on_update, update.to_dict())

    async def errored(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # An update that trips over a bug must not stop the others (the handler keeps its own record).
        logger.error("telegram polling: update failed", exc_info=context.error)

    async def post_init(app: Application) -> None:  # type: ignore[type-arg]
        if on_started is not None:
            await sync_to_async(_call_fresh)(on_started)

    async def post_shutdown(app: Application) -> None:  # type: ignore[type-arg]
        if on_stopped is not None:
            await sync_to_async(_call_fresh)(on_stopped)

    application = (
        Application.builder()
        .token(token)
        .base_url(f"{api_base_url.rstrip('/')}/bot")
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    application.add_handler(TypeHandler(telegram.Update, handle))
    application.add_error_handler(errored)
    return application


def _call_fresh(fn: Callable[..., object], *args: Any) -> None:
    # A long-running process: a connection the database dropped since the last update is replaced.
    _refresh_connections()
    try:
        fn(*args)
    finally:
        _refresh_connections()


def _refresh_connections() -> None:
    # Django's close_old_connections, except inside a transaction (a test's), where a connection is never
    # obsolete.
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def run_polling(
    application: Application,  # type: ignore[type-arg]
    *,
    poll_timeout: int = 30,
    stop_signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Long-poll ``getUpdates`` until one of ``stop_signals``, then shut down cleanly (the update in hand is
    finished, the offset committed). Polling takes the bot's updates from a webhook (PTB deletes it first);
    network errors are retried by PTB with growing waits, bootstrap errors for ever."""
    try:
        application.run_polling(
            allowed_updates=ALLOWED_UPDATES,
            timeout=poll_timeout,
            bootstrap_retries=-1,
            stop_signals=stop_signals,
            close_loop=True,  # and with it the signal handlers it installed
        )
    except (InvalidToken, Forbidden) as exc:
        raise PermanentError(f"Telegram refused the bot: {exc}", service=SERVICE) from exc
    finally:
        # PTB leaves its (closed) event loop set as the thread's current one.
        asyncio.set_event_loop(None)


def telegram_updates_taken(*, now: dt.datetime | None = None) -> bool:
    """Whether the real bot's updates go to the bot: a webhook is configured, or a polling process
    (``run_telegram_bot``) is alive. Then ``getUpdates`` would only get a 409, and everything inbound arrives
    as interactions through the bot instead. The outbox twin has no updates to take."""
    if settings.TELEGRAM_BACKEND != "api":
        return False
    if settings.TELEGRAM_WEBHOOK_SECRET:
        return True
    from django.utils import timezone

    from apps.core.models import Heartbeat

    fresh = (now or timezone.now()) - dt.timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS)
    return Heartbeat.objects.filter(
        kind=Heartbeat.Kind.BOT, name__startswith="telegram@", stopped_at__isnull=True, last_seen__gte=fresh
    ).exists()
