"""Publishing to a Discord channel with discord.py's HTTP layer: ``discord.http.HTTPClient`` with a bot token
(channel ``DISCORD_CHANNEL_ID``; posts, replies, reactions), or a channel webhook (``DISCORD_WEBHOOK_URL``;
posting only). ``DISCORD_API_BASE_URL`` replaces ``discord.http.Route.BASE``, which both paths build their URLs
from.

Each bot call runs in a fresh event loop with its own ``HTTPClient`` (log in, call, close), so nothing
loop-bound outlives it. Every send carries a ``nonce`` derived from the idempotency key with
``enforce_nonce``, so Discord itself drops the duplicate when a timed-out send is retried (webhooks have no
nonce: a retried webhook send can post twice).

Limits are checked before sending (content 2000 characters, 10 embeds, 6000 characters across embeds), since
invalid requests count towards Discord's ban of 10,000 in 10 minutes. Rate limits: discord.py waits out a
429 shorter than 30 seconds by itself and retries 500/502/504 a few times; anything longer comes back to us
as ``RateLimited``. Every response's ``X-RateLimit-Remaining: 0`` or 429 blocks its bucket in the shared
``RateLimiter`` for ``X-RateLimit-Reset-After`` seconds, so other workers wait too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import io
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import discord
import discord.http
import requests
from discord.utils import time_snowflake
from django.conf import settings
from django.core.cache import cache
from requests.adapters import HTTPAdapter

from apps.core.resilience import (
    PermanentError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    TransientError,
    retry_after_from_headers,
)
from apps.integrations.publishers.base import DM_PREFIX, Sleep, guarded, run_async
from apps.integrations.types import InboundEvent, OutboundPost, PostMetrics, PublishResult

SERVICE = "discord"
DEFAULT_API_BASE = "https://discord.com/api/v10"
MAX_CONTENT, MAX_EMBEDS, MAX_EMBED_TOTAL = 2000, 10, 6000
EMBED_FIELD_LIMITS = {"title": 256, "description": 4096}
CALL_TIMEOUT = 90.0  # covers discord.py's own short rate-limit waits and 5xx retries
HISTORY_PAGES = 5
T = TypeVar("T")


def nonce_for(idempotency_key: str, part: int = 0) -> str:
    """Discord accepts a nonce of up to 25 characters."""
    return hashlib.sha256(f"{idempotency_key}:{part}".encode()).hexdigest()[:25]


def embed_length(embed: dict[str, Any]) -> int:
    """Characters Discord counts against the 6000 shared by a message's embeds."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len((embed.get("footer") or {}).get("text", "")) + len(
        (embed.get("author") or {}).get("name", "")
    )
    total += sum(len(f.get("name", "")) + len(f.get("value", "")) for f in embed.get("fields", []))
    return total


def validate(content: str, embeds: list[dict[str, Any]]) -> None:
    if len(content) > MAX_CONTENT:
        raise PermanentError(f"content is {len(content)} characters; Discord allows {MAX_CONTENT}")
    if len(embeds) > MAX_EMBEDS:
        raise PermanentError(f"{len(embeds)} embeds; Discord allows {MAX_EMBEDS}")
    if (total := sum(map(embed_length, embeds))) > MAX_EMBED_TOTAL:
        raise PermanentError(f"embeds hold {total} characters; Discord allows {MAX_EMBED_TOTAL}")
    for embed in embeds:
        for name, limit in EMBED_FIELD_LIMITS.items():
            if len(embed.get(name, "")) > limit:
                raise PermanentError(f"embed {name} is over Discord's {limit} characters")


@dataclass(frozen=True, slots=True)
class _Observed:
    method: str
    path: str
    status: int
    headers: dict[str, str]


