"""Acting on judgements: one strike ledger per person across platforms, the community's ladder, and the platform
calls that carry each action out.

- ``moderation_enforce`` takes the engine's REMOVE verdict on a message: the message is deleted, its strikes go
  on the ledger of the person behind it (the linked ``community.CommunityUser``, whichever platform they wrote
  on), and the active strikes decide the step of the ``ModerationPolicy`` ladder: delete → warn → timed mute →
  ban. A mute or ban reaches every platform where the person has an account (Telegram: each chat in
  ``MODERATION_TELEGRAM_CHATS`` and the chat the message was in; Discord: the server), and the member is told
  by direct message what happened and how to appeal. A REVIEW verdict waits for an operator; nothing happens.
- ``moderation_act`` is the operators' /warn, /mute, /ban, /unmute and /unban; ``moderation_mark_spam`` their
  /spam (delete, act along the ladder, and teach the classifier).
- Every platform call is a ``PlatformOperation`` row, carried out by the ``moderation.execute_operation`` task
  (enqueued once the transaction commits) with retries and backoff; a call the platform refuses, or that runs
  out of retries, ends ``failed`` with its error, and the action shows it.

Nobody acts on staff (operators, moderators) or on bots, our own included, and no action starts another: the
platform calls only talk to the platforms, and one platform message is acted on once (a redelivered update or a
/spam after the engine finds the action already taken).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, QuerySet, Sum
from django.utils import timezone

from apps.accounts.models import User
from apps.community.models import CommunityUser, ModerationStanding, PlatformIdentity
from apps.community.services.interactions import community_user_for_identity
from apps.core import metrics
from apps.core.models import Platform
from apps.core.resilience import PermanentError, TransientError
from apps.integrations.moderation import MAX_MUTE, NotInCommunity, get_moderation_client
from apps.moderation.engine.types import InboundMessage, Judgement, Verdict
from apps.moderation.models import (
    ActionKind,
    ActionStatus,
    Actor,
    ModerationAction,
    ModerationDecision,
    ModerationPolicy,
    OperationKind,
    OperationStatus,
    PlatformOperation,
    Strike,
)

logger = logging.getLogger(__name__)

# The platforms CoinLink can moderate (X has no moderation calls here: its replies are judged and recorded only).
MODERATED_PLATFORMS = (Platform.DISCORD, Platform.TELEGRAM)
SANCTIONS = (ActionKind.MUTE, ActionKind.BAN)
OPERATOR_ACTIONS = (ActionKind.WARN, ActionKind.MUTE, ActionKind.BAN, ActionKind.UNMUTE, ActionKind.UNBAN)
# The actions a judgement or an operator takes against someone (the others lift those).
APPEALABLE_KINDS = (ActionKind.DELETE_MESSAGE, ActionKind.WARN, ActionKind.MUTE, ActionKind.BAN)
NO_TELEGRAM_CHAT = "no Telegram chat to act in: set MODERATION_TELEGRAM_CHATS"
OPERATOR_SPAM_CHECK = "operator_spam"
_LIFTS = {ActionKind.MUTE: ActionKind.UNMUTE, ActionKind.BAN: ActionKind.UNBAN}
_LIFT_OPERATION = {OperationKind.MUTE: OperationKind.UNMUTE, OperationKind.BAN: OperationKind.UNBAN}


class ModerationRefused(ValueError):
    """The action may not be taken: staff and bots are never moderated."""


# --- the policy ----------------------------------------------------------------------------------------------


def _action_create(**fields: Any) -> ModerationAction:
    """Every audit row of an action goes through here, so ``/metrics`` counts what was committed."""
    row = ModerationAction.objects.create(**fields)
    transaction.on_commit(lambda: metrics.moderation_decision(platform=row.platform, action=row.action))
    return row


def moderation_policy_get() -> ModerationPolicy:
    """The community's ladder: the one row, created with the defaults on first read (as row 1, so two first
    reads at once make one row)."""
    policy = ModerationPolicy.objects.order_by("pk").first()
    if policy is None:
        policy, _ = ModerationPolicy.objects.get_or_create(pk=1)
    return policy


def ladder_step(policy: ModerationPolicy, strikes: int) -> str:
    """The step a removed message reaches with ``strikes`` active on the person's ledger."""
    if strikes >= policy.ban_at:
        return ActionKind.BAN
    if strikes >= policy.mute_at:
        return ActionKind.MUTE
    if strikes >= policy.warn_at:
        return ActionKind.WARN
    return ActionKind.DELETE_MESSAGE


# --- the ledger ----------------------------------------------------------------------------------------------


def active_strikes(*, community_user_id: int, now: dt.datetime) -> int:
    """The weight of the strikes that still count: not voided by an appeal, not expired."""
    total = Strike.objects.filter(
        community_user_id=community_user_id, voided_at__isnull=True, expires_at__gt=now
    ).aggregate(total=Sum("weight"))["total"]
    return int(total or 0)


