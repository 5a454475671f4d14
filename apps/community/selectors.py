"""Reads of the community: where each platform's inbound stream was read up to, the questions waiting for an
answer, how often we answered each person lately, how many people are active on a platform, and how engaged
each person is (``community_user_scores``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, Count, DateField, F, FloatField, Func, Max, Q, QuerySet, Sum, Value, When
from django.db.models.sql.compiler import SQLCompiler

from apps.community.models import InteractionKind, ModerationStanding, UserInteraction

if TYPE_CHECKING:
    from django.db.models.sql.compiler import _AsSqlType

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


# --- engagement scores --------------------------------------------------------------------------------------------

# Points per interaction by kind: writing to us counts more than a tap, a direct message most of what people
# do on their own, following an offer link most of all. Kinds not named (joins, leaves) count nothing.
DEFAULT_INTERACTION_WEIGHTS: dict[str, float] = {
    InteractionKind.REPLY: 3.0,
    InteractionKind.MENTION: 3.0,
    InteractionKind.QUOTE: 3.0,
    InteractionKind.COMMENT: 3.0,
    InteractionKind.MESSAGE: 2.0,
    InteractionKind.DIRECT_MESSAGE: 4.0,
    InteractionKind.REPOST: 2.0,
    InteractionKind.REACTION: 1.0,
    InteractionKind.LIKE: 1.0,
    InteractionKind.OFFER_CLICK: 5.0,
}
# Interactions of the last week count in full, older ones in the window at this share.
RECENT_DAYS = 7
OLDER_FACTOR = 0.5
# Points per distinct UTC day with any weighted interaction: steady presence beats one busy evening.
ACTIVE_DAY_POINTS = 1.0


class _UTCDate(Func):
    """The UTC calendar day of a timestamp, computed by the database's own date functions (TruncDate would
    call a Python function per row on SQLite)."""

    output_field = DateField()
    template = "((%(expressions)s) AT TIME ZONE 'UTC')::date"

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> _AsSqlType:
        # SQLite keeps aware datetimes as UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]".
        return self.as_sql(compiler, connection, template="date(%(expressions)s)", **extra_context)


def _weighted(weights: Mapping[str, float]) -> dict[str, float]:
    return {str(kind): float(weight) for kind, weight in weights.items() if weight > 0}


def interaction_list_weighted(
    *, since: dt.datetime, now: dt.datetime, weights: Mapping[str, float]
) -> QuerySet[UserInteraction]:
    """The interactions a score counts: between ``since`` and ``now``, of a kind with a positive weight."""
    return UserInteraction.objects.filter(
        occurred_at__gte=since, occurred_at__lte=now, kind__in=list(_weighted(weights))
    ).order_by()


def community_user_scores(
    *,
    since: dt.datetime,
    now: dt.datetime,
    weights: Mapping[str, float],
    recent_days: float = RECENT_DAYS,
    older_factor: float = OLDER_FACTOR,
    active_day_points: float = ACTIVE_DAY_POINTS,
) -> QuerySet[UserInteraction, Mapping[str, Any]]:
    """One row per person with weighted interactions between ``since`` and ``now``, computed in one grouped
    query over ``user_interactions`` (people without any are absent: their score is 0):

    - ``interactions``: how many, ``recent_interactions``: how many in the last ``recent_days``;
    - ``recent_points``: the sum of ``weights[kind]`` over the last ``recent_days``;
    - ``older_points``: the same sum over the rest of the window;
    - ``active_days``: distinct UTC days with an interaction;
    - ``score`` = ``recent_points`` + ``older_factor`` * ``older_points`` + ``active_day_points`` *
      ``active_days``.

    Unordered: order (``-score``) or narrow (``community_user_id__in``) it as needed."""
    weighted = _weighted(weights)
    kinds_by_weight: dict[float, list[str]] = {}
    for kind, weight in weighted.items():
        kinds_by_weight.setdefault(weight, []).append(kind)
    points = Case(
        *(When(kind__in=kinds, then=Value(weight)) for weight, kinds in kinds_by_weight.items()),
        default=Value(0.0),
        output_field=FloatField(),
    )
    recent = Q(occurred_at__gt=now - dt.timedelta(days=recent_days))
    return (
        interaction_list_weighted(since=since, now=now, weights=weights)
        .values("community_user_id")
        .annotate(
            interactions=Count("id"),
            recent_interactions=Count("id", filter=recent),
            recent_points=Sum(points, filter=recent, default=0.0),
            older_points=Sum(points, filter=~recent, default=0.0),
            active_days=Count(_UTCDate("occurred_at"), distinct=True),
        )
        .annotate(
            score=F("recent_points")
            + Value(float(older_factor)) * F("older_points")
            + Value(float(active_day_points)) * F("active_days"),
        )
    )


@dataclass(frozen=True)
class InteractionMix:
    """What a person did in a window: weighted interactions counted by kind, and points by platform."""

    kinds: dict[str, int] = field(default_factory=dict)
    platform_points: dict[str, float] = field(default_factory=dict)

    def top_platform(self, among: Iterable[str]) -> str | None:
        """The platform (of ``among``) where they earned the most points; ties go to the first of ``among``."""
        ranked = [p for p in among if self.platform_points.get(p, 0) > 0]
        return max(ranked, key=lambda p: self.platform_points[p], default=None)


def community_user_interaction_mix(
    *, community_user_ids: Iterable[int], since: dt.datetime, now: dt.datetime, weights: Mapping[str, float]
) -> dict[int, InteractionMix]:
    """For a few people, the mix behind their score between ``since`` and ``now``, in one query."""
    weighted = _weighted(weights)
    rows = (
        interaction_list_weighted(since=since, now=now, weights=weights)
        .filter(community_user_id__in=list(community_user_ids))
        .values_list("community_user_id", "platform", "kind")
        .annotate(n=Count("id"))
    )
    mix: dict[int, InteractionMix] = {}
    for community_user_id, platform, kind, n in rows:
        person = mix.setdefault(community_user_id, InteractionMix())
        person.kinds[kind] = person.kinds.get(kind, 0) + n
        person.platform_points[platform] = person.platform_points.get(platform, 0.0) + n * weighted[kind]
    return mix
