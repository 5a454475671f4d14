"""Publishing to X, Telegram and Discord. ``get_publisher(platform)`` returns the real API client when the
platform's ``*_BACKEND`` setting is ``api`` and the outbox twin (``outbox``, the default) otherwise; both
implement ``apps.integrations.types.Publisher``. Metric names per platform, shared by the real clients and the
twin: X ``impressions, likes, reposts, replies, quotes, bookmarks``; Telegram ``views, reactions, forwards``
(the Bot API reports reactions only); Discord ``reactions, replies`` (the API reports reactions only).

A direct message is a post with ``channel="dm:<the platform's user id>"``."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.integrations.types import Publisher


def _require(platform: str, names: list[str]) -> None:
    if missing := [name for name in names if not getattr(settings, name)]:
        raise ImproperlyConfigured(f"{platform.upper()}_BACKEND=api needs {', '.join(missing)}")


def get_publisher(platform: str) -> Publisher:
    backend = {
        "x": settings.X_BACKEND,
        "telegram": settings.TELEGRAM_BACKEND,
        "discord": settings.DISCORD_BACKEND,
    }.get(platform)
    if backend is None:
        raise ValueError(f"no publisher for platform {platform!r}")
    if backend == "outbox":
        from apps.integrations.publishers.outbox import OutboxPublisher

        return OutboxPublisher(platform)
    if platform == "x":
        from apps.integrations.publishers.x import XPublisher

        _require("x", settings.PUBLISHER_CREDENTIALS["x"])
        return XPublisher.from_settings()
    if platform == "telegram":
        from apps.integrations.publishers.telegram import TelegramPublisher

        _require("telegram", settings.PUBLISHER_CREDENTIALS["telegram"])
        return TelegramPublisher.from_settings()
    from apps.integrations.publishers.discord import DiscordPublisher

    if not settings.DISCORD_WEBHOOK_URL:
        _require("discord", settings.PUBLISHER_CREDENTIALS["discord"])
    return DiscordPublisher.from_settings()
