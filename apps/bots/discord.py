"""The Discord bot's handler: what the gateway client (``apps.integrations.discord_gateway``) reports, turned
into domain calls.

- A member joins: a ``join`` interaction, and every role the entitlement ledger gives their linked membership,
  at once (``apps.bots.services.discord_member_access_apply``).
- A member leaves: a ``leave`` interaction (their roles went with them; the ledger is unchanged).
- A message in the server's channels: the one inbound path (interaction, moderation, enforcement); edits are
  judged again. Staff (the owner and whoever may moderate the server, or a linked staff account) are never
  moderated.
- A reaction: a ``reaction`` interaction, once per person, message and emoji.
- Slash commands: ``/link``, ``/status``, ``/plans``, ``/appeal`` for everyone; ``/warn``, ``/mute``, ``/ban``,
  ``/unban``, ``/strikes``, ``/spam`` for moderators, who must have linked their Discord account to a staff
  account (the server's permissions hide the commands from others; this check decides).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apps.bots import services
from apps.community.services.interactions import interactions_ingest
from apps.core.models import Platform
from apps.integrations.discord_gateway import (
    DiscordCommandCall,
    DiscordMemberView,
    DiscordMessageView,
    DiscordReactionView,
)
from apps.integrations.types import InboundEvent
from apps.moderation.engine.types import InboundMessage
from apps.moderation.models import ActionKind
from apps.moderation.services.enforcement import ModerationRefused, moderation_act, moderation_mark_spam

logger = logging.getLogger(__name__)

NOT_A_MODERATOR = "Only CoinLink moderators can do that: link your Discord account to your staff account on the portal first."


class DiscordBotHandler:
    """``apps.integrations.discord_gateway.DiscordGatewayHandler`` for CoinLink."""

    def member_joined(self, member: DiscordMemberView) -> None:
        self._membership(member, joined=True)
        if not member.user.is_bot:
            services.discord_member_access_apply(discord_user_id=member.user.id)

    def member_left(self, member: DiscordMemberView) -> None:
        self._membership(member, joined=False)

    @staticmethod
    def _membership(member: DiscordMemberView, *, joined: bool) -> None:
        services.inbound_membership_record(
            platform=Platform.DISCORD,
            user_id=member.user.id,
            username=member.user.username,
            display_name=member.user.display_name,
            is_bot=member.user.is_bot,
            space=member.guild_id,
            joined=joined,
            at=member.at,
        )

    def message(self, message: DiscordMessageView) -> None:
        result = services.inbound_message_handle(
            event=message.event,
            chat_id=message.channel_id,
            message_id=message.message_id,
            links=message.links,
            author_is_staff=message.author_is_staff,
            author_joined_at=message.author_joined_at,
            edited=message.edited,
        )
        logger.info(
            "discord message %s: %s %s",
            message.message_id,
            result.verdict or result.skipped or "recorded",
            ",".join(result.actions),
        )

    def reaction(self, reaction: DiscordReactionView) -> None:
        interactions_ingest(
            events=[
                InboundEvent(
                    platform=Platform.DISCORD,
                    kind="reaction",
                    external_id=f"{reaction.message_id}:reaction:{reaction.user_id}:{reaction.emoji}"[:100],
                    author_id=reaction.user_id,
                    occurred_at=reaction.at,
                    text=reaction.emoji,
                    in_reply_to=reaction.message_id,
                    channel=reaction.channel_id,
                )
            ]
        )

    def command(self, call: DiscordCommandCall) -> str:
        handler = _COMMANDS.get(call.name)
        if handler is None:
            return "I don't know that command."
        if call.name in _MODERATOR_ONLY:
            moderator = services.moderator_for(platform=Platform.DISCORD, external_id=call.invoker.id)
            if moderator is None:
                return NOT_A_MODERATOR
        return handler(call)


def _link(call: DiscordCommandCall) -> str:
    return (
        "Connect this Discord account on your CoinLink account page (it asks Discord to confirm it is yours): "
        f"{services.site_url('portal:links')}"
    )


def _status(call: DiscordCommandCall) -> str:
    return services.status_text(platform=Platform.DISCORD, external_id=call.invoker.id)


def _plans(call: DiscordCommandCall) -> str:
    return services.plans_text()


def _appeal(call: DiscordCommandCall) -> str:
    return services.appeal_text(
        platform=Platform.DISCORD,
        external_id=call.invoker.id,
        username=call.invoker.username,
        display_name=call.invoker.display_name,
        reason=call.options.get("reason", ""),
    )


def _act(action: str) -> Callable[[DiscordCommandCall], str]:
    def run(call: DiscordCommandCall) -> str:
        target = call.target_user
        moderator = services.moderator_for(platform=Platform.DISCORD, external_id=call.invoker.id)
        if target is None or moderator is None:
            return "Name the member."
        if target.is_bot:
            return "Bots are not moderated."
        person = services.community_user_of(
            platform=Platform.DISCORD,
            external_id=target.id,
            username=target.username,
            display_name=target.display_name,
        )
        if person is None:
            return "Bots are not moderated."
        minutes = int(call.options.get("minutes") or 0)
        try:
            row = moderation_act(
                community_user=person,
                action=action,
                actor=moderator,
                reason=call.options.get("reason", ""),
                duration=dt.timedelta(minutes=minutes) if action == ActionKind.MUTE and minutes else None,
            )
        except (ModerationRefused, ValueError) as exc:
            return f"Not done: {exc}"
        return f"{row.get_action_display()}: {person.display_name} ({row.strikes_after} active strikes)."

    return run


def _strikes(call: DiscordCommandCall) -> str:
    target = call.target_user
    if target is None:
        return "Name the member."
    person = services.community_user_of(
        platform=Platform.DISCORD,
        external_id=target.id,
        username=target.username,
        display_name=target.display_name,
    )
    return services.strikes_text(community_user=person) if person is not None else "Bots have no strikes."


def _spam(call: DiscordCommandCall) -> str:
    target = call.target_message
    moderator = services.moderator_for(platform=Platform.DISCORD, external_id=call.invoker.id)
    if target is None or moderator is None:
        return "Name the message."
    if target.author.is_bot:
        return "Bots are not moderated."
    message = InboundMessage(
        platform=Platform.DISCORD,
        chat_id=target.channel_id,
        message_id=target.message_id,
        author_id=target.author.id,
        text=target.text,
        sent_at=target.sent_at,
        author_username=target.author.username,
        author_display_name=target.author.display_name,
        author_is_staff=target.author_is_staff,
        links=target.links,
    )
    try:
        actions = moderation_mark_spam(message=message, actor=moderator)
    except ModerationRefused as exc:
        return f"Not done: {exc}"
    done = ", ".join(a.get_action_display().lower() for a in actions)
    return f"Marked as spam ({done}); the filter has learned from it."


_COMMANDS: dict[str, Callable[[DiscordCommandCall], str]] = {
    "link": _link,
    "status": _status,
    "plans": _plans,
    "appeal": _appeal,
    "warn": _act(ActionKind.WARN),
    "mute": _act(ActionKind.MUTE),
    "ban": _act(ActionKind.BAN),
    "unban": _act(ActionKind.UNBAN),
    "strikes": _strikes,
    "spam": _spam,
}
_MODERATOR_ONLY = frozenset({"warn", "mute", "ban", "unban", "strikes", "spam"})