def _sanctions_in_force(community_user_id: int, now: dt.datetime) -> QuerySet[ModerationAction]:
    """Mutes still running and bans, neither reversed nor lifted."""
    return ModerationAction.objects.filter(
        Q(action=ActionKind.BAN) | Q(action=ActionKind.MUTE, expires_at__gt=now),
        community_user_id=community_user_id,
        reverted_at__isnull=True,
        ended_at__isnull=True,
    )


def community_user_standing_refresh(*, community_user_id: int, now: dt.datetime | None = None) -> str:
    """Set the person's standing from the ledger: banned, muted (until when), warned (strikes that still
    count) or in good standing."""
    now = now or timezone.now()
    sanctions = _sanctions_in_force(community_user_id, now)
    muted_until = sanctions.filter(action=ActionKind.MUTE).aggregate(until=Max("expires_at"))["until"]
    if sanctions.filter(action=ActionKind.BAN).exists():
        standing = ModerationStanding.BANNED
    elif muted_until is not None:
        standing = ModerationStanding.MUTED
    elif active_strikes(community_user_id=community_user_id, now=now):
        standing = ModerationStanding.WARNED
    else:
        standing = ModerationStanding.GOOD
    CommunityUser.objects.filter(pk=community_user_id).update(
        standing=standing, muted_until=muted_until, updated_at=now
    )
    return standing


def is_never_moderated(community_user: CommunityUser) -> bool:
    """Operators and moderators (staff in the portal) are never moderated."""
    user = community_user.portal_user
    return bool(user is not None and (user.is_staff or user.is_superuser))


# --- where an action reaches ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    platform: str
    space: str  # a Telegram chat, the Discord server
    user_external_id: str


def _telegram_chats(origin: InboundMessage | None) -> list[str]:
    chats = list(settings.MODERATION_TELEGRAM_CHATS)
    # A group's or channel's id is negative (or an @username); a positive one is a private chat with the bot.
    if origin is not None and origin.platform == Platform.TELEGRAM and origin.chat_id.startswith(("-", "@")):
        chats.append(origin.chat_id)
    return list(dict.fromkeys(chats))


def _identities(community_user: CommunityUser, platforms: Iterable[str] | None) -> list[PlatformIdentity]:
    wanted = [p for p in MODERATED_PLATFORMS if platforms is None or p in set(platforms)]
    return list(
        PlatformIdentity.objects.filter(
            community_user=community_user, platform__in=wanted, is_bot=False
        ).order_by("platform", "pk")
    )


def reach(
    community_user: CommunityUser,
    *,
    origin: InboundMessage | None = None,
    platforms: Iterable[str] | None = None,
) -> list[Target]:
    """Every place a mute or ban of the person lands: each of their accounts on Discord (the server) and
    Telegram (each community chat). A Telegram account with no chat to act in gets a target with no space,
    which becomes a failed operation saying so."""
    targets = []
    for identity in _identities(community_user, platforms):
        if identity.platform == Platform.DISCORD:
            spaces = [settings.DISCORD_GUILD_ID]
        else:
            spaces = _telegram_chats(origin) or [""]
        targets += [Target(identity.platform, space, identity.external_id) for space in spaces]
    return targets


def _sanction_operations(
    action: ModerationAction, kind: str, targets: Sequence[Target], *, until: dt.datetime | None
) -> list[PlatformOperation]:
    operations = []
    for target in targets:
        operation = PlatformOperation(
            action=action,
            platform=target.platform,
            operation=kind,
            space=target.space,
            user_external_id=target.user_external_id,
            until=until if kind == OperationKind.MUTE else None,
        )
        if target.platform == Platform.TELEGRAM and not target.space:
            operation.status, operation.error = OperationStatus.FAILED, NO_TELEGRAM_CHAT
        operations.append(operation)
    return operations


# --- telling the member --------------------------------------------------------------------------------------


def appeal_hint() -> str:
    account = settings.SITE_URL.rstrip("/") + "/account/"
    return (
        "If you think this was a mistake, you can appeal: send /appeal to our bot, or press Appeal next to it "
        f"on your account page, {account}"
    )


def _platform_names(targets: Sequence[Target]) -> str:
    names = list(dict.fromkeys(Platform(t.platform).label for t in targets))
    return " and ".join(names) if names else "our community"


def notice_text(action: ModerationAction, *, targets: Sequence[Target], policy: ModerationPolicy) -> str:
    """What the member is told: what happened, why, and how to appeal."""
    why = action.reason.rstrip(".")
    removed = "We removed your message" if action.message_id else ""
    strikes = f"You have {action.strikes_after} active strike(s); at {policy.ban_at} you would be banned."
    if action.action == ActionKind.BAN:
        what = f"You have been banned from the community on {_platform_names(targets)}."
    elif action.action == ActionKind.MUTE:
        until = f"{action.expires_at:%Y-%m-%d %H:%M} UTC" if action.expires_at else "further notice"
        what = f"You are muted on {_platform_names(targets)} until {until}. {strikes}"
    elif action.action == ActionKind.WARN:
        what = f"This is a warning. {strikes}"
    else:
        what = ""
    lead = f"{removed} because: {why}." if removed else f"A moderator acted because: {why}."
    return " ".join(part for part in (lead, what, appeal_hint()) if part)


