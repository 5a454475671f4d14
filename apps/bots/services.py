"""What every bot does with what people send, whichever platform it came from: the one inbound path for
messages (an interaction for engagement, then the moderation engine and, for a removal, enforcement), the
answers to the member commands (/status, /plans, /appeal), who counts as a moderator, and applying the
entitlement ledger to someone who has just joined.

Idempotency rests on the platforms' ids: an interaction is unique per platform message, a moderation decision
and an action per platform, chat and message, so a redelivered event records and acts nothing twice. The bot's
own messages, other bots' and the operators' are never moderated, and nothing here sends a message that comes
back as an event to act on (the bots skip their own messages before anything else).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.selectors import member_access_state, subscription_get_latest, user_entitlement_keys
from apps.billing.services.access_sync import entitlements_sync_pending_for_user, platform_target
from apps.billing.services.plans import plan_list_for_sale
from apps.community.models import CommunityUser, PlatformIdentity
from apps.community.services.interactions import community_user_for_identity, interactions_ingest
from apps.core.models import Platform, format_money
from apps.core.resilience import IntegrationError, RetryPolicy
from apps.integrations.access import MemberNotFound, get_access_gateway
from apps.integrations.types import InboundEvent
from apps.moderation.engine.types import InboundMessage, Verdict
from apps.moderation.models import AppealSource
from apps.moderation.services.appeals import AppealRefused, appeal_open
from apps.moderation.services.enforcement import active_strikes, moderation_enforce
from apps.moderation.services.judging import moderation_judge

logger = logging.getLogger(__name__)

# Someone who has just joined is waiting: a couple of quick tries, no long backoff.
JOIN_POLICY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=2.0, max_rate_limit_wait=5.0)
_PLATFORM_NAMES: dict[str, str] = {
    Platform.X: "X",
    Platform.TELEGRAM: "Telegram",
    Platform.DISCORD: "Discord",
}


def site_url(name: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse(name)


# --- the inbound path ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundResult:
    interaction_new: bool
    verdict: str = ""  # "" when the message was not judged
    actions: tuple[str, ...] = ()  # what enforcement did ("delete_message", "warn", "mute", "ban")
    skipped: str = ""  # why nothing was done, if so


def inbound_message_handle(
    *,
    event: InboundEvent,
    chat_id: str,
    message_id: str,
    links: Iterable[str] = (),
    author_is_staff: bool = False,
    author_joined_at: dt.datetime | None = None,
    edited: bool = False,
) -> InboundResult:
    """A person's message in one of the community's places: recorded as their interaction (engagement reads
    those), judged by the moderation engine, and acted on when the engine says remove.

    An edit is judged afresh (a scam edited into an innocent message is the classic trick) without a decision
    row of its own, since a decision is kept once per message; a removal acts on the message once, either way.
    """
    if event.is_bot:
        return InboundResult(interaction_new=False, skipped="a bot's message")
    ingested = interactions_ingest(events=[event])
    new = ingested.interactions_new > 0
    if not event.text.strip():
        return InboundResult(interaction_new=new, skipped="no text")
    if not new and not edited and ingested.bots_ignored:
        return InboundResult(interaction_new=False, skipped="an account marked as a bot")
    message = InboundMessage(
        platform=event.platform,
        chat_id=chat_id,
        message_id=message_id,
        author_id=event.author_id,
        text=event.text,
        sent_at=event.occurred_at,
        author_username=event.author_username,
        author_display_name=event.author_display_name,
        kind="edited" if edited else ("reply" if event.kind in ("reply", "comment") else "message"),
        author_joined_at=author_joined_at,
        author_is_staff=author_is_staff,
        links=tuple(links),
    )
    judgement = moderation_judge(message=message, record=not edited)
    if judgement.verdict != Verdict.REMOVE:
        return InboundResult(interaction_new=new, verdict=judgement.verdict.value)
    actions = moderation_enforce(message=message, judgement=judgement)
    return InboundResult(
        interaction_new=new, verdict=judgement.verdict.value, actions=tuple(a.action for a in actions)
    )


def inbound_membership_record(
    *,
    platform: str,
    user_id: str,
    username: str,
    display_name: str,
    is_bot: bool,
    space: str,
    joined: bool,
    at: dt.datetime,
) -> bool:
    """Someone joined or left a server or chat: a ``join``/``leave`` interaction, once per moment."""
    event = InboundEvent(
        platform=platform,
        kind="join" if joined else "leave",
        external_id=f"{'join' if joined else 'leave'}:{space}:{user_id}:{int(at.timestamp())}",
        author_id=user_id,
        author_username=username,
        author_display_name=display_name,
        occurred_at=at,
        channel=space,
        is_bot=is_bot,
    )
    return interactions_ingest(events=[event]).interactions_new > 0


# --- people -------------------------------------------------------------------------------------------------


def linked_member(*, platform: str, external_id: str) -> User | None:
    """The portal member who has proved this platform account is theirs (merely being seen is not enough)."""
    identity = (
        PlatformIdentity.objects.filter(platform=platform, external_id=external_id, linked_at__isnull=False)
        .select_related("community_user__portal_user")
        .first()
    )
    user = identity.community_user.portal_user if identity is not None else None
    return user if user is not None and user.is_active else None


def moderator_for(*, platform: str, external_id: str) -> User | None:
    """The operator behind a platform account, when it is linked to an active staff account: only they may use
    the moderator commands, whatever rights the platform gives them."""
    user = linked_member(platform=platform, external_id=external_id)
    return user if user is not None and (user.is_staff or user.is_superuser) else None


def community_user_of(
    *, platform: str, external_id: str, username: str = "", display_name: str = ""
) -> CommunityUser | None:
    return community_user_for_identity(
        platform=platform, external_id=external_id, username=username, display_name=display_name
    )


# --- member commands ----------------------------------------------------------------------------------------


def plans_text() -> str:
    plans = plan_list_for_sale(currency=settings.BILLING_CURRENCY)
    lines = ["CoinLink membership plans:"]
    for plan in plans:
        prices = ", ".join(
            f"{format_money(price.amount_minor, price.currency)}/{price.get_interval_display().lower()}"
            for price in getattr(plan, "prices_for_sale", [])
        )
        lines.append(f"• {plan.name}" + (f": {prices}" if prices else ""))
    if len(lines) == 1:
        lines.append("No plans are on sale right now.")
    lines.append(f"Join at {site_url('portal:plans')}")
    return "\n".join(lines)


_STATES = {
    "free": "no membership",
    "trialing": "on a free trial",
    "active": "active",
    "past_due_grace": "payment due (access kept for a few days)",
    "past_due_expired": "payment overdue (access paused)",
    "canceled": "ended",
}


def status_text(*, platform: str, external_id: str) -> str:
    """/status: the member's plan, renewal or end date, and linked accounts; how to link when unlinked."""
    user = linked_member(platform=platform, external_id=external_id)
    if user is None:
        return (
            f"This {_PLATFORM_NAMES.get(platform, platform)} account is not linked to a CoinLink membership "
            f"yet. Link it at {site_url('portal:links')}"
        )
    subscription = subscription_get_latest(user=user)
    state = member_access_state(user=user)
    lines = [f"CoinLink membership: {_STATES.get(state, state)}"]
    if subscription is not None:
        lines.append(f"Plan: {subscription.plan.name}")
        if subscription.current_period_end and state in ("trialing", "active", "past_due_grace"):
            verb = "Ends" if subscription.cancel_at_period_end else "Renews"
            lines.append(f"{verb} on {subscription.current_period_end:%Y-%m-%d}")
    identities = PlatformIdentity.objects.filter(
        community_user__portal_user=user, linked_at__isnull=False
    ).order_by("platform")
    linked = ", ".join(
        f"{_PLATFORM_NAMES.get(i.platform, i.platform)}" + (f" (@{i.username})" if i.username else "")
        for i in identities
    )
    lines.append(f"Linked accounts: {linked or 'none'}")
    lines.append(f"Manage it at {site_url('portal:account')}")
    return "\n".join(lines)


