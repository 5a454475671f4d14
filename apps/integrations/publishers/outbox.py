"""The offline twin of the three publishers. ``publish`` records exactly what would have been sent in the
``outbox_messages`` table (publishing one idempotency key twice returns the first result); ``fetch_inbound``
plays a small, deterministic audience (``fixtures/community/personas.json``) that replies to, mentions and
messages the creator about each recent post; ``fetch_metrics`` grows plausible numbers with a post's age. So the
whole pipeline, engagement and analytics included, has real work to do without a network.

Everything the audience does is a pure function of the outbox rows and the clock: re-fetching returns the same
events under the same external ids, so consumers that upsert by external id record each one once.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import random
import re
import uuid
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.integrations import audience
from apps.integrations.models import OutboxMessage
from apps.integrations.publishers.base import DM_PREFIX, stable_hash
from apps.integrations.types import InboundEvent, OutboundPost, PostMetrics, PublishResult

PERSONAS_FILE = settings.BASE_DIR / "fixtures" / "community" / "personas.json"
# The audience answers posts from the last week; the last of a post's events comes within 36 hours.
AUDIENCE_WINDOW = dt.timedelta(days=7)
MAX_EVENT_DELAY_MINUTES = 36 * 60

_REPLIES: dict[str, tuple[str, ...]] = {
    "curious": (
        "What timeframe is this on?",
        "Do you check volume before trusting a {asset} signal like this?",
        "How often has this setup worked on {asset} lately?",
        "Is this on the daily or the 4h?",
        "What level would change your mind on {asset}?",
    ),
    "bullish": (
        "Been stacking {asset} all month, this tracks.",
        "{asset} looking strong. Nice call-out.",
        "This is the setup I was waiting for on {asset}.",
    ),
    "bearish": (
        "Not convinced. {asset} has failed right here before.",
        "Feels like a trap to me, volume is thin.",
        "I'd wait for a retest before getting excited about {asset}.",
    ),
    "skeptic": (
        "Indicators lag. What's the actual edge here?",
        "Where does the sentiment data come from?",
        "How do you avoid cherry-picking these signals?",
    ),
    "newbie": (
        "Sorry if this is a dumb question, but what does RSI actually measure?",
        "New here: how do you read a MACD cross?",
        "Is there a beginner guide somewhere? I want to learn this properly.",
        "What's a Bollinger Band?",
    ),
    "supporter": (
        "Great breakdown as always 🙏",
        "Clear and no hype, that's why I follow.",
        "Thanks, this helped me a lot today.",
        "Saving this one.",
    ),
    "spammer": (
        "🚀 Join my VIP signals group, 100x guaranteed!!! t.me/pump_signals_vip",
        "Claim your free {asset} airdrop now ➡ bit.ly/free-claim-now",
        "Send 0.1 ETH and get 0.2 back!! Official giveaway, DM me",
    ),
}
_DMS = (
    "Hi! Do you have a paid group? What's included?",
    "How do I join the members' community?",
    "Is there a trial for the premium plan?",
    "Do you do 1:1 coaching? I'm new to all this.",
)
# Which kinds of event each platform produces, and how often (out of 10).
_KINDS = {
    "x": (("reply", 6), ("mention", 3), ("dm", 1)),
    "telegram": (("comment", 7), ("dm", 3)),
    "discord": (("reply", 5), ("message", 4), ("mention", 1)),
}
_NOT_ASSETS = {"RSI", "MACD", "NOT", "THE", "VIP", "DM", "CTA"}


@functools.cache
def personas() -> list[dict[str, Any]]:
    return list(json.loads(PERSONAS_FILE.read_text(encoding="utf-8"))["personas"])


@functools.cache
def _discord_members() -> int:
    """The twin's Discord server: the personas who are on Discord."""
    return sum(1 for persona in personas() if "discord" in persona)


def _asset_in(text: str) -> str:
    for tag in re.findall(r"#([A-Za-z][A-Za-z0-9]{1,11})\b", text):
        if tag.lower() != "crypto":
            return tag.upper()
    for word in re.findall(r"\b[A-Z]{2,6}\b", text):
        if word not in _NOT_ASSETS:
            return word
    return "this"