def _notify_operation(
    action: ModerationAction, community_user: CommunityUser, text: str, *, prefer: str = ""
) -> PlatformOperation | None:
    """The direct message to the person, on the platform they wrote on (or any they are on)."""
    identities = _identities(community_user, None)
    identities.sort(key=lambda i: (i.platform != prefer, i.platform, i.pk))
    if not identities:
        return None
    identity = identities[0]
    return PlatformOperation(
        action=action,
        platform=identity.platform,
        operation=OperationKind.NOTIFY,
        user_external_id=identity.external_id,
        text=text,
    )


def moderation_notify(*, action: ModerationAction, text: str, prefer: str = "") -> PlatformOperation | None:
    """Tell the person behind ``action`` something (an appeal's outcome), through the same retried path."""
    operation = _notify_operation(action, action.community_user, text, prefer=prefer or action.platform)
    if operation is None:
        return None
    operation.save()
    _enqueue([operation])
    return operation


# --- carrying actions out ------------------------------------------------------------------------------------


def _enqueue(operations: Iterable[PlatformOperation]) -> None:
    # The tasks module imports these services; importing it at load time would be circular.
    from apps.moderation.tasks import execute_operation

    for operation in operations:
        if operation.status == OperationStatus.PENDING:
            transaction.on_commit(functools.partial(execute_operation.delay, operation.pk))


def _save_operations(action: ModerationAction, operations: list[PlatformOperation]) -> None:
    for operation in operations:
        operation.save()
    moderation_action_settle(action_id=action.pk)
    _enqueue(operations)


def moderation_action_settle(*, action_id: int) -> str:
    """The action's status from its operations: pending while any is, failed when a platform refused or gave
    up on a deletion, mute or ban (with their errors), applied otherwise. A notice that could not be delivered
    (on Telegram, someone who never started the bot) is noted in the error without failing the action. A
    reversed action stays reverted."""
    operations = list(
        PlatformOperation.objects.filter(action_id=action_id).values_list(
            "status", "platform", "operation", "error"
        )
    )
    now = timezone.now()
    failed = [
        (kind, f"{Platform(platform).label}: {error}")
        for status, platform, kind, error in operations
        if status == OperationStatus.FAILED
    ]
    undelivered = [f"notice not delivered: {text}" for kind, text in failed if kind == OperationKind.NOTIFY]
    refused = [text for kind, text in failed if kind != OperationKind.NOTIFY]
    if any(status == OperationStatus.PENDING for status, *_ in operations):
        status, error = ActionStatus.PENDING, ""
    elif refused:
        status, error = ActionStatus.FAILED, "; ".join(refused + undelivered)
    else:
        status, error = ActionStatus.APPLIED, "; ".join(undelivered)
    error = error[:2000]
    updates: dict[str, Any] = {"status": status, "error": error, "updated_at": now}
    if status == ActionStatus.APPLIED:
        updates["applied_at"] = now
    ModerationAction.objects.filter(pk=action_id).exclude(status=ActionStatus.REVERTED).exclude(
        status=status, error=error
    ).update(**updates)
    return status


def _claim(operation_id: int) -> PlatformOperation | None:
    with transaction.atomic():
        operation = (
            PlatformOperation.objects.select_for_update()
            .select_related("action")
            .filter(pk=operation_id)
            .first()
        )
        if operation is None or operation.status != OperationStatus.PENDING:
            return None
        operation.attempts += 1
        operation.save(update_fields=["attempts", "updated_at"])
    return operation


def _settle(operation: PlatformOperation, status: str, error: str = "") -> bool:
    now = timezone.now()
    settled = PlatformOperation.objects.filter(pk=operation.pk, status=OperationStatus.PENDING).update(
        status=status,
        error=error[:2000],
        applied_at=now if status == OperationStatus.APPLIED else None,
        updated_at=now,
    )
    moderation_action_settle(action_id=operation.action_id)
    return bool(settled)


def _call(operation: PlatformOperation) -> None:
    client = get_moderation_client(operation.platform)
    reason = operation.action.reason[:500]
    kind = operation.operation
    if kind == OperationKind.DELETE_MESSAGE:
        client.delete_message(chat_id=operation.space, message_id=operation.message_id, reason=reason)
    elif kind == OperationKind.MUTE:
        assert operation.until is not None
        client.mute(
            space=operation.space, user_id=operation.user_external_id, until=operation.until, reason=reason
        )
    elif kind == OperationKind.UNMUTE:
        client.unmute(space=operation.space, user_id=operation.user_external_id, reason=reason)
    elif kind == OperationKind.BAN:
        client.ban(space=operation.space, user_id=operation.user_external_id, reason=reason)
    elif kind == OperationKind.UNBAN:
        client.unban(space=operation.space, user_id=operation.user_external_id, reason=reason)
    else:
        client.send_dm(
            user_id=operation.user_external_id,
            text=operation.text,
            idempotency_key=f"moderation-notice:{operation.pk}",
        )


