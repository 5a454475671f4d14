"""Publishing to a Telegram channel through python-telegram-bot's ``Bot`` (the Bot API).

The library is async; each call runs in a fresh event loop with a ``Bot`` and HTTP clients of its own, closed
afterwards, so nothing loop-bound outlives the call (see ``base.run_async``). Messages are at most 4096
characters and captions 1024: a post with an image goes out as the photo with its first paragraph as the
caption, followed by the rest as a message. The shared ``RateLimiter`` keeps to about 30 messages a second
overall, 1 a second per chat and 20 a minute per group or channel; a 429 (``RetryAfter``) blocks the chat for
the wait Telegram asks for.

Inbound: ``getUpdates`` with its offset kept in the cache, so each update is consumed once. That only works
while nothing else takes the bot's updates: with the Telegram bot running (webhook or polling) the updates go
there (Telegram answers this 409 Conflict, a ``PermanentError``), so the engagement agent does not call it
(``apps.integrations.telegram_polling.telegram_updates_taken``) and the bot records what arrives as
interactions, and reaction counts with ``reaction_count_record``.

Metrics: the Bot API exposes no view counts at all. The only engagement a bot can see is the anonymous reaction
count of channel posts (``message_reaction_count`` updates, delivered to an admin bot), which ``fetch_inbound``
records as it consumes them; ``fetch_metrics`` reports ``reactions`` for the posts it has counts for and
nothing for the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import telegram
from django.conf import settings
from django.core.cache import cache
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from apps.core.resilience import PermanentError, RateLimited, RateLimiter, RetryPolicy, TransientError
from apps.integrations.publishers.base import DM_PREFIX, PublishProgress, Sleep, chunks, guarded, run_async
from apps.integrations.types import InboundEvent, OutboundPost, PostMetrics, PublishResult

SERVICE = "telegram"
MAX_TEXT, MAX_CAPTION = 4096, 1024
UPDATE_TYPES = ["message", "edited_message", "message_reaction_count"]
REACTIONS_TTL = 30 * 24 * 3600
T = TypeVar("T")


def _seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        # PTB 22 warns that ``retry_after`` becomes a timedelta; either shape is handled.
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _text_sender(
    chat: str, text: str, reply: telegram.ReplyParameters | None
) -> Callable[[telegram.Bot], Awaitable[telegram.Message]]:
    async def send(bot: telegram.Bot) -> telegram.Message:
        return await bot.send_message(chat_id=chat, text=text, reply_parameters=reply)

    return send


def inbound_event(update: telegram.Update, message: telegram.Message) -> InboundEvent | None:
    """A person's message in an update, as the platform-neutral event."""
    author = message.from_user
    if author is None or message.is_automatic_forward:
        return None  # a channel speaking, or our own post mirrored into the discussion group
    chat_id = str(message.chat.id)
    reply = message.reply_to_message
    if message.chat.type == ChatType.PRIVATE:
        kind, in_reply_to = "dm", ""
    elif reply is not None and reply.is_automatic_forward and reply.forward_origin is not None:
        # A comment under a channel post: the discussion group's copy points back at the post.
        kind, in_reply_to = "comment", str(getattr(reply.forward_origin, "message_id", reply.message_id))
    elif reply is not None:
        kind, in_reply_to = "reply", f"{chat_id}:{reply.message_id}"
    else:
        kind, in_reply_to = "message", ""
    suffix = ":edited" if update.edited_message is not None else ""
    return InboundEvent(
        platform=SERVICE,
        kind=kind,
        external_id=f"{chat_id}:{message.message_id}{suffix}",
        author_id=str(author.id),
        author_username=author.username or "",
        author_display_name=author.full_name,
        occurred_at=message.edit_date or message.date,
        text=message.text or message.caption or "",
        in_reply_to=in_reply_to,
        channel=f"{DM_PREFIX}{chat_id}" if kind == "dm" else chat_id,
        is_bot=author.is_bot,
    )


