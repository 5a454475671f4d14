"""The Discord bot process: a gateway connection to the creator's server until SIGTERM (or Ctrl-C)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.bots.discord import DiscordBotHandler
from apps.core.heartbeats import Beat, HeartbeatThread, process_name
from apps.core.models import Heartbeat
from apps.core.resilience import PermanentError
from apps.integrations.discord_gateway import GatewayClient, run_gateway


class Command(BaseCommand):
    help = (
        "Run the Discord bot: member joins get their roles from the entitlement ledger, messages are recorded "
        "and moderated, slash commands answered. Needs DISCORD_BOT_TOKEN and DISCORD_GUILD_ID."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sync-commands",
            action="store_true",
            help="register the slash commands on the server (DISCORD_GUILD_ID) when connecting",
        )

    def handle(self, *args: Any, sync_commands: bool, **options: Any) -> None:
        if not settings.DISCORD_BOT_TOKEN or not settings.DISCORD_GUILD_ID:
            raise CommandError(
                "The Discord bot needs DISCORD_BOT_TOKEN and DISCORD_GUILD_ID (see the README, 'The bots'); "
                "nothing was started."
            )
        if settings.DISCORD_BACKEND != "api":
            self.stderr.write(
                self.style.WARNING(
                    "DISCORD_BACKEND=outbox: the bot reads the server, and everything it would send (roles, "
                    "replies, deletions, bans) is recorded in the outbox instead"
                )
            )
        heartbeat = HeartbeatThread(
            [Beat(kind=Heartbeat.Kind.BOT, name=process_name("discord"), details=lambda: {"bot": "discord"})]
        )
        heartbeat.start()
        try:
            asyncio.run(self._run(sync_commands=sync_commands))
        except PermanentError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            heartbeat.stop()
        self.stdout.write("Discord bot stopped.")

    async def _run(self, *, sync_commands: bool) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        channels = frozenset(int(c) for c in settings.DISCORD_MODERATED_CHANNEL_IDS)
        handler = DiscordBotHandler()
        await run_gateway(
            token=settings.DISCORD_BOT_TOKEN,
            make_client=lambda: GatewayClient(
                handler=handler,
                guild_id=int(settings.DISCORD_GUILD_ID),
                channel_ids=channels,
                sync_commands=sync_commands,
            ),
            api_base_url=settings.DISCORD_API_BASE_URL,
            gateway_url=settings.DISCORD_GATEWAY_URL,
            stop=stop,
        )
