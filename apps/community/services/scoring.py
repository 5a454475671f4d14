"""Storing each person's engagement score (``community_user_scores``) on their community record.

The scores are computed once, as a set, by the selector's grouped query and written with one
``UPDATE … FROM (that query)`` (PostgreSQL, and SQLite since 3.33): a correlated subquery per person, or
``bulk_update``'s ``CASE`` per row, are several times slower on 100,000 people. Only scores that changed are
written, so a run over a quiet community writes almost nothing, and ``score_updated_at`` is when the score last
changed; people whose window emptied drop to 0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import connections, router
from django.db.models import Exists, OuterRef

from apps.community.models import CommunityUser
from apps.community.selectors import (
    ACTIVE_DAY_POINTS,
    OLDER_FACTOR,
    RECENT_DAYS,
    community_user_scores,
    interaction_list_weighted,
)


@dataclass(frozen=True, slots=True)
class ScoresStored:
    scored: int  # people with a score above 0 now
    changed: int  # people with interactions in the window whose score changed
    zeroed: int  # people whose window emptied, back to 0


def community_user_scores_store(
    *,
    since: dt.datetime,
    now: dt.datetime,
    weights: Mapping[str, float],
    recent_days: float = RECENT_DAYS,
    older_factor: float = OLDER_FACTOR,
    active_day_points: float = ACTIVE_DAY_POINTS,
) -> ScoresStored:
    """Write everyone's current score to ``community_users.engagement_score`` in two statements."""
    scores = community_user_scores(
        since=since,
        now=now,
        weights=weights,
        recent_days=recent_days,
        older_factor=older_factor,
        active_day_points=active_day_points,
    )
    alias = router.db_for_write(CommunityUser)
    connection = connections[alias]
    scores_sql, scores_params = scores.query.get_compiler(using=alias).as_sql()
    table = connection.ops.quote_name(CommunityUser._meta.db_table)
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET engagement_score = s.score, score_updated_at = %s "  # noqa: S608
            f"FROM ({scores_sql}) AS s "
            f"WHERE {table}.id = s.community_user_id AND {table}.engagement_score <> s.score",
            [stamp, *scores_params],
        )
        changed = cursor.rowcount
    window = interaction_list_weighted(since=since, now=now, weights=weights)
    zeroed = (
        CommunityUser.objects.using(alias)
        .exclude(engagement_score=0)
        .exclude(Exists(window.filter(community_user_id=OuterRef("pk"))))
        .update(engagement_score=0.0, score_updated_at=now)
    )
    scored = CommunityUser.objects.using(alias).filter(engagement_score__gt=0).count()
    return ScoresStored(scored=scored, changed=changed, zeroed=zeroed)
