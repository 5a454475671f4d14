"""Point Telegram at the bot's webhook: ``setWebhook`` with ``TELEGRAM_WEBHOOK_SECRET`` as the secret token."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from apps.core.resilience import IntegrationError
from apps.integrations.access.telegram import telegram_webhook_set
from apps.integrations.telegram_polling import ALLOWED_UPDATES


class Command(BaseCommand):
    help = "Tell Telegram to deliver the bot's updates to /bots/telegram/webhook/<secret>/ on SITE_URL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            default="",
            help="public https origin the webhook is reached at (default: SITE_URL)",
        )

    def handle(self, *args: Any, base_url: str, **options: Any) -> None:
        secret = settings.TELEGRAM_WEBHOOK_SECRET
        if settings.TELEGRAM_BACKEND != "api":
            raise CommandError(
                "TELEGRAM_BACKEND=api is needed: with the outbox the bot's replies never reach Telegram"
            )
        if not settings.TELEGRAM_BOT_TOKEN or not secret:
            raise CommandError("set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET first")
        path = reverse("bots:telegram_webhook", kwargs={"secret": secret})
        url = (base_url or settings.SITE_URL).rstrip("/") + path
        if not url.startswith("https://"):
            self.stderr.write(self.style.WARNING("Telegram delivers webhooks to https URLs only"))
        try:
            telegram_webhook_set(url=url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        except IntegrationError as exc:
            raise CommandError(f"Telegram refused the webhook: {exc}") from exc
        shown = url.replace(secret, "<TELEGRAM_WEBHOOK_SECRET>")
        self.stdout.write(self.style.SUCCESS(f"Telegram delivers the bot's updates to {shown}"))