def moderation_operation_execute(*, operation_id: int) -> str:
    """Make one platform call of an action; returns the operation's status. Raises ``TransientError``
    (``RateLimited`` included) for the task to retry; a refusal ends the operation ``failed``."""
    operation = _claim(operation_id)
    if operation is None:
        return "not pending"
    action = operation.action
    if action.reverted_at is not None and operation.created_at < action.reverted_at:
        # The action was reversed (an appeal granted) before this call went out: it must not land now.
        _settle(operation, OperationStatus.CANCELLED, "the action was reversed before this ran")
        return OperationStatus.CANCELLED
    if (
        operation.operation == OperationKind.MUTE
        and operation.until is not None
        and operation.until <= timezone.now()
    ):
        _settle(operation, OperationStatus.SKIPPED, "the mute had ended before it could be applied")
        return OperationStatus.SKIPPED
    try:
        _call(operation)
    except NotInCommunity as exc:
        _settle(operation, OperationStatus.SKIPPED, str(exc))
        return OperationStatus.SKIPPED
    except (PermanentError, ImproperlyConfigured) as exc:
        _settle(operation, OperationStatus.FAILED, str(exc))
        logger.error("moderation operation %s (%s) refused: %s", operation.pk, operation.operation, exc)
        return OperationStatus.FAILED
    except TransientError as exc:
        PlatformOperation.objects.filter(pk=operation.pk, status=OperationStatus.PENDING).update(
            error=f"retrying: {exc}"[:2000], updated_at=timezone.now()
        )
        raise
    _settle(operation, OperationStatus.APPLIED)
    return OperationStatus.APPLIED


def moderation_operation_mark_failed(*, operation_id: int, error: str) -> bool:
    """The retries ran out: the operation ends ``failed``, and its action shows it."""
    operation = PlatformOperation.objects.filter(pk=operation_id).first()
    if operation is None:
        return False
    return _settle(operation, OperationStatus.FAILED, error)


# --- enforcing a judgement -----------------------------------------------------------------------------------


def _author(message: InboundMessage) -> CommunityUser | None:
    return community_user_for_identity(
        platform=message.platform,
        external_id=message.author_id,
        username=message.author_username,
        display_name=message.author_display_name,
        seen_at=message.sent_at,
    )


def _reason_from(checks: Sequence[dict[str, Any]]) -> str:
    reasons = list(dict.fromkeys(str(c.get("reason") or c.get("check") or "") for c in checks))
    return "; ".join(r for r in reasons if r) or "the message broke the community rules"


def _enforce(
    *,
    community_user: CommunityUser,
    message: InboundMessage,
    actor: str,
    moderator: User | None,
    checks: list[dict[str, Any]],
    score: float | None,
    weight: int,
    decision_id: int | None,
) -> ModerationAction:
    try:
        with transaction.atomic():
            return _enforce_locked(
                community_user=community_user,
                message=message,
                actor=actor,
                moderator=moderator,
                checks=checks,
                score=score,
                weight=weight,
                decision_id=decision_id,
            )
    except IntegrityError:
        # The same message was acted on in the same instant (a redelivered update): that action stands.
        return ModerationAction.objects.get(
            platform=message.platform, chat_id=message.chat_id, message_id=message.message_id
        )


def _enforce_locked(
    *,
    community_user: CommunityUser,
    message: InboundMessage,
    actor: str,
    moderator: User | None,
    checks: list[dict[str, Any]],
    score: float | None,
    weight: int,
    decision_id: int | None,
) -> ModerationAction:
    # One ledger write at a time per person: two messages judged at once must not both read the old count.
    person = CommunityUser.objects.select_for_update().get(pk=community_user.pk)
    existing = ModerationAction.objects.filter(
        platform=message.platform, chat_id=message.chat_id, message_id=message.message_id
    ).first()
    if existing is not None:
        return existing
    now = timezone.now()
    policy = moderation_policy_get()
    if _sanctions_in_force(person.pk, now).filter(action=ActionKind.BAN).exists():
        weight = 0  # already banned: the message goes, the ban stands, nothing escalates further
    weight = max(0, weight)
    strikes = active_strikes(community_user_id=person.pk, now=now) + weight
    step = ladder_step(policy, strikes) if weight else ActionKind.DELETE_MESSAGE
    expires_at = now + dt.timedelta(minutes=policy.mute_minutes) if step == ActionKind.MUTE else None
    rule_id = next((c.get("rule_id") for c in checks if c.get("rule_id")), None)
    identity = PlatformIdentity.objects.filter(
        platform=message.platform, external_id=message.author_id
    ).first()
    action = _action_create(
        community_user=person,
        identity=identity,
        platform=message.platform,
        action=step,
        rule_id=rule_id if rule_id and _rule_exists(rule_id) else None,
        reason=_reason_from(checks),
        evidence={"checks": [c.get("check") for c in checks], "sent_at": message.sent_at.isoformat()},
        moderator=moderator,
        actor=actor,
        decision_id=decision_id,
        chat_id=message.chat_id,
        message_id=message.message_id,
        message_text=message.text,
        checks=checks,
        score=score,
        strikes_after=strikes,
        expires_at=expires_at,
    )
    if weight:
        Strike.objects.create(
            community_user=person,
            action=action,
            rule_id=action.rule_id,
            weight=weight,
            expires_at=now + dt.timedelta(days=policy.strike_expiry_days),
        )
    operations: list[PlatformOperation] = []
    # A join request's bio is no message in the chat: declining the request is the bot's business.
    if message.platform in MODERATED_PLATFORMS and message.kind != "join_request_bio":
        operations.append(
            PlatformOperation(
                action=action,
                platform=message.platform,
                operation=OperationKind.DELETE_MESSAGE,
                space=message.chat_id,
                message_id=message.message_id,
            )
        )
    targets = reach(person, origin=message) if step in SANCTIONS else []
    operations += _sanction_operations(action, _operation_for(step), targets, until=expires_at)
    if policy.notify_members:
        text = notice_text(action, targets=targets, policy=policy)
        if (notify := _notify_operation(action, person, text, prefer=message.platform)) is not None:
            operations.append(notify)
    _save_operations(action, operations)
    community_user_standing_refresh(community_user_id=person.pk, now=now)
    logger.info(
        "moderation: %s for community user %s (%s strikes) on %s message %s",
        step,
        person.pk,
        strikes,
        message.platform,
        message.message_id,
    )
    action.refresh_from_db()
    return action


