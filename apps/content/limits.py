"""What a post must respect on each platform, in one place: a dataclass per platform with its limits, and
``fits`` / ``problems`` that hold a draft to them exactly as it will be sent. The publishers check the same
limits again before sending (an oversized post is a wasted call, and on Discord an invalid request counts
towards a ban); the content agents check them first so that no such draft is ever approved.

``text`` is always the message content as it goes out: the whole post, or a thread's parts joined by
``THREAD_SEPARATOR``, or nothing for a Discord embed (whose text is the embed's description).

The posting policy that is not the platform's own rule but ours lives here too: how many posts a platform gets
per UTC day (``CONTENT_DAILY_CAPS``) and the quiet hours nothing goes out in (``CONTENT_QUIET_HOURS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.content.models import ContentFormat
from apps.core.models import Platform
from apps.integrations.llm import split_thread, text_length

# Formats that go out with a chart card; a Telegram chart post's text is the photo's caption.
IMAGE_FORMATS = frozenset({ContentFormat.TELEGRAM_CHART_POST, ContentFormat.DISCORD_EMBED})


@dataclass(frozen=True)
class XLimits:
    # Weighted characters (``text_length``: a URL is 23, most emoji and CJK 2), per post of a thread.
    text: int = 280
    # X sets no hard limit on a thread; past a handful of posts nobody reads on.
    thread_parts: int = 25


@dataclass(frozen=True)
class TelegramLimits:
    text: int = 4096
    caption: int = 1024


@dataclass(frozen=True)
class DiscordLimits:
    content: int = 2000
    embeds: int = 10
    embeds_total: int = 6000
    embed_title: int = 256
    embed_description: int = 4096
    embed_footer: int = 2048
    embed_author: int = 256
    embed_fields: int = 25
    embed_field_name: int = 256
    embed_field_value: int = 1024


X = XLimits()
TELEGRAM = TelegramLimits()
DISCORD = DiscordLimits()


def embed_length(embed: Mapping[str, Any]) -> int:
    """The characters Discord counts against the total shared by a message's embeds."""
    total = len(str(embed.get("title", ""))) + len(str(embed.get("description", "")))
    total += len(str((embed.get("footer") or {}).get("text", "")))
    total += len(str((embed.get("author") or {}).get("name", "")))
    total += sum(len(str(f.get("name", ""))) + len(str(f.get("value", ""))) for f in embed.get("fields", []))
    return total


def text_budget(platform: str, format: str, *, has_image: bool = False) -> int:
    """The most text one post (one part, for a thread) may hold on the platform, counted as it counts."""
    if platform == Platform.X:
        return X.text
    if platform == Platform.TELEGRAM:
        return TELEGRAM.caption if has_image else TELEGRAM.text
    if platform == Platform.DISCORD:
        if format == ContentFormat.DISCORD_EMBED:
            return DISCORD.embed_description
        return DISCORD.content
    raise ValueError(f"unknown platform {platform!r}")


def problems(
    platform: str,
    format: str,
    text: str,
    *,
    embed: Mapping[str, Any] | None = None,
    has_image: bool = False,
) -> list[str]:
    """Every way the post breaks its platform's limits; empty when it fits."""
    found: list[str] = []
    if platform == Platform.X:
        parts = split_thread(text) if format == ContentFormat.X_THREAD else [text]
        if not any(p.strip() for p in parts):
            found.append("the post is empty")
        if len(parts) > X.thread_parts:
            found.append(f"{len(parts)} posts in the thread; at most {X.thread_parts}")
        for index, part in enumerate(parts, start=1):
            if (length := text_length(part, platform)) > X.text:
                where = f"post {index} of the thread" if format == ContentFormat.X_THREAD else "the post"
                found.append(f"{where} is {length} weighted characters; X allows {X.text}")
        if embed:
            found.append("X posts carry no embed")
    elif platform == Platform.TELEGRAM:
        limit = TELEGRAM.caption if has_image else TELEGRAM.text
        what = "caption" if has_image else "message"
        if not text.strip():
            found.append("the post is empty")
        if len(text) > limit:
            found.append(f"the {what} is {len(text)} characters; Telegram allows {limit}")
        if has_image and "\n\n" in text.strip():
            # The publisher sends only the first paragraph as the caption and the rest as a second message.
            found.append("a caption must be one paragraph")
        if embed:
            found.append("Telegram posts carry no embed")
    elif platform == Platform.DISCORD:
        if len(text) > DISCORD.content:
            found.append(f"the content is {len(text)} characters; Discord allows {DISCORD.content}")
        embeds = [embed] if embed else []
        if not text.strip() and not embeds:
            found.append("the post is empty")
        if format == ContentFormat.DISCORD_EMBED and not embeds:
            found.append("a Discord embed post needs its embed")
        for item in embeds:
            found += _embed_problems(item)
        if len(embeds) > DISCORD.embeds:
            found.append(f"{len(embeds)} embeds; Discord allows {DISCORD.embeds}")
        if (total := sum(embed_length(e) for e in embeds)) > DISCORD.embeds_total:
            found.append(f"the embeds hold {total} characters; Discord allows {DISCORD.embeds_total}")
    else:
        found.append(f"unknown platform {platform!r}")
    return found


