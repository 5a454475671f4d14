"""Reads of the moderation ledger for the surfaces (the portal's account page, the bots' /strikes)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch
from django.utils import timezone

from apps.accounts.models import User
from apps.moderation.models import Appeal, ModerationAction
from apps.moderation.services.appeals import APPEALABLE, action_is_appealable
from apps.moderation.services.enforcement import active_strikes


@dataclass(frozen=True)
class MemberAction:
    action: ModerationAction
    appeal: Appeal | None
    can_appeal: bool


@dataclass(frozen=True)
class MemberModeration:
    actions: list[MemberAction]
    active_strikes: int


def member_moderation_get(*, user: User, limit: int = 20) -> MemberModeration:
    """The portal member's moderation record (see ``community_user_moderation_get``); empty when the member
    has no community record yet."""
    community_user_id = User.objects.filter(pk=user.pk).values_list("community_user__pk", flat=True).first()
    if community_user_id is None:
        return MemberModeration(actions=[], active_strikes=0)
    return community_user_moderation_get(community_user_id=community_user_id, limit=limit)


def community_user_moderation_get(*, community_user_id: int, limit: int = 20) -> MemberModeration:
    """The moderation actions taken against the person (newest first), each with its appeal or whether it can
    still be appealed, and the strikes that count on their ledger now (a bot's /strikes)."""
    actions = (
        ModerationAction.objects.filter(community_user_id=community_user_id, action__in=APPEALABLE)
        .prefetch_related(Prefetch("appeals", queryset=Appeal.objects.order_by("-created_at")))
        .order_by("-created_at", "-pk")[:limit]
    )
    rows = []
    for action in actions:
        appeals = list(action.appeals.all())
        appeal = appeals[0] if appeals else None
        rows.append(MemberAction(action, appeal, appeal is None and action_is_appealable(action)))
    return MemberModeration(
        actions=rows, active_strikes=active_strikes(community_user_id=community_user_id, now=timezone.now())
    )