def _rule_exists(rule_id: int) -> bool:
    from apps.moderation.models import ModerationRule

    return ModerationRule.objects.filter(pk=rule_id).exists()


def _operation_for(step: str) -> str:
    return {
        ActionKind.MUTE.value: OperationKind.MUTE.value,
        ActionKind.BAN.value: OperationKind.BAN.value,
    }.get(step, "")


def moderation_enforce(*, message: InboundMessage, judgement: Judgement) -> list[ModerationAction]:
    """Act on the engine's judgement of ``message``: for REMOVE, the ladder step its strikes reach, carried out
    on every platform the person is on; nothing for ALLOW and REVIEW (an operator reviews those in the admin),
    nor for staff and bots. A message already acted on returns that action, unchanged."""
    if judgement.verdict != Verdict.REMOVE or message.author_is_staff:
        return []
    if message.platform not in Platform.values:
        raise ValueError(f"unknown platform {message.platform!r}")
    community_user = _author(message)
    if community_user is None or is_never_moderated(community_user):
        return []
    checks = [check.as_dict() for check in judgement.checks]
    action = _enforce(
        community_user=community_user,
        message=message,
        actor=Actor.ENGINE,
        moderator=None,
        checks=checks,
        score=judgement.score,
        weight=judgement.strike_weight,
        decision_id=judgement.decision_id if _decision_exists(judgement.decision_id) else None,
    )
    return [action]


def _decision_exists(decision_id: int | None) -> bool:
    return decision_id is not None and ModerationDecision.objects.filter(pk=decision_id).exists()


def moderation_mark_spam(*, message: InboundMessage, actor: User) -> list[ModerationAction]:
    """An operator's /spam on ``message``: delete it and act along the ladder (unless it was acted on already),
    and teach the classifier that its text is spam."""
    if message.author_is_staff:
        raise ModerationRefused("staff messages are never moderated")
    community_user = _author(message)
    if community_user is None or is_never_moderated(community_user):
        raise ModerationRefused("staff and bots are never moderated")
    decision = ModerationDecision.objects.filter(
        platform=message.platform, chat_id=message.chat_id, message_id=message.message_id
    ).first()
    check = {
        "layer": "operator",
        "check": OPERATOR_SPAM_CHECK,
        "score": 1.0,
        "reason": "marked as spam by a moderator",
        "evidence": {"operator_id": actor.pk},
        "rule_id": None,
    }
    action = _enforce(
        community_user=community_user,
        message=message,
        actor=Actor.OPERATOR,
        moderator=actor,
        checks=[check, *(decision.checks if decision is not None else [])],
        score=decision.score if decision is not None else None,
        weight=moderation_policy_get().operator_strike_weight,
        decision_id=decision.pk if decision is not None else None,
    )
    if message.text.strip():
        from apps.moderation.services.labels import moderation_label

        moderation_label(
            text=message.text,
            label="spam",
            source="operator",
            actor=actor,
            decision_id=decision.pk if decision is not None else None,
        )
    return [action]


def moderation_decision_confirm(*, decision_id: int, actor: User) -> list[ModerationAction]:
    """An operator reviewing a judged message (a REVIEW verdict in the queue) confirms it is spam: the same as
    their /spam on it."""
    decision = ModerationDecision.objects.get(pk=decision_id)
    message = InboundMessage(
        platform=decision.platform,
        chat_id=decision.chat_id,
        message_id=decision.message_id,
        author_id=decision.author_id,
        text=decision.text,
        sent_at=decision.sent_at,
        author_username=decision.author_username,
        author_display_name=decision.author_display_name,
        kind=decision.kind,
    )
    return moderation_mark_spam(message=message, actor=actor)