def parse_update(data: Mapping[str, Any]) -> tuple[int, InboundEvent | None]:
    """A webhook update's id and the person's message in it (``None`` for any other kind of update), parsed
    with PTB's ``Update.de_json``; ``ValueError`` when ``data`` is not an update at all."""
    if not isinstance(data, Mapping) or not isinstance(data.get("update_id"), int):
        raise ValueError("not a Telegram update: no integer update_id")
    try:
        update = telegram.Update.de_json(dict(data), None)
        message = update.message or update.edited_message
        return update.update_id, inbound_event(update, message) if message is not None else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed Telegram update {data.get('update_id')}: {exc!r}") from exc


class TelegramBotClient:
    """python-telegram-bot's ``Bot``, shared by the publisher, the access gateway (invites, removals) and the
    bot's webhook setup: each call runs in a fresh event loop with a ``Bot`` and HTTP clients of its own, inside
    the ``telegram`` circuit breaker, with errors translated to ``apps.core.resilience`` errors."""

    def __init__(
        self,
        *,
        token: str,
        api_base_url: str = "https://api.telegram.org",
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.token = token
        self.base_url = api_base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.limiter = RateLimiter(SERVICE)

    def run(self, fn: Callable[[telegram.Bot], Awaitable[T]]) -> T:
        async def with_bot() -> T:
            request = HTTPXRequest(connect_timeout=10.0, read_timeout=30.0, write_timeout=30.0)
            updates = HTTPXRequest(connect_timeout=10.0, read_timeout=30.0)
            bot = telegram.Bot(
                self.token, base_url=f"{self.base_url}/bot", request=request, get_updates_request=updates
            )
            try:
                return await fn(bot)
            finally:
                await request.shutdown()
                await updates.shutdown()

        return run_async(with_bot)

    def call(self, fn: Callable[[telegram.Bot], Awaitable[T]], *, chat: str = "") -> T:
        """One guarded call; a message to ``chat`` first waits for Telegram's message quotas."""

        def attempt() -> T:
            if chat:
                self._wait_for_quota(chat)
            try:
                return self.run(fn)
            except RetryAfter as exc:
                wait = _seconds(exc)
                bucket = f"chat:{chat}" if chat else "global"
                self.limiter.block(bucket, wait)
                raise RateLimited(
                    f"Telegram flood control: {exc}", retry_after=wait, service=SERVICE
                ) from exc
            except (BadRequest, Forbidden, InvalidToken, ChatMigrated, Conflict) as exc:
                # BadRequest is a NetworkError subclass in PTB, so it is caught before the transient ones.
                raise PermanentError(f"Telegram: {exc}", service=SERVICE) from exc
            except NetworkError as exc:  # includes TimedOut and 5xx answers
                raise TransientError(f"Telegram: {exc}", service=SERVICE) from exc
            except TelegramError as exc:
                raise PermanentError(f"Telegram: {exc}", service=SERVICE) from exc

        return guarded(SERVICE, attempt, policy=self.policy, sleep=self.sleep)

    def _wait_for_quota(self, chat: str) -> None:
        quotas = [("global", 30, 1.0), (f"chat:{chat}", 1, 1.0)]
        if not chat.isdigit():  # a private chat's id is a positive number; channels and groups are not
            quotas.append((f"group:{chat}", 20, 60.0))
        for bucket, limit, per in quotas:
            self.limiter.wait(
                bucket, limit=limit, per=per, max_wait=self.policy.max_rate_limit_wait, sleep=self.sleep
            )


class TelegramPublisher:
    platform = "telegram"

    def __init__(
        self,
        *,
        token: str,
        channel_id: str,
        api_base_url: str = "https://api.telegram.org",
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.client = TelegramBotClient(token=token, api_base_url=api_base_url, policy=policy, sleep=sleep)
        self.channel_id = channel_id
        self._bot_key = hashlib.sha256(token.encode()).hexdigest()[:16]

    @classmethod
    def from_settings(cls) -> TelegramPublisher:
        return cls(
            token=settings.TELEGRAM_BOT_TOKEN,
            channel_id=settings.TELEGRAM_CHANNEL_ID,
            api_base_url=settings.TELEGRAM_API_BASE_URL,
        )

    # --- publish --------------------------------------------------------------------------------------------

    def publish(self, post: OutboundPost) -> PublishResult:
        chat = post.channel.removeprefix(DM_PREFIX) if post.channel else self.channel_id
        texts = [piece for part in (post.parts or (post.text,)) for piece in chunks(part, MAX_TEXT)]
        progress = PublishProgress(self.platform, post.idempotency_key)
        sent = progress.sent()
        messages: list[tuple[str, Callable[[telegram.Bot], Awaitable[telegram.Message]]]] = []
        reply = telegram.ReplyParameters(message_id=int(post.reply_to)) if post.reply_to else None
        if post.image is not None:
            paragraphs = texts[0].split("\n\n") if texts else [""]
            caption = paragraphs[0] if len(paragraphs[0]) <= MAX_CAPTION else ""
            remainder = texts[0][len(caption) :].strip() if caption else texts[0]
            texts = ([remainder] if remainder else []) + texts[1:]
            image, name = post.image, post.image_name
            messages.append(
                (
                    "photo",
                    lambda bot: bot.send_photo(
                        chat_id=chat,
                        photo=image,
                        filename=name,
                        caption=caption or None,
                        reply_parameters=reply,
                    ),
                )
            )
        for index, text in enumerate(texts):
            first = index == 0 and post.image is None
            messages.append(("text", _text_sender(chat, text, reply if first else None)))
        username = ""
        for _, send in messages[len(sent) :]:
            message = self.client.call(send, chat=chat)
            sent.append(str(message.message_id))
            progress.record(sent)
            username = message.chat.username or ""
        return PublishResult(
            external_id=sent[0], url=self._url(chat, sent[0], username), part_ids=tuple(sent)
        )

    @staticmethod
    def _url(chat: str, message_id: str, username: str) -> str:
        if username:
            return f"https://t.me/{username}/{message_id}"
        if chat.startswith("@"):
            return f"https://t.me/{chat[1:]}/{message_id}"
        if chat.startswith("-100"):
            return f"https://t.me/c/{chat[4:]}/{message_id}"  # a private channel: members only
        return ""

    # --- inbound --------------------------------------------------------------------------------------------

    def fetch_inbound(self, *, since: dt.datetime | None) -> list[InboundEvent]:
        offset_key = f"telegram:updates-offset:{self._bot_key}"
        offset = cache.get(offset_key)
        updates: tuple[telegram.Update, ...] = self.client.call(
            lambda bot: bot.get_updates(offset=offset, timeout=0, limit=100, allowed_updates=UPDATE_TYPES)
        )
        events = []
        for update in updates:
            if update.message_reaction_count is not None:
                self._record_reactions(update.message_reaction_count)
            message = update.message or update.edited_message
            if message is None or (since is not None and message.date <= since):
                continue
            if event := inbound_event(update, message):
                events.append(event)
        if updates:
            cache.set(offset_key, updates[-1].update_id + 1, timeout=None)
        return events

    def _reactions_key(self, message_id: str) -> str:
        return f"telegram:reactions:{self._bot_key}:{message_id}"

    def _record_reactions(self, counts: Any) -> None:
        total = sum(reaction.total_count for reaction in counts.reactions)
        self.reaction_count_record(message_id=str(counts.message_id), total=total)

    def reaction_count_record(self, *, message_id: str, total: int) -> None:
        """A channel post's reaction count, as the bot process (which takes the updates) received it."""
        cache.set(self._reactions_key(message_id), total, timeout=REACTIONS_TTL)

    # --- metrics --------------------------------------------------------------------------------------------

    def fetch_metrics(self, external_ids: list[str]) -> list[PostMetrics]:
        counts = cache.get_many([self._reactions_key(i) for i in external_ids])
        return [
            PostMetrics(external_id=i, metrics={"reactions": int(counts[self._reactions_key(i)])})
            for i in external_ids
            if self._reactions_key(i) in counts
        ]
