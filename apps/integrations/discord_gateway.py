"""The Discord bot's gateway connection: a discord.py ``Client`` that turns what happens in the creator's server
(``DISCORD_GUILD_ID``) into plain data and hands it to a handler (``apps.bots.discord``), which calls the domain.

Intents: guilds, members (privileged: "Server Members Intent"), guild messages, message content (privileged:
"Message Content Intent") and guild reactions. Events outside the server, in channels not listed in
``DISCORD_MODERATED_CHANNEL_IDS`` (when set), and the bot's own are dropped here. Slash commands (``/link``,
``/status``, ``/plans``, ``/appeal``, and for moderators ``/warn``, ``/mute``, ``/ban``, ``/unban``,
``/strikes``, ``/spam``) are registered on the server by ``sync_commands``; their answers are private to the
person who asked (ephemeral).

The handler is sync Django code: each event runs through ``sync_to_async`` (one at a time, in Django's thread
for sync work), with stale database connections replaced. A handler that raises is logged; the gateway goes
on. Reconnecting is discord.py's (``reconnect=True``: resume, or identify again, with exponential backoff);
``run_gateway`` adds a backoff around whole-session failures (Discord unreachable at login) and stops cleanly
when told (SIGTERM).

The domain's own calls to Discord (roles, deletions, bans, DMs) go through the other integrations
(``access``, ``moderation``, ``publishers``) with their circuit breakers and rate limiter; this client's REST
calls are the interaction answers and reading a message for ``/spam``, which discord.py rate-limits itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from asgiref.sync import sync_to_async
from discord import app_commands
from django.db import connections

from apps.core.resilience import PermanentError
from apps.integrations.publishers.discord import DEFAULT_API_BASE
from apps.integrations.types import InboundEvent

logger = logging.getLogger(__name__)

SERVICE = "discord"
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_MESSAGE_LINK = re.compile(r"/channels/(?P<guild>\d+|@me)/(?P<channel>\d+)/(?P<message>\d+)")
MEMBER_COMMANDS = ("link", "status", "plans", "appeal")
MODERATOR_COMMANDS = ("warn", "mute", "ban", "unban", "strikes", "spam")
BACKOFF_START, BACKOFF_MAX = 2.0, 300.0


@dataclass(frozen=True, slots=True)
class DiscordUserView:
    id: str
    username: str = ""
    display_name: str = ""
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class DiscordMessageView:
    guild_id: str
    channel_id: str
    message_id: str
    author: DiscordUserView
    text: str
    sent_at: dt.datetime
    edited: bool
    links: tuple[str, ...]
    author_is_staff: bool  # the server's owner, or someone with the rights to moderate it
    author_joined_at: dt.datetime | None
    event: InboundEvent


@dataclass(frozen=True, slots=True)
class DiscordMemberView:
    guild_id: str
    user: DiscordUserView
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class DiscordReactionView:
    guild_id: str
    channel_id: str
    message_id: str
    user_id: str
    emoji: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class DiscordCommandCall:
    name: str
    guild_id: str
    channel_id: str
    invoker: DiscordUserView
    options: dict[str, str] = field(default_factory=dict)
    target_user: DiscordUserView | None = None
    target_message: DiscordMessageView | None = None


class DiscordGatewayHandler(Protocol):
    def member_joined(self, member: DiscordMemberView) -> None: ...

    def member_left(self, member: DiscordMemberView) -> None: ...

    def message(self, message: DiscordMessageView) -> None: ...

    def reaction(self, reaction: DiscordReactionView) -> None: ...

    def command(self, call: DiscordCommandCall) -> str:
        """The answer to show the person who ran the command."""


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.members = True
    wanted.guild_messages = True
    wanted.message_content = True
    wanted.guild_reactions = True
    return wanted


def _user(user: discord.abc.User) -> DiscordUserView:
    return DiscordUserView(
        id=str(user.id), username=user.name, display_name=user.display_name, is_bot=user.bot
    )


def _is_staff(author: discord.abc.User, guild: discord.Guild | None) -> bool:
    if not isinstance(author, discord.Member) or guild is None:
        return False
    if guild.owner_id == author.id:
        return True
    rights = author.guild_permissions
    return bool(rights.administrator or rights.manage_messages or rights.moderate_members)


def message_view(message: discord.Message, *, edited: bool = False) -> DiscordMessageView:
    """A message as the domain sees it; its event's ``external_id`` is the message id, as the publisher's
    history reads have it, so both paths record a message once."""
    guild = message.guild
    author = message.author
    reference = message.reference
    in_reply_to = str(reference.message_id) if reference is not None and reference.message_id else ""
    me = message._state.user
    if in_reply_to:
        kind = "reply"
    elif me is not None and any(user.id == me.id for user in message.mentions):
        kind = "mention"
    else:
        kind = "message"
    sent_at = (message.edited_at or message.created_at) if edited else message.created_at
    links = tuple(dict.fromkeys(_URL.findall(message.content or "")))
    event = InboundEvent(
        platform="discord",
        kind=kind,
        external_id=str(message.id),
        author_id=str(author.id),
        author_username=author.name,
        author_display_name=author.display_name,
        occurred_at=sent_at,
        text=message.content or "",
        in_reply_to=in_reply_to,
        channel=str(message.channel.id),
        is_bot=author.bot,
    )
    return DiscordMessageView(
        guild_id=str(guild.id) if guild is not None else "",
        channel_id=str(message.channel.id),
        message_id=str(message.id),
        author=_user(author),
        text=message.content or "",
        sent_at=sent_at,
        edited=edited,
        links=links,
        author_is_staff=_is_staff(author, guild),
        author_joined_at=author.joined_at if isinstance(author, discord.Member) else None,
        event=event,
    )


def _call_fresh(fn: Callable[..., Any], *args: Any) -> Any:
    # A long-running process: a connection the database dropped since the last event is replaced.
    _refresh_connections()
    try:
        return fn(*args)
    finally:
        _refresh_connections()


def _refresh_connections() -> None:
    # Django's close_old_connections, except inside a transaction (a test's), where a connection is never
    # obsolete.
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


class GatewayClient(discord.Client):
    def __init__(
        self,
        *,
        handler: DiscordGatewayHandler,
        guild_id: int,
        channel_ids: frozenset[int] = frozenset(),
        sync_commands: bool = False,
    ) -> None:
        super().__init__(intents=intents(), chunk_guilds_at_startup=False)
        self.handler = handler
        self.guild_id = guild_id
        self.channel_ids = channel_ids
        self.sync_commands = sync_commands
        self.tree = app_commands.CommandTree(self)
        self.guild = discord.Object(id=guild_id)
        _register_commands(self)
        self.events_handled = 0

    async def setup_hook(self) -> None:
        if self.sync_commands:
            synced = await self.tree.sync(guild=self.guild)
            logger.info("discord: %s slash commands registered on server %s", len(synced), self.guild_id)

    async def run_handler(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            result = await sync_to_async(_call_fresh)(fn, *args)
        except Exception:
            logger.exception("discord: handling %s failed", getattr(fn, "__name__", fn))
            return None
        self.events_handled += 1
        return result

    def _ours(self, guild_id: int | None, channel_id: int | None = None) -> bool:
        if guild_id != self.guild_id:
            return False
        return not (self.channel_ids and channel_id is not None and channel_id not in self.channel_ids)

    # --- gateway events -------------------------------------------------------------------------------------

    async def on_ready(self) -> None:
        logger.info("discord: connected as %s", self.user)

    async def on_member_join(self, member: discord.Member) -> None:
        if self._ours(member.guild.id):
            view = DiscordMemberView(
                str(member.guild.id), _user(member), member.joined_at or discord.utils.utcnow()
            )
            await self.run_handler(self.handler.member_joined, view)

    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        if self._ours(payload.guild_id):
            view = DiscordMemberView(str(payload.guild_id), _user(payload.user), discord.utils.utcnow())
            await self.run_handler(self.handler.member_left, view)

    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or not self._ours(message.guild.id, message.channel.id):
            return
        if self.user is not None and message.author.id == self.user.id:
            return  # our own: never recorded, never moderated
        await self.run_handler(self.handler.message, message_view(message))

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        if not self._ours(payload.guild_id, payload.channel_id) or "content" not in payload.data:
            return
        message = payload.message
        if self.user is not None and message.author.id == self.user.id:
            return
        before = payload.cached_message
        if before is not None and before.content == message.content:
            return  # an embed unfurled, a pin: the words did not change
        await self.run_handler(self.handler.message, message_view(message, edited=True))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if not self._ours(payload.guild_id, payload.channel_id):
            return
        if self.user is not None and payload.user_id == self.user.id:
            return
        view = DiscordReactionView(
            guild_id=str(payload.guild_id),
            channel_id=str(payload.channel_id),
            message_id=str(payload.message_id),
            user_id=str(payload.user_id),
            emoji=str(payload.emoji),
            at=discord.utils.utcnow(),
        )
        await self.run_handler(self.handler.reaction, view)

    # --- slash commands -------------------------------------------------------------------------------------

    async def answer(
        self,
        interaction: discord.Interaction,
        name: str,
        *,
        options: dict[str, str] | None = None,
        target_user: discord.abc.User | None = None,
        target_message: str = "",
    ) -> None:
        # Discord waits 3 seconds for the first answer: say "thinking" now, send the answer when it is ready.
        await interaction.response.defer(ephemeral=True, thinking=True)
        call = DiscordCommandCall(
            name=name,
            guild_id=str(interaction.guild_id or ""),
            channel_id=str(interaction.channel_id or ""),
            invoker=_user(interaction.user),
            options=options or {},
            target_user=_user(target_user) if target_user is not None else None,
        )
        if target_message:
            found = await self._fetch_message(interaction, target_message)
            if found is None:
                await interaction.followup.send("I cannot find that message in this channel.", ephemeral=True)
                return
            call = replace(call, target_message=message_view(found))
        text = await self.run_handler(self.handler.command, call)
        await interaction.followup.send(text or "Something went wrong; please try again.", ephemeral=True)

    async def _fetch_message(
        self, interaction: discord.Interaction, reference: str
    ) -> discord.Message | None:
        match = _MESSAGE_LINK.search(reference)
        channel_id = int(match["channel"]) if match else interaction.channel_id
        message_id = match["message"] if match else reference.strip()
        if channel_id is None or not message_id.isdigit():
            return None
        channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return None
        try:
            return await channel.fetch_message(int(message_id))
        except (discord.NotFound, discord.Forbidden):
            return None


def _register_commands(client: GatewayClient) -> None:
    tree, guild = client.tree, client.guild

    @app_commands.command(name="link", description="Link this Discord account to your CoinLink membership")
    async def link(interaction: discord.Interaction) -> None:
        await client.answer(interaction, "link")

    @app_commands.command(name="status", description="Your CoinLink plan, renewal date and linked accounts")
    async def status(interaction: discord.Interaction) -> None:
        await client.answer(interaction, "status")

    @app_commands.command(name="plans", description="CoinLink membership plans and prices")
    async def plans(interaction: discord.Interaction) -> None:
        await client.answer(interaction, "plans")

    @app_commands.command(name="appeal", description="Ask the moderators to look again at an action on you")
    @app_commands.describe(reason="Why the action was a mistake")
    async def appeal(interaction: discord.Interaction, reason: str) -> None:
        await client.answer(interaction, "appeal", options={"reason": reason})

    moderators = app_commands.default_permissions(moderate_members=True)

    @app_commands.command(name="warn", description="Warn a member (adds strikes)")
    @moderators
    async def warn(interaction: discord.Interaction, member: discord.Member, reason: str = "") -> None:
        await client.answer(interaction, "warn", options={"reason": reason}, target_user=member)

    @app_commands.command(name="mute", description="Mute a member everywhere they are linked")
    @app_commands.describe(minutes="How long (the policy's length when left out)")
    @moderators
    async def mute(
        interaction: discord.Interaction, member: discord.Member, minutes: int = 0, reason: str = ""
    ) -> None:
        options = {"reason": reason, "minutes": str(minutes)}
        await client.answer(interaction, "mute", options=options, target_user=member)

    @app_commands.command(name="ban", description="Ban someone everywhere they are linked")
    @moderators
    async def ban(interaction: discord.Interaction, user: discord.User, reason: str = "") -> None:
        await client.answer(interaction, "ban", options={"reason": reason}, target_user=user)

    @app_commands.command(name="unban", description="Lift a ban everywhere")
    @moderators
    async def unban(interaction: discord.Interaction, user: discord.User, reason: str = "") -> None:
        await client.answer(interaction, "unban", options={"reason": reason}, target_user=user)

    @app_commands.command(name="strikes", description="A member's active strikes and standing")
    @moderators
    async def strikes(interaction: discord.Interaction, user: discord.User) -> None:
        await client.answer(interaction, "strikes", target_user=user)

    @app_commands.command(name="spam", description="Mark a message as spam: delete it, act, teach the filter")
    @app_commands.describe(message="The message's link or id (in this channel)")
    @moderators
    async def spam(interaction: discord.Interaction, message: str) -> None:
        await client.answer(interaction, "spam", target_message=message)

    commands: list[app_commands.Command[Any, Any, None]] = [
        link,
        status,
        plans,
        appeal,
        warn,
        mute,
        ban,
        unban,
        strikes,
        spam,
    ]
    for command in commands:
        if command.name in MODERATOR_COMMANDS:
            command.guild_only = True
        tree.add_command(command, guild=guild)


# --- running --------------------------------------------------------------------------------------------------


class GatewayStopped(Exception):
    pass


async def run_gateway(
    *,
    token: str,
    make_client: Callable[[], GatewayClient],
    api_base_url: str = "",
    gateway_url: str = "",
    stop: asyncio.Event,
) -> None:
    """Keep a gateway session up until ``stop`` is set: discord.py resumes dropped connections itself; a
    session that fails as a whole (Discord unreachable, an outage) is started again after a growing wait.
    A refused token or a privileged intent not enabled in the developer portal is a ``PermanentError``."""
    discord.http.Route.BASE = (api_base_url or DEFAULT_API_BASE).rstrip("/")
    if gateway_url:
        # A compatible gateway (or a fake in tests) instead of wss://gateway.discord.gg/.
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    delay = BACKOFF_START
    while not stop.is_set():
        client = make_client()
        runner = asyncio.create_task(_session(client, token))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            await client.close()
            await asyncio.gather(runner, return_exceptions=True)
            return
        stopper.cancel()
        error = runner.exception()
        if isinstance(error, discord.LoginFailure):
            raise PermanentError(f"Discord refused the bot token: {error}", service=SERVICE) from error
        if isinstance(error, discord.PrivilegedIntentsRequired):
            raise PermanentError(
                "enable the Server Members and Message Content intents for the bot in Discord's developer "
                "portal",
                service=SERVICE,
            ) from error
        if client.events_handled:
            delay = BACKOFF_START  # the session worked for a while: this is a new outage
        logger.warning("discord: session ended (%r); starting again in %.0f s", error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(BACKOFF_MAX, delay * 2)


async def _session(client: GatewayClient, token: str) -> None:
    try:
        async with client:
            await client.start(token, reconnect=True)
    except (aiohttp.ClientError, OSError, discord.GatewayNotFound, discord.HTTPException) as exc:
        raise ConnectionError(f"Discord: {exc}") from exc