# --- operators -----------------------------------------------------------------------------------------------


def moderation_act(
    *,
    community_user: CommunityUser,
    action: str,
    actor: User | None,
    reason: str,
    duration: dt.timedelta | None = None,
    platforms: Iterable[str] | None = None,
) -> ModerationAction:
    """An operator's /warn, /mute, /ban (each adds ``operator_strike_weight`` strikes), /unmute or /unban on
    everywhere the person is (or only ``platforms``). ``duration`` is a mute's length (the policy's by
    default, at most 28 days)."""
    if action not in OPERATOR_ACTIONS:
        raise ValueError(f"operators can {', '.join(OPERATOR_ACTIONS)}, not {str(action)!r}")
    if is_never_moderated(community_user):
        raise ModerationRefused("staff are never moderated")
    if duration is not None and not dt.timedelta(seconds=30) <= duration <= MAX_MUTE:
        raise ValueError("a mute lasts from 30 seconds to 28 days")
    platforms = list(platforms) if platforms is not None else None
    with transaction.atomic():
        person = CommunityUser.objects.select_for_update().get(pk=community_user.pk)
        if action in (ActionKind.UNMUTE, ActionKind.UNBAN):
            return _lift(person, action=action, actor=actor, reason=reason, platforms=platforms)
        now = timezone.now()
        policy = moderation_policy_get()
        weight = policy.operator_strike_weight
        strikes = active_strikes(community_user_id=person.pk, now=now) + weight
        expires_at = (
            now + (duration or dt.timedelta(minutes=policy.mute_minutes))
            if action == ActionKind.MUTE
            else None
        )
        row = _action_create(
            community_user=person,
            platform=_home_platform(person, platforms),
            action=action,
            reason=reason or f"{ActionKind(action).label} by a moderator",
            moderator=actor,
            actor=Actor.OPERATOR,
            strikes_after=strikes,
            expires_at=expires_at,
        )
        if weight:
            Strike.objects.create(
                community_user=person,
                action=row,
                weight=weight,
                expires_at=now + dt.timedelta(days=policy.strike_expiry_days),
            )
        targets = reach(person, platforms=platforms) if action in SANCTIONS else []
        operations = _sanction_operations(row, _operation_for(action), targets, until=expires_at)
        if policy.notify_members:
            text = notice_text(row, targets=targets, policy=policy)
            if (notify := _notify_operation(row, person, text, prefer=row.platform)) is not None:
                operations.append(notify)
        _save_operations(row, operations)
        community_user_standing_refresh(community_user_id=person.pk, now=now)
    row.refresh_from_db()
    return row


def _home_platform(person: CommunityUser, platforms: Sequence[str] | None) -> str:
    identities = _identities(person, platforms)
    if identities:
        return identities[0].platform
    first = PlatformIdentity.objects.filter(community_user=person).order_by("pk").first()
    return first.platform if first is not None else Platform.DISCORD


def _lift(
    person: CommunityUser, *, action: str, actor: User | None, reason: str, platforms: Sequence[str] | None
) -> ModerationAction:
    """Lift the person's mutes (or bans) in force, on every platform (or ``platforms``); the strikes stay."""
    now = timezone.now()
    lifted_kind = ActionKind.MUTE if action == ActionKind.UNMUTE else ActionKind.BAN
    in_force = list(_sanctions_in_force(person.pk, now).filter(action=lifted_kind).order_by("-created_at"))
    row = _action_create(
        community_user=person,
        platform=_home_platform(person, platforms),
        action=action,
        reason=reason or f"{ActionKind(action).label} by a moderator",
        moderator=actor,
        actor=Actor.OPERATOR,
        reverses=in_force[0] if in_force else None,
        strikes_after=active_strikes(community_user_id=person.pk, now=now),
    )
    if platforms is None:
        ModerationAction.objects.filter(pk__in=[a.pk for a in in_force]).update(ended_at=now, updated_at=now)
    targets = reach(person, platforms=platforms)
    # Also wherever the sanctions actually landed (a chat since taken off the list, say).
    landed = PlatformOperation.objects.filter(
        action__in=in_force, operation=lifted_kind, platform__in={t.platform for t in targets}
    ).values_list("platform", "space", "user_external_id")
    targets = list(dict.fromkeys([*targets, *(Target(*t) for t in landed if t[1])]))
    operations = _sanction_operations(row, action, targets, until=None)
    policy = moderation_policy_get()
    if policy.notify_members and operations:
        what = "mute has been lifted" if action == ActionKind.UNMUTE else "ban has been lifted"
        text = f"Your {what} on {_platform_names(targets)}. Welcome back."
        if (notify := _notify_operation(row, person, text, prefer=row.platform)) is not None:
            operations.append(notify)
    _save_operations(row, operations)
    community_user_standing_refresh(community_user_id=person.pk, now=now)
    return row


