"""Reads of the community: where each platform's inbound stream was read up to, the questions waiting for an
answer, how often we answered each person lately, and how many people are active on a platform."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Count, F, Max, QuerySet

from apps.community.models import InteractionKind, ModerationStanding, UserInteraction

# What people say to us on the platforms (as opposed to what we record about them: offer clicks, joins).
INBOUND_KINDS = (
    InteractionKind.REPLY,
    InteractionKind.MENTION,
    InteractionKind.COMMENT,
    InteractionKind.MESSAGE,
    InteractionKind.DIRECT_MESSAGE,
)
# A muted or banned person gets no answers from us until moderation says otherwise.
_ANSWERABLE_STANDINGS = (ModerationStanding.GOOD, ModerationStanding.WARNED)


def interaction_inbound_latest(*, platforms: Iterable[str]) -> dict[str, dt.datetime]:
    """When the newest stored message of each platform was written (platforms with none are absent), in one
    query: the cursor from which that platform's inbound stream is read again."""
    rows = (
        UserInteraction.objects.filter(platform__in=list(platforms), kind__in=INBOUND_KINDS)
        .values("platform")
        .annotate(latest=Max("occurred_at"))
        .values_list("platform", "latest")
    )
    return dict(rows)


def interaction_questions_awaiting_reply(
    *, platforms: Iterable[str], since: dt.datetime
) -> QuerySet[UserInteraction]:
    """Questions asked since ``since`` that nobody answered yet, oldest first, from people we may answer (not
    bots, not muted or banned). ``post_symbol`` is the symbol of the insight behind the post a question
    answers, when it answers one of ours that came from an insight."""
    return (
        UserInteraction.objects.filter(
            platform__in=list(platforms),
            is_question=True,
            responded_at__isnull=True,
            occurred_at__gte=since,
            community_user__standing__in=_ANSWERABLE_STANDINGS,
        )
        .exclude(identity__is_bot=True)
        .select_related("community_user", "identity", "content")
        .annotate(post_symbol=F("content__draft__plan__insight__symbol"))
        .order_by("occurred_at", "id")
    )


def interaction_reply_counts(*, community_user_ids: Iterable[int], since: dt.datetime) -> dict[int, int]:
    """How many of each person's messages we answered since ``since`` (people with none are absent), in one
    query."""
    rows = (
        UserInteraction.objects.filter(
            community_user_id__in=list(community_user_ids), responded_at__gte=since
        )
        .values("community_user_id")
        .annotate(replies=Count("id"))
        .values_list("community_user_id", "replies")
    )
    return dict(rows)


def community_active_audience(*, platform: str, since: dt.datetime) -> int:
    """How many different people wrote to us on ``platform`` since ``since``."""
    return (
        UserInteraction.objects.filter(platform=platform, kind__in=INBOUND_KINDS, occurred_at__gte=since)
        .values("community_user_id")
        .distinct()
        .count()
    )
