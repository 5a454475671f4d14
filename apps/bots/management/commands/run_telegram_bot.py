"""The Telegram bot process in polling mode, until SIGTERM (or Ctrl-C). The webhook is the other mode; run one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.bots.telegram import telegram_update_accept
from apps.core.heartbeats import Beat, HeartbeatThread, process_name
from apps.core.models import Heartbeat
from apps.core.resilience import PermanentError
from apps.integrations.telegram_polling import build_application, run_polling


class Command(BaseCommand):
    help = (
        "Run the Telegram bot with long polling: group messages recorded and moderated, join requests to the "
        "members' channel answered from the ledger, commands answered. Needs TELEGRAM_BOT_TOKEN. Polling "
        "replaces a webhook set with telegram_set_webhook."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError(
                "The Telegram bot needs TELEGRAM_BOT_TOKEN (see the README, 'The bots'); nothing was started."
            )
        if settings.TELEGRAM_BACKEND != "api":
            self.stderr.write(
                self.style.WARNING(
                    "TELEGRAM_BACKEND=outbox: the bot reads Telegram, and everything it would send (replies, "
                    "join-request answers, deletions, bans) is recorded in the outbox instead"
                )
            )
        application = build_application(
            token=settings.TELEGRAM_BOT_TOKEN,
            api_base_url=settings.TELEGRAM_API_BASE_URL,
            on_update=lambda data: telegram_update_accept(data=data),
        )
        heartbeat = HeartbeatThread(
            [
                Beat(
                    kind=Heartbeat.Kind.BOT,
                    name=process_name("telegram"),
                    details=lambda: {"bot": "telegram"},
                )
            ]
        )
        heartbeat.start()
        try:
            run_polling(application)
        except PermanentError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            heartbeat.stop()
        self.stdout.write("Telegram bot stopped.")