def _embed_problems(embed: Mapping[str, Any]) -> list[str]:
    found = []
    for name, limit in (
        ("title", DISCORD.embed_title),
        ("description", DISCORD.embed_description),
    ):
        if len(str(embed.get(name, ""))) > limit:
            found.append(f"the embed {name} is over Discord's {limit} characters")
    if len(str((embed.get("footer") or {}).get("text", ""))) > DISCORD.embed_footer:
        found.append(f"the embed footer is over Discord's {DISCORD.embed_footer} characters")
    if len(str((embed.get("author") or {}).get("name", ""))) > DISCORD.embed_author:
        found.append(f"the embed author is over Discord's {DISCORD.embed_author} characters")
    fields = embed.get("fields", [])
    if len(fields) > DISCORD.embed_fields:
        found.append(f"{len(fields)} embed fields; Discord allows {DISCORD.embed_fields}")
    for field in fields:
        if len(str(field.get("name", ""))) > DISCORD.embed_field_name:
            found.append(f"an embed field name is over Discord's {DISCORD.embed_field_name} characters")
        if len(str(field.get("value", ""))) > DISCORD.embed_field_value:
            found.append(f"an embed field value is over Discord's {DISCORD.embed_field_value} characters")
    return found


def fits(
    platform: str,
    format: str,
    text: str,
    embed: Mapping[str, Any] | None = None,
    has_image: bool = False,
) -> bool:
    return not problems(platform, format, text, embed=embed, has_image=has_image)


# --- our own posting policy ---------------------------------------------------------------------------------


def daily_caps(override: Mapping[str, int] | None = None) -> dict[str, int]:
    """Posts per platform and UTC day: ``CONTENT_DAILY_CAPS`` with an agent's parameter on top. A platform
    with no cap at all gets none."""
    return {**settings.CONTENT_DAILY_CAPS, **(override or {})}


def parse_quiet_hours(spec: str) -> frozenset[int]:
    """UTC hours from ``"0-6"`` (midnight up to 6:00), ``"22-6"`` (wrapping) or ``"0-6,13-14"``; ``""`` or
    ``"none"`` for none. Raises ValueError on anything else."""
    hours: set[int] = set()
    if spec.strip().lower() in {"", "none"}:
        return frozenset()
    for item in spec.split(","):
        start_text, dash, end_text = item.strip().partition("-")
        if not dash or not start_text.isdigit() or not end_text.isdigit():
            raise ValueError(f"quiet hours look like 0-6 or 22-6, not {item.strip()!r}")
        start, end = int(start_text), int(end_text)
        if not (0 <= start <= 23 and 0 <= end <= 24):
            raise ValueError(f"quiet hours run from 0 to 24, not {item.strip()!r}")
        # An end before the start wraps past midnight; an end equal to the start is an empty range.
        length = end - start if end >= start else end + 24 - start
        hours.update((start + offset) % 24 for offset in range(length))
    return frozenset(hours)


def quiet_hours(override: str = "") -> frozenset[int]:
    """The quiet hours in force: an agent's parameter when it sets one, else ``CONTENT_QUIET_HOURS``."""
    return parse_quiet_hours(override if override else settings.CONTENT_QUIET_HOURS)
