"""Appeals: a member asks for a moderation action to be looked at again, from the portal's account page or with
/appeal to a bot; an operator grants or denies it in the admin's queue.

A granted appeal reverses the action on every platform it reached (the ban or mute lifted), voids its strikes,
teaches the classifier that the message was not spam (``moderation_label(..., "ham", "appeal")``), and tells the
member. A denied one tells the member too. Each action can be appealed once; a decision is final.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.community.models import CommunityUser
from apps.core import live
from apps.moderation.models import ActionKind, Actor, Appeal, AppealSource, ModerationAction
from apps.moderation.services.enforcement import (
    APPEALABLE_KINDS,
    moderation_action_reverse,
    moderation_notify,
)

logger = logging.getLogger(__name__)

APPEALABLE = APPEALABLE_KINDS
MAX_APPEAL_LENGTH = 2000


class AppealRefused(ValueError):
    """Why an appeal cannot be opened; ``code`` is one of the constants below."""

    NO_ACTION = "no_action"
    NOT_YOURS = "not_yours"
    ALREADY_APPEALED = "already_appealed"
    NOT_APPEALABLE = "not_appealable"
    EMPTY = "empty"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def action_is_appealable(action: ModerationAction) -> bool:
    """Deletions, warnings, mutes and bans by the engine or an operator, not yet reversed."""
    return action.action in APPEALABLE and action.actor != Actor.AGENT and action.reverted_at is None


def _latest_appealable(community_user: CommunityUser) -> ModerationAction | None:
    return (
        ModerationAction.objects.filter(
            community_user=community_user,
            action__in=APPEALABLE,
            reverted_at__isnull=True,
            appeals__isnull=True,
        )
        .exclude(actor=Actor.AGENT)
        .order_by("-created_at", "-pk")
        .first()
    )


def appeal_open(
    *,
    message: str,
    action_id: int | None = None,
    community_user: CommunityUser | None = None,
    source: str = AppealSource.PORTAL,
) -> Appeal:
    """Open an appeal of ``action_id`` (which must be ``community_user``'s, when given), or of
    ``community_user``'s latest action not yet appealed (a bot's /appeal). Raises ``AppealRefused``."""
    text = message.strip()[:MAX_APPEAL_LENGTH]
    if not text:
        raise AppealRefused(AppealRefused.EMPTY, "Tell us why the action was a mistake.")
    if action_id is None and community_user is None:
        raise ValueError("appeal_open needs an action_id or a community_user")
    if action_id is not None:
        action = ModerationAction.objects.filter(pk=action_id).first()
        if action is None:
            raise AppealRefused(AppealRefused.NO_ACTION, "There is no such moderation action.")
        if community_user is not None and action.community_user_id != community_user.pk:
            # Said the same way as a missing action: an appeal form must not reveal other people's actions.
            raise AppealRefused(AppealRefused.NOT_YOURS, "There is no such moderation action.")
    else:
        assert community_user is not None
        action = _latest_appealable(community_user)
        if action is None:
            raise AppealRefused(AppealRefused.NO_ACTION, "You have no moderation action to appeal.")
    if not action_is_appealable(action):
        raise AppealRefused(AppealRefused.NOT_APPEALABLE, "That action cannot be appealed.")
    try:
        with transaction.atomic():
            if Appeal.objects.filter(action=action).exists():
                raise AppealRefused(AppealRefused.ALREADY_APPEALED, "That action has already been appealed.")
            appeal = Appeal.objects.create(
                action=action, community_user_id=action.community_user_id, message=text, source=source
            )
    except IntegrityError:
        raise AppealRefused(
            AppealRefused.ALREADY_APPEALED, "That action has already been appealed."
        ) from None
    live.broadcast(
        live.DASHBOARD_GROUP,
        "moderation_appeal",
        {"appeal_id": appeal.pk, "action_id": action.pk, "action": action.action, "status": appeal.status},
    )
    logger.info("appeal %s opened on action %s (%s)", appeal.pk, action.pk, source)
    return appeal


def appeal_decide(*, appeal_id: int, granted: bool, actor: User | None, note: str = "") -> Appeal | None:
    """Grant or deny an open appeal; None when it is not open (decided already: a decision is final)."""
    now = timezone.now()
    with transaction.atomic():
        decided = Appeal.objects.filter(pk=appeal_id, status=Appeal.Status.OPEN).update(
            status=Appeal.Status.UPHELD if granted else Appeal.Status.DENIED,
            decided_by=actor,
            decided_at=now,
            decision_note=note,
            updated_at=now,
        )
        if not decided:
            return None
        appeal = Appeal.objects.select_related("action").get(pk=appeal_id)
        action = appeal.action
        if granted:
            lift = moderation_action_reverse(
                action_id=action.pk, actor=actor, reason=f"appeal {appeal.pk} granted"
            )
            if action.message_text.strip():
                from apps.moderation.services.labels import moderation_label

                moderation_label(
                    text=action.message_text,
                    label="ham",
                    source="appeal",
                    actor=actor,
                    decision_id=action.decision_id,
                )
            restored = {
                ActionKind.BAN: "Your ban has been lifted everywhere it applied",
                ActionKind.MUTE: "Your mute has been lifted everywhere it applied",
            }.get(ActionKind(action.action), "The action has been withdrawn")
            text = f"Your appeal was granted. {restored}, and the strike is removed from your record. Sorry about that."
            moderation_notify(action=lift or action, text=_with_note(text, note), prefer=action.platform)
        else:
            text = "Your appeal was reviewed and the decision stands."
            moderation_notify(action=action, text=_with_note(text, note), prefer=action.platform)
    live.broadcast(
        live.DASHBOARD_GROUP,
        "moderation_appeal",
        {"appeal_id": appeal.pk, "action_id": action.pk, "action": action.action, "status": appeal.status},
    )
    logger.info("appeal %s %s", appeal.pk, "granted" if granted else "denied")
    return appeal


def _with_note(text: str, note: str) -> str:
    return f"{text} Note from the moderators: {note.strip()}" if note.strip() else text


def appeals_decide(*, appeal_ids: Iterable[int], granted: bool, actor: User | None, note: str = "") -> int:
    """Decide several open appeals the same way (the admin's actions); returns how many were open."""
    return sum(
        appeal_decide(appeal_id=pk, granted=granted, actor=actor, note=note) is not None for pk in appeal_ids
    )
