"""How our posts do: the metrics the platforms report, kept on each post (the latest) and as time series in
``performance_snapshots`` (every run's reading of every post, and the means and totals per platform and format
that the strategy and the dashboard read).

Series written per run, all at the run's minute (a second run in the same minute overwrites its readings):

| metric | scope | value |
| --- | --- | --- |
| ``post.<name>`` (``post.likes``, ``post.engagement_rate``, ...) | ``published:<post id>`` | the post's reading |
| ``engagement_rate`` | ``platform:<p>|format:<f>`` and ``platform:<p>`` | mean over the posts with a rate |
| ``total.<name>`` | ``platform:<p>`` | sum over the posts read |

``sample_size`` is the number of posts behind a mean or total.

A post whose draft carries an A/B variant also reports its engagement rate as that test's outcome.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db import transaction

from apps.agents.models import PerformanceSnapshot
from apps.content.models import ContentDraft, PublishedContent
from apps.core.models import Platform
from apps.experiments.models import ABTest
from apps.experiments.services import outcomes_record
from apps.integrations.types import PostMetrics

ENGAGEMENT_RATE = "engagement_rate"


def engagement_rate(
    *, platform: str, metrics: Mapping[str, int], audience: int | None = None
) -> float | None:
    """The share of the people a post reached who engaged with it; None when the platform reports nothing to
    divide by.

    - X: (likes + reposts + replies + quotes) / impressions. Bookmarks are private to the person and are not
      engagement others see.
    - Telegram: (reactions + forwards) / views. The Bot API reports no views (only reaction counts), so posts
      read through it have no rate; the offline twin reports views.
    - Discord: no views exist, so a post's reactions and replies are normalised by ``audience``, the people
      active in the server lately (who wrote to us there in the last 30 days): the share of the active
      community that reacted or replied. One person may add several reactions, so a small server can exceed 1.
    """
    if platform == Platform.X:
        engaged = sum(metrics.get(name, 0) for name in ("likes", "reposts", "replies", "quotes"))
        reach = metrics.get("impressions", 0)
    elif platform == Platform.TELEGRAM:
        engaged = metrics.get("reactions", 0) + metrics.get("forwards", 0)
        reach = metrics.get("views", 0)
    elif platform == Platform.DISCORD:
        engaged = metrics.get("reactions", 0) + metrics.get("replies", 0)
        reach = audience or 0
    else:
        return None
    return engaged / reach if reach > 0 else None


@dataclass(frozen=True)
class MetricsRecordResult:
    posts_updated: int
    snapshots: int


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _variant_outcomes_record(posts: Sequence[PublishedContent], *, now: dt.datetime) -> int:
    """Each measured post whose draft carries an A/B variant reports its rate as the outcome of its plan's
    assignment (the key creation assigned it under): one query for the drafts, two to record, however many
    posts."""
    # By the posts' ids, not their draft_id: the caller may have loaded the posts without that column.
    rates = {post.pk: post.engagement_rate for post in posts if post.engagement_rate is not None}
    if not rates:
        return 0
    drafts = ContentDraft.objects.filter(published__in=list(rates), variant__isnull=False)
    values = {
        f"plan:{plan_id}": rates[post_id] for post_id, plan_id in drafts.values_list("published", "plan_id")
    }
    return outcomes_record(subject=ABTest.Subject.POST, metric=ENGAGEMENT_RATE, values=values, at=now)


def published_metrics_record(
    *,
    posts: Sequence[PublishedContent],
    fetched: Mapping[str, Sequence[PostMetrics]],
    now: dt.datetime,
    audience: Mapping[str, int] | None = None,
) -> MetricsRecordResult:
    """Store the metrics ``fetched`` per platform for ``posts``: each post's latest reading and rate, its
    history, and the run's means and totals per platform and format (see the module's docstring). A fixed
    number of queries however many posts: one bulk update of the posts, one bulk upsert of the snapshots,
    and the A/B outcomes of posts with a variant (a read and an upsert). Readings of posts not
    in ``posts`` are ignored; posts without a reading keep their last one and are left out of the aggregates.
    """
    audience = audience or {}
    captured_at = now.replace(second=0, microsecond=0)
    by_key = {(post.platform, post.external_id): post for post in posts}
    updated: list[PublishedContent] = []
    read: set[int] = set()
    for platform, readings in fetched.items():
        for reading in readings:
            post = by_key.get((platform, reading.external_id))
            if post is None or post.pk in read:
                continue
            read.add(post.pk)
            post.metrics = {name: int(value) for name, value in reading.metrics.items()}
            post.engagement_rate = engagement_rate(
                platform=platform, metrics=post.metrics, audience=audience.get(platform)
            )
            post.metrics_updated_at = now
            updated.append(post)

    snapshots: dict[tuple[str, str], PerformanceSnapshot] = {}

    def add(metric: str, scope: str, value: float, sample_size: int | None = None, **details: object) -> None:
        snapshots[(metric, scope)] = PerformanceSnapshot(
            metric=metric,
            scope=scope,
            value=float(value),
            sample_size=sample_size,
            captured_at=captured_at,
            details=details,
        )

    rates: dict[str, list[float]] = defaultdict(list)
    totals: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for post in updated:
        scope = f"published:{post.pk}"
        for name, value in post.metrics.items():
            add(f"post.{name}", scope, value)
            totals[post.platform][name].append(value)
        if post.engagement_rate is not None:
            add(f"post.{ENGAGEMENT_RATE}", scope, post.engagement_rate)
            rates[f"platform:{post.platform}|format:{post.format}"].append(post.engagement_rate)
            rates[f"platform:{post.platform}"].append(post.engagement_rate)
    for scope, values in rates.items():
        platform = scope.split("|")[0].removeprefix("platform:")
        extra = {"audience": audience[platform]} if platform in audience else {}
        add(ENGAGEMENT_RATE, scope, _mean(values), len(values), **extra)
    for platform, per_name in totals.items():
        for name, counts in per_name.items():
            add(f"total.{name}", f"platform:{platform}", sum(counts), len(counts))

    with transaction.atomic():
        if updated:
            PublishedContent.objects.bulk_update(
                updated, ["metrics", "engagement_rate", "metrics_updated_at"]
            )
            _variant_outcomes_record(updated, now=now)
        if snapshots:
            PerformanceSnapshot.objects.bulk_create(
                list(snapshots.values()),
                update_conflicts=True,
                unique_fields=["metric", "scope", "captured_at"],
                update_fields=["value", "sample_size", "details"],
            )
    return MetricsRecordResult(posts_updated=len(updated), snapshots=len(snapshots))