def appeal_text(*, platform: str, external_id: str, username: str, display_name: str, reason: str) -> str:
    """/appeal REASON: an appeal of the person's latest moderation action, for the operators' queue."""
    if not reason.strip():
        return "Tell us why: /appeal followed by what happened, e.g. /appeal my message was a real question"
    person = community_user_of(
        platform=platform, external_id=external_id, username=username, display_name=display_name
    )
    if person is None:
        return "Bots cannot appeal."
    try:
        appeal = appeal_open(community_user=person, message=reason, source=AppealSource.BOT)
    except AppealRefused as exc:
        return str(exc)
    return (
        f"Thanks: your appeal (#{appeal.pk}) is with the moderators. You will hear back here once they "
        "have decided."
    )


def strikes_text(*, community_user: CommunityUser) -> str:
    count = active_strikes(community_user_id=community_user.pk, now=timezone.now())
    standing = community_user.get_standing_display()
    return f"{community_user.display_name}: {count} active strike{'s' if count != 1 else ''}, {standing}."


# --- joining ------------------------------------------------------------------------------------------------


def discord_member_access_apply(*, discord_user_id: str) -> list[str]:
    """Someone joined the Discord server: give them at once every role the ledger entitles their linked
    membership to, and let the syncs that were waiting for them settle. Returns the role ids given."""
    user = linked_member(platform=Platform.DISCORD, external_id=discord_user_id)
    if user is None:
        return []
    roles = sorted(
        target.resource
        for key in user_entitlement_keys(user=user)
        if (target := platform_target(key)) is not None and target.platform == Platform.DISCORD
    )
    given = []
    if roles:
        try:
            gateway = get_access_gateway("discord", policy=JOIN_POLICY)
        except ImproperlyConfigured as exc:
            logger.error("discord join of %s: cannot give roles: %s", discord_user_id, exc)
            return []
        for role in roles:
            try:
                gateway.grant_role(discord_user_id, role)
            except MemberNotFound:
                logger.info("discord user %s left again before getting role %s", discord_user_id, role)
                continue
            except IntegrationError as exc:
                # The sync the ledger enqueues below retries with backoff.
                logger.warning("discord join of %s: role %s not given yet: %s", discord_user_id, role, exc)
                continue
            given.append(role)
    entitlements_sync_pending_for_user(user=user)
    logger.info("discord user %s joined: roles %s given from the ledger", discord_user_id, given)
    return given