# --- reversal (appeals) --------------------------------------------------------------------------------------


def moderation_action_reverse(*, action_id: int, actor: User | None, reason: str) -> ModerationAction | None:
    """Undo an action found wrong: void its strikes, cancel its calls not yet made, and lift its mute or ban on
    every platform it reached. Returns the unmute or unban action (None for a warning or deletion, which
    nothing on the platforms undoes). Reversing twice does nothing the second time."""
    now = timezone.now()
    with transaction.atomic():
        action = ModerationAction.objects.select_for_update().get(pk=action_id)
        if action.reverted_at is not None:
            return None
        CommunityUser.objects.select_for_update().filter(pk=action.community_user_id).first()
        action.status, action.reverted_at = ActionStatus.REVERTED, now
        if action.action in SANCTIONS and action.ended_at is None:
            action.ended_at = now
        action.save(update_fields=["status", "reverted_at", "ended_at", "updated_at"])
        Strike.objects.filter(action=action, voided_at__isnull=True).update(voided_at=now)
        never_made = PlatformOperation.objects.filter(
            action=action, status=OperationStatus.PENDING, attempts=0
        )
        never_made.update(
            status=OperationStatus.CANCELLED, error="the action was reversed before this ran", updated_at=now
        )
        lift = None
        targets: list[Target] = []
        if action.action in SANCTIONS:
            # Every place the sanction was tried (a call in flight may still land), lifted; a sanction whose
            # calls were all cancelled above never landed anywhere.
            tried = (
                PlatformOperation.objects.filter(action=action, operation=_operation_for(action.action))
                .exclude(status=OperationStatus.CANCELLED)
                .exclude(space="", platform=Platform.TELEGRAM)
                .values_list("platform", "space", "user_external_id")
                .distinct()
            )
            targets = [Target(*t) for t in tried]
        if targets:
            kind = _LIFTS[ActionKind(action.action)]
            lift = _action_create(
                community_user_id=action.community_user_id,
                platform=action.platform,
                action=kind,
                reason=reason,
                moderator=actor,
                actor=Actor.OPERATOR,
                reverses=action,
                strikes_after=active_strikes(community_user_id=action.community_user_id, now=now),
            )
            _save_operations(lift, _sanction_operations(lift, kind, targets, until=None))
        community_user_standing_refresh(community_user_id=action.community_user_id, now=now)
    return lift


# --- expiry (the moderator agent) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    mutes_ended: int
    mutes_lifted_on_platforms: int
    strikes_expired: int
    people_restored: int


def moderation_expire(*, now: dt.datetime, since: dt.datetime | None = None) -> ExpiryResult:
    """End the mutes whose time is up, lifting them on any platform that would still hold them (a mute an
    operator shortened in the admin: the platform still has the old end), and bring back the standing of the
    people whose last strikes expired (since ``since``, the previous run)."""
    due = list(
        ModerationAction.objects.filter(
            action=ActionKind.MUTE, expires_at__lte=now, ended_at__isnull=True, reverted_at__isnull=True
        ).select_related("community_user")
    )
    ended = lifted = 0
    people: set[int] = set()
    for mute in due:
        with transaction.atomic():
            if not ModerationAction.objects.filter(pk=mute.pk, ended_at__isnull=True).update(
                ended_at=now, updated_at=now
            ):
                continue
            ended += 1
            people.add(mute.community_user_id)
            still_held = list(
                PlatformOperation.objects.filter(
                    action=mute, operation=OperationKind.MUTE, status=OperationStatus.APPLIED, until__gt=now
                ).values_list("platform", "space", "user_external_id")
            )
            if still_held:
                lift = _action_create(
                    community_user_id=mute.community_user_id,
                    platform=mute.platform,
                    action=ActionKind.UNMUTE,
                    reason="the mute's time is up",
                    actor=Actor.AGENT,
                    reverses=mute,
                    strikes_after=active_strikes(community_user_id=mute.community_user_id, now=now),
                )
                targets = [Target(*t) for t in dict.fromkeys(still_held)]
                _save_operations(lift, _sanction_operations(lift, OperationKind.UNMUTE, targets, until=None))
                lifted += len(targets)
    expired_strikes = Strike.objects.filter(voided_at__isnull=True, expires_at__lte=now)
    if since is not None:
        expired_strikes = expired_strikes.filter(expires_at__gt=since)
    strikes = expired_strikes.count()
    people |= set(expired_strikes.values_list("community_user_id", flat=True))
    # Anyone marked muted past their end, or warned (a missed run, a strike voided elsewhere): the ledger decides.
    people |= set(
        CommunityUser.objects.filter(
            Q(standing=ModerationStanding.MUTED, muted_until__lte=now) | Q(standing=ModerationStanding.WARNED)
        ).values_list("pk", flat=True)
    )
    restored = 0
    for person_id in sorted(people):
        before = CommunityUser.objects.filter(pk=person_id).values_list("standing", flat=True).first()
        if (
            before is not None
            and community_user_standing_refresh(community_user_id=person_id, now=now) != before
        ):
            restored += 1
    return ExpiryResult(
        mutes_ended=ended,
        mutes_lifted_on_platforms=lifted,
        strikes_expired=strikes,
        people_restored=restored,
    )