def _pick_kind(platform: str, h: int) -> str:
    roll = h % 10
    for kind, weight in _KINDS[platform]:
        if roll < weight:
            return kind
        roll -= weight
    return _KINDS[platform][0][0]


# Engagement the platforms count per like in the metrics below: X likes, reposts (0.18) and quotes (0.04);
# Telegram reactions (0.8) and forwards (0.1) over views (0.6 of reach).
ENGAGEMENT_PER_LIKE = {"x": 1.22, "telegram": 1.5}


class OutboxPublisher:
    """Publishes into the outbox table instead of a platform."""

    def __init__(self, platform: str) -> None:
        self.platform = platform

    # --- publish --------------------------------------------------------------------------------------------

    def publish(self, post: OutboundPost) -> PublishResult:
        existing = OutboxMessage.objects.filter(
            platform=self.platform, idempotency_key=post.idempotency_key
        ).first()
        if existing is not None:
            return self._result(existing)
        channel = post.channel or self._default_channel()
        kind = (
            OutboxMessage.Kind.DM
            if channel.startswith(DM_PREFIX)
            else OutboxMessage.Kind.REPLY
            if post.reply_to
            else OutboxMessage.Kind.POST
        )
        try:
            with transaction.atomic():
                message = OutboxMessage.objects.create(
                    platform=self.platform,
                    channel=channel,
                    kind=kind,
                    text=post.text,
                    parts=list(post.parts),
                    embed=post.embed or {},
                    has_image=post.image is not None,
                    reply_to=post.reply_to,
                    idempotency_key=post.idempotency_key,
                    external_id=f"pending-{uuid.uuid4().hex}",
                )
                # The id is known only once the row exists.
                message.external_id = f"outbox-{self.platform}-{message.pk}"
                message.url = settings.SITE_URL.rstrip("/") + reverse(
                    "admin:integrations_outboxmessage_change", args=[message.pk]
                )
                if post.image is not None:
                    message.image.save(post.image_name, ContentFile(post.image), save=False)
                message.save(update_fields=["external_id", "url", "image"])
        except IntegrityError:
            # A concurrent publish of the same key got there first: its row is the result.
            message = OutboxMessage.objects.get(platform=self.platform, idempotency_key=post.idempotency_key)
        return self._result(message)

    def _default_channel(self) -> str:
        return {
            "x": f"@{settings.X_HANDLE}" if settings.X_HANDLE else "",
            "telegram": settings.TELEGRAM_CHANNEL_ID,
            "discord": settings.DISCORD_CHANNEL_ID,
        }.get(self.platform, "")

    @staticmethod
    def _result(message: OutboxMessage) -> PublishResult:
        count = max(1, len(message.parts))
        part_ids = (message.external_id, *(f"{message.external_id}-{i}" for i in range(2, count + 1)))
        return PublishResult(external_id=message.external_id, url=message.url, part_ids=part_ids)

    # --- the simulated audience -----------------------------------------------------------------------------

    def fetch_inbound(self, *, since: dt.datetime | None) -> list[InboundEvent]:
        now = timezone.now()
        oldest = now - AUDIENCE_WINDOW
        if since is not None:
            oldest = max(oldest, since - dt.timedelta(minutes=MAX_EVENT_DELAY_MINUTES))
        posts = OutboxMessage.objects.filter(
            platform=self.platform, kind=OutboxMessage.Kind.POST, created_at__gte=oldest
        ).order_by("created_at", "pk")
        events = [
            event
            for post in posts
            for event in self._audience(post)
            if event.occurred_at <= now and (since is None or event.occurred_at > since)
        ]
        return sorted(events, key=lambda e: (e.occurred_at, e.external_id))

    def _audience(self, post: OutboxMessage) -> list[InboundEvent]:
        """Every event the audience will ever produce for a post, arrived or not."""
        cast = [p for p in personas() if self.platform in p]
        if not cast:
            return []
        asset = _asset_in(post.text)
        seed = stable_hash(post.external_id)
        events = []
        for i in range(2 + seed % 4):
            h = stable_hash(post.external_id, i)
            persona = cast[h % len(cast)]
            identity = persona[self.platform]
            kind = _pick_kind(self.platform, h >> 8)
            if kind == "dm":
                text = _DMS[(h >> 16) % len(_DMS)]
            else:
                lines = _REPLIES[persona["style"]]
                text = lines[(h >> 16) % len(lines)].format(asset=asset)
                if kind == "mention" and self.platform == "x" and settings.X_HANDLE:
                    text = f"@{settings.X_HANDLE} {text}"
            # Most people answer within the first hours, a few a day later.
            delay = 2 + int(MAX_EVENT_DELAY_MINUTES * ((h >> 24) % 1000 / 1000) ** 3)
            events.append(
                InboundEvent(
                    platform=self.platform,
                    kind=kind,
                    external_id=f"{post.external_id}:e{i + 1}",
                    author_id=identity["id"],
                    author_username=identity["username"],
                    author_display_name=persona["display_name"],
                    occurred_at=post.created_at + dt.timedelta(minutes=delay),
                    text=text,
                    in_reply_to="" if kind == "dm" else post.external_id,
                    channel=f"{DM_PREFIX}{identity['id']}" if kind == "dm" else post.channel,
                )
            )
        return events

    # --- metrics --------------------------------------------------------------------------------------------

    def fetch_metrics(self, external_ids: list[str]) -> list[PostMetrics]:
        now = timezone.now()
        rows = OutboxMessage.objects.filter(platform=self.platform, external_id__in=external_ids)
        return [self._metrics(row, now) for row in rows.order_by("pk")]

    @staticmethod
    def _read(post: OutboxMessage) -> str:
        """What people read first: the message, or an embed's description when the message is only the embed."""
        if post.text.strip() or not post.embed:
            return post.text
        return str(post.embed.get("description", ""))

    @staticmethod
    def _format(post: OutboxMessage) -> str:
        """The format a recorded message was posted in, as far as the audience can tell."""
        if post.platform == "x":
            return "x_thread" if len(post.parts) > 1 else "single_post"
        if post.platform == "telegram":
            return (
                "telegram_chart_post"
                if post.has_image
                else ("long_post" if len(post.text) > 1000 else "single_post")
            )
        return "discord_embed" if post.embed else "single_post"

    def _metrics(self, post: OutboxMessage, now: dt.datetime) -> PostMetrics:
        h = stable_hash(post.external_id, "metrics")
        age_hours = max(0.0, (now - post.created_at).total_seconds() / 3600)
        # Reach saturates over about a day, like a real feed.
        reach = (300 + h % 2700) * (1 - math.exp(-age_hours / 8))
        # The simulated audience's taste (apps.integrations.audience), spread per post: the share of the people
        # reached who engage. The replies the audience actually wrote count toward it; the rest are likes (and
        # what follows likes), so the rate the analytics agent computes follows the audience.
        rate = audience.observed_rate(
            audience.expected_rate(
                platform=self.platform,
                format=self._format(post),
                hour=post.created_at.astimezone(dt.UTC).hour,
                tone=audience.tone_of_text(self._read(post)),
            ),
            random.Random(h),  # noqa: S311 - a simulation, seeded per post
        )
        replies = sum(
            1 for e in self._audience(post) if e.kind in {"reply", "comment"} and e.occurred_at <= now
        )
        if self.platform == "x":
            likes = round(max(0.0, rate * reach - replies) / ENGAGEMENT_PER_LIKE["x"])
            metrics = {
                "impressions": round(reach),
                "likes": likes,
                "reposts": round(likes * 0.18),
                "replies": replies,
                "quotes": round(likes * 0.04),
                "bookmarks": round(likes * 0.12),
            }
        elif self.platform == "telegram":
            likes = round(rate * reach / ENGAGEMENT_PER_LIKE["telegram"])
            metrics = {
                "views": round(reach * 0.6),
                "reactions": round(likes * 0.8),
                "forwards": round(likes * 0.1),
            }
        else:
            # Discord shows no views: the server's members see a post, and its rate counts reactions and
            # replies per member active lately, so it scales with the twin's server rather than a feed's reach.
            seen = _discord_members() * (1 - math.exp(-age_hours / 8))
            metrics = {"reactions": round(max(0.0, rate * seen - replies)), "replies": replies}
        return PostMetrics(external_id=post.external_id, metrics=metrics)