class _TimeoutAdapter(HTTPAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = 30.0
        return super().send(request, **kwargs)


class DiscordBotClient:
    """discord.py's HTTP layer as the bot, shared by the publisher and the access gateway (roles): each call runs
    in a fresh event loop with its own ``HTTPClient`` (log in, call, close) inside the ``discord`` circuit
    breaker, with errors translated to ``apps.core.resilience`` errors and rate-limit buckets shared through
    the cache."""

    def __init__(
        self,
        *,
        bot_token: str,
        api_base_url: str = "",
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.bot_token = bot_token
        # A class attribute of discord.py: every client in the process builds its URLs from it.
        discord.http.Route.BASE = (api_base_url or DEFAULT_API_BASE).rstrip("/")
        self.base_path = urlsplit(discord.http.Route.BASE).path
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.limiter = RateLimiter(SERVICE)

    # --- rate-limit buckets ---------------------------------------------------------------------------------

    def bucket(self, method: str, path: str) -> str:
        """Discord keys its buckets by route and major parameter (channel, guild, webhook): other ids in the
        path (a message, a member, a role) share their route's bucket."""
        path = path.removeprefix(self.base_path)
        return f"{method}:" + re.sub(r"(?<!/channels)(?<!/guilds)(?<!/webhooks)/\d+", "/{id}", path)

    def _observe(self, seen: list[_Observed]) -> None:
        """Remember what Discord said about its buckets, for every worker."""
        for response in seen:
            remaining = response.headers.get("x-ratelimit-remaining")
            if response.status == 429 or remaining == "0":
                wait = retry_after_from_headers(response.headers)
                if wait:
                    self.limiter.block(self.bucket(response.method, response.path), wait)

    # --- calls ----------------------------------------------------------------------------------------------

    def translate(self, exc: BaseException, bucket: str) -> Exception:
        if isinstance(exc, discord.RateLimited):
            return RateLimited(
                f"Discord rate limit: {exc}", retry_after=exc.retry_after, service=SERVICE, bucket=bucket
            )
        if isinstance(exc, discord.HTTPException):
            status = exc.status
            if status == 429:
                headers = {k.lower(): v for k, v in exc.response.headers.items()}
                wait = retry_after_from_headers(headers)
                return RateLimited(
                    f"Discord 429: {exc}",
                    retry_after=5.0 if wait is None else wait,
                    service=SERVICE,
                    bucket=bucket,
                )
            if status >= 500:
                return TransientError(f"Discord {status}: {exc}", service=SERVICE)
            return PermanentError(f"Discord {status}: {exc}", service=SERVICE)
        if isinstance(exc, discord.LoginFailure):
            return PermanentError(f"Discord rejected the bot token: {exc}", service=SERVICE)
        return TransientError(f"Discord unreachable: {exc!r}", service=SERVICE)

    def call(self, fn: Callable[[discord.http.HTTPClient, Any], Awaitable[T]], *, bucket: str) -> T:
        """One guarded call: log in, run ``fn(http, me)``, close."""

        def attempt() -> T:
            if bucket and (blocked := self.limiter.blocked_for(bucket)):
                raise RateLimited(f"Discord bucket {bucket} is exhausted", retry_after=blocked, bucket=bucket)
            seen: list[_Observed] = []
            try:
                return run_async(lambda: asyncio.wait_for(self._session(fn, seen), CALL_TIMEOUT))
            except (discord.DiscordException, aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise self.translate(exc, bucket) from exc
            finally:
                self._observe(seen)

        return guarded(SERVICE, attempt, policy=self.policy, sleep=self.sleep)

    async def _session(
        self, fn: Callable[[discord.http.HTTPClient, Any], Awaitable[T]], seen: list[_Observed]
    ) -> T:
        async def on_request_end(session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
            headers = {k.lower(): v for k, v in params.response.headers.items()}
            seen.append(_Observed(params.method, params.url.path, params.response.status, headers))

        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        http = discord.http.HTTPClient(
            asyncio.get_running_loop(), http_trace=trace, max_ratelimit_timeout=30.0
        )
        try:
            me = await http.static_login(self.bot_token)
            return await fn(http, me)
        finally:
            await http.close()


class DiscordPublisher:
    platform = "discord"

    def __init__(
        self,
        *,
        bot_token: str = "",
        channel_id: str = "",
        webhook_url: str = "",
        api_base_url: str = "",
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not (bot_token and channel_id) and not webhook_url:
            raise ValueError("Discord needs a bot token and channel id, or a webhook URL")
        self.bot_token = bot_token
        self.channel_id = channel_id
        self.webhook_url = webhook_url
        # Built for webhooks too: they take their URLs from the same base.
        self.client = DiscordBotClient(
            bot_token=bot_token, api_base_url=api_base_url, policy=policy, sleep=sleep
        )
        self.policy = self.client.policy
        self.sleep = sleep

    @classmethod
    def from_settings(cls) -> DiscordPublisher:
        return cls(
            bot_token=settings.DISCORD_BOT_TOKEN,
            channel_id=settings.DISCORD_CHANNEL_ID,
            webhook_url=settings.DISCORD_WEBHOOK_URL,
            api_base_url=settings.DISCORD_API_BASE_URL,
        )

    # --- publish --------------------------------------------------------------------------------------------

    def publish(self, post: OutboundPost) -> PublishResult:
        embeds = [dict(post.embed)] if post.embed else []
        if embeds and post.image is not None and "image" not in embeds[0]:
            # Show the attached chart inside the embed rather than above it.
            embeds[0]["image"] = {"url": f"attachment://{post.image_name}"}
        parts = list(post.parts) or [post.text]
        for index, part in enumerate(parts):
            validate(part, embeds if index == 0 else [])
        if self.webhook_url and not self.bot_token:
            if post.channel:
                # A webhook can only post to its own channel: sending a DM or a members-only post there would
                # put it in front of the wrong audience.
                raise PermanentError(
                    f"a Discord webhook cannot post to {post.channel!r}; configure a bot token for that",
                    service="discord",
                )
            return self._publish_webhook(parts, embeds, post)
        return self._publish_bot(parts, embeds, post)

    def _message_params(
        self,
        text: str,
        embeds: list[dict[str, Any]],
        post: OutboundPost,
        index: int,
        reply_to: str,
        channel: str,
    ) -> discord.http.MultipartParameters:
        kwargs: dict[str, Any] = {
            "nonce": nonce_for(post.idempotency_key, index),
            # Generated text must never ping @everyone or a role.
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        if text:
            kwargs["content"] = text
        if embeds:
            kwargs["embeds"] = [discord.Embed.from_dict(e) for e in embeds]
        if index == 0 and post.image is not None:
            kwargs["file"] = discord.File(io.BytesIO(post.image), filename=post.image_name)
        if reply_to:
            kwargs["message_reference"] = {
                "message_id": int(reply_to),
                "channel_id": int(channel),
                "fail_if_not_exists": False,
            }
        return discord.http.handle_message_parameters(**kwargs)

    def _publish_bot(
        self, parts: list[str], embeds: list[dict[str, Any]], post: OutboundPost
    ) -> PublishResult:
        target = post.channel or self.channel_id
        direct = target.startswith(DM_PREFIX)

        async def send(http: discord.http.HTTPClient, me: Any) -> tuple[list[str], str, str]:
            channel = target
            if direct:
                dm = await http.start_private_message(int(target.removeprefix(DM_PREFIX)))
                channel = str(dm["id"])
            ids: list[str] = []
            for index, part in enumerate(parts):
                reply_to = post.reply_to if index == 0 else ""
                with self._message_params(
                    part, embeds if index == 0 else [], post, index, reply_to, channel
                ) as params:
                    message = await http.send_message(int(channel), params=params)
                ids.append(str(message["id"]))
            guild = "@me" if direct else await self._guild_of(http, channel)
            return ids, channel, guild

        bucket = "" if direct else self.client.bucket("POST", f"/channels/{target}/messages")
        ids, channel, guild = self.client.call(send, bucket=bucket)
        return PublishResult(
            external_id=ids[0],
            url=f"https://discord.com/channels/{guild}/{channel}/{ids[0]}",
            part_ids=tuple(ids),
        )

    async def _guild_of(self, http: discord.http.HTTPClient, channel_id: str) -> str:
        key = f"discord:guild-of:{channel_id}"
        if guild := cache.get(key):
            return str(guild)
        data = await http.get_channel(int(channel_id))
        guild = str(data.get("guild_id") or "@me")
        cache.set(key, guild, timeout=24 * 3600)
        return guild

    def _publish_webhook(
        self, parts: list[str], embeds: list[dict[str, Any]], post: OutboundPost
    ) -> PublishResult:
        session = requests.Session()
        session.mount("http://", _TimeoutAdapter())
        session.mount("https://", _TimeoutAdapter())
        webhook = discord.SyncWebhook.from_url(self.webhook_url, session=session)

        def send(index: int, text: str) -> discord.SyncWebhookMessage:
            kwargs: dict[str, Any] = {"wait": True, "allowed_mentions": discord.AllowedMentions.none()}
            if text:
                kwargs["content"] = text
            if index == 0 and embeds:
                kwargs["embeds"] = [discord.Embed.from_dict(e) for e in embeds]
            if index == 0 and post.image is not None:
                kwargs["file"] = discord.File(io.BytesIO(post.image), filename=post.image_name)
            try:
                return webhook.send(**kwargs)
            except (discord.DiscordException, requests.RequestException) as exc:
                raise self.client.translate(exc, "") from exc

        try:
            messages = [
                guarded(SERVICE, functools.partial(send, i, t), policy=self.policy, sleep=self.sleep)
                for i, t in enumerate(parts)
            ]
        finally:
            session.close()
        first = messages[0]
        guild = first.guild.id if first.guild else None
        url = f"https://discord.com/channels/{guild}/{first.channel.id}/{first.id}" if guild else ""
        return PublishResult(external_id=str(first.id), url=url, part_ids=tuple(str(m.id) for m in messages))

    # --- inbound --------------------------------------------------------------------------------------------

    def fetch_inbound(self, *, since: dt.datetime | None) -> list[InboundEvent]:
        """Messages posted in the channel since ``since``; a webhook alone cannot read, so it returns none."""
        if not self.bot_token:
            return []
        channel = self.channel_id
        after = time_snowflake(since, high=True) if since else None

        async def read(http: discord.http.HTTPClient, me: Any) -> tuple[list[Any], str]:
            messages: list[Any] = []
            cursor = after
            for _ in range(HISTORY_PAGES):
                page = await http.logs_from(int(channel), 100, after=cursor)
                messages += page
                if len(page) < 100:
                    break
                cursor = max(int(m["id"]) for m in page)
            return messages, str(me["id"])

        messages, me = self.client.call(
            read, bucket=self.client.bucket("GET", f"/channels/{channel}/messages")
        )
        return [
            self._event(m, me)
            for m in sorted(messages, key=lambda m: int(m["id"]))
            if str(m["author"]["id"]) != me
        ]

    def _event(self, message: dict[str, Any], me: str) -> InboundEvent:
        reference = message.get("message_reference") or {}
        author = message["author"]
        if reference.get("message_id"):
            kind = "reply"
        elif any(str(user["id"]) == me for user in message.get("mentions", [])):
            kind = "mention"
        else:
            kind = "message"
        return InboundEvent(
            platform=self.platform,
            kind=kind,
            external_id=str(message["id"]),
            author_id=str(author["id"]),
            author_username=author.get("username", ""),
            author_display_name=author.get("global_name") or author.get("username", ""),
            occurred_at=dt.datetime.fromisoformat(message["timestamp"]),
            text=message.get("content", ""),
            in_reply_to=str(reference.get("message_id") or ""),
            channel=str(message.get("channel_id", self.channel_id)),
            is_bot=bool(author.get("bot", False)),
        )

    # --- metrics --------------------------------------------------------------------------------------------

    def fetch_metrics(self, external_ids: list[str]) -> list[PostMetrics]:
        """Reaction counts, read from each message; the API reports no views."""
        if not self.bot_token or not external_ids:
            return []
        channel = self.channel_id

        async def read(http: discord.http.HTTPClient, me: Any) -> list[PostMetrics]:
            results = []
            for external_id in external_ids:
                try:
                    message = await http.get_message(int(channel), int(external_id))
                except discord.NotFound:
                    continue  # deleted since
                reactions = sum(int(r.get("count", 0)) for r in message.get("reactions", []))
                results.append(PostMetrics(external_id=external_id, metrics={"reactions": reactions}))
            return results

        return self.client.call(read, bucket="")