# --- the daily report (the moderator agent) ------------------------------------------------------------------


def day_start(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def moderation_report_record(*, day: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    """One UTC day's moderation as performance snapshots (time key: the day's start; a later run replaces
    them, so a day's figures settle as its appeals are decided):

    - ``moderation.actions``: the actions taken that day (deletions, warnings, mutes, bans), in all (no
      scope), per check that fired (``check:<name>``; an operator's own action is ``check:operator``) and per
      step (``action:<kind>``);
    - ``moderation.appeals_granted`` and ``moderation.appeals_denied``: appeals decided that day;
    - ``moderation.false_positive_rate``: of that day's actions, the share an appeal has since reversed
      (``sample_size``: the actions), when there were any.
    """
    from apps.agents.models import PerformanceSnapshot
    from apps.moderation.models import Appeal

    start = day_start(day)
    end = min(start + dt.timedelta(days=1), now)
    actions = list(
        ModerationAction.objects.filter(
            created_at__gte=start, created_at__lt=end, action__in=APPEALABLE_KINDS
        ).values_list("pk", "action", "checks")
    )
    by_check: dict[str, int] = {}
    by_action: dict[str, int] = {}
    for _, kind, checks in actions:
        names = {str(c.get("check")) for c in checks or [] if isinstance(c, dict) and c.get("check")}
        for name in names or {"operator"}:
            by_check[name] = by_check.get(name, 0) + 1
        by_action[kind] = by_action.get(kind, 0) + 1
    reversed_on_appeal = Appeal.objects.filter(
        action_id__in=[pk for pk, _, _ in actions], status=Appeal.Status.UPHELD
    ).count()
    decided = Appeal.objects.filter(decided_at__gte=start, decided_at__lt=end)
    granted = decided.filter(status=Appeal.Status.UPHELD).count()
    denied = decided.filter(status=Appeal.Status.DENIED).count()
    details = {"day": start.date().isoformat()}
    rows: list[tuple[str, str, float, int | None]] = [("moderation.actions", "", float(len(actions)), None)]
    rows += [("moderation.actions", f"check:{name}", float(n), None) for name, n in sorted(by_check.items())]
    rows += [
        ("moderation.actions", f"action:{kind}", float(n), None) for kind, n in sorted(by_action.items())
    ]
    rows += [
        ("moderation.appeals_granted", "", float(granted), None),
        ("moderation.appeals_denied", "", float(denied), None),
    ]
    false_positive_rate = reversed_on_appeal / len(actions) if actions else None
    if false_positive_rate is not None:
        rows.append(("moderation.false_positive_rate", "", false_positive_rate, len(actions)))
    PerformanceSnapshot.objects.bulk_create(
        [
            PerformanceSnapshot(
                metric=metric, scope=scope, value=value, sample_size=size, captured_at=start, details=details
            )
            for metric, scope, value, size in rows
        ],
        update_conflicts=True,
        unique_fields=["metric", "scope", "captured_at"],
        update_fields=["value", "sample_size", "details"],
    )
    return {
        "day": start.date().isoformat(),
        "actions": len(actions),
        "by_check": by_check,
        "by_action": by_action,
        "appeals_granted": granted,
        "appeals_denied": denied,
        "false_positive_rate": false_positive_rate,
        "snapshots": len(rows),
    }


def moderation_operations_retry(*, action_ids: Iterable[int]) -> int:
    """Send the failed platform calls of these actions again (an operator fixed the bot's rights, say); a
    reversed action's calls stay as they are. Returns how many were sent again."""
    now = timezone.now()
    with transaction.atomic():
        failed = list(
            PlatformOperation.objects.select_for_update()
            .filter(
                action_id__in=list(action_ids),
                status=OperationStatus.FAILED,
                action__reverted_at__isnull=True,
            )
            .exclude(
                platform=Platform.TELEGRAM,
                space="",
                operation__in=list(_LIFT_OPERATION) + list(_LIFT_OPERATION.values()),
            )
        )
        PlatformOperation.objects.filter(pk__in=[o.pk for o in failed]).update(
            status=OperationStatus.PENDING, error="", updated_at=now
        )
        for action_id in {o.action_id for o in failed}:
            moderation_action_settle(action_id=action_id)
        for operation in failed:
            operation.status = OperationStatus.PENDING
        _enqueue(failed)
    return len(failed)


def moderation_lift_for(*, community_user_ids: Iterable[int], action: str, actor: User | None) -> int:
    """The admin's "unban" and "unmute" on the people of the selected actions: ``moderation_act`` for each."""
    lifted = 0
    for person in CommunityUser.objects.filter(pk__in=list(community_user_ids)):
        if not is_never_moderated(person):
            moderation_act(
                community_user=person, action=action, actor=actor, reason=f"{action} from the admin"
            )
            lifted += 1
    return lifted
