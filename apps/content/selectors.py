"""Reads of the content pipeline's rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet

from apps.content.models import (
    Audience,
    ContentDraft,
    ContentFormat,
    ContentPlan,
    DraftStatus,
    ExclusiveContent,
    ExclusiveStatus,
    Media,
    PlanStatus,
    PublishedContent,
)
from apps.market.models import Insight, InsightStatus


def published_content_list(*, platform: str | None = None) -> QuerySet[PublishedContent]:
    """What went out publicly on the platforms, newest first. Posts to the members' private channels are
    members' business and never listed here (nor anywhere public)."""
    posts = PublishedContent.objects.filter(audience=Audience.PUBLIC)
    if platform is not None:
        posts = posts.filter(platform=platform)
    # The id breaks ties between posts published in the same instant, so pages never overlap.
    return posts.order_by("-published_at", "-id")


# The members' library opens with this entitlement; a piece may ask for another (``portal.elite``) on top.
LIBRARY_ENTITLEMENT = "portal.premium"
# Long enough for any title; a longer query string is someone probing, not searching.
LIBRARY_SEARCH_MAX_LENGTH = 100
# What anyone may see of a piece: the marketing, never the body or its media.
_TEASER_FIELDS = ("id", "slug", "title", "kind", "summary", "required_entitlement", "published_at")


def exclusive_content_teaser_list(*, search: str = "") -> QuerySet[ExclusiveContent]:
    """Published members-only pieces, newest first, with only their public columns loaded.

    The search matches titles and summaries alone: matching bodies would let anyone probe what members read.
    """
    pieces = ExclusiveContent.objects.filter(status=ExclusiveStatus.PUBLISHED).only(*_TEASER_FIELDS)
    search = search.strip()[:LIBRARY_SEARCH_MAX_LENGTH]
    if search:
        pieces = pieces.filter(Q(title__icontains=search) | Q(summary__icontains=search))
    return pieces.order_by("-published_at", "-id")


def exclusive_content_list_published() -> QuerySet[ExclusiveContent]:
    """Published pieces in full with their media, newest first; drafts and archived pieces do not exist for
    readers. Who may read which is the caller's check of ``required_entitlement``."""
    return (
        ExclusiveContent.objects.filter(status=ExclusiveStatus.PUBLISHED)
        .prefetch_related(Prefetch("media", queryset=Media.objects.order_by("id")))
        .order_by("-published_at", "-id")
    )


def exclusive_content_list_readable(*, entitlement_keys: Collection[str]) -> QuerySet[ExclusiveContent]:
    """The published pieces a holder of these entitlement keys may read."""
    return exclusive_content_list_published().filter(required_entitlement__in=list(entitlement_keys))


def exclusive_content_get_published(*, slug: str) -> ExclusiveContent | None:
    return exclusive_content_list_published().filter(slug=slug).first()


@dataclass(frozen=True)
class MemberFile:
    """A members-only media file and the entitlement keys, any one of which opens it."""

    media: Media
    opened_by: frozenset[str]


def member_file_get(*, media_id: int) -> MemberFile | None:
    """The file if members may fetch it, else None.

    A file attached to exclusive pieces is opened by what any of its published pieces asks for; attached only to
    drafts or archived pieces it is nobody's yet (or any more). A file marked exclusive on its own needs the
    library entitlement. Any other file is not a members' file and is not served this way.
    """
    media = Media.objects.filter(pk=media_id).first()
    if media is None:
        return None
    attachments = list(
        ExclusiveContent.objects.filter(media=media).values_list("status", "required_entitlement")
    )
    if attachments:
        opened_by = frozenset(key for status, key in attachments if status == ExclusiveStatus.PUBLISHED)
        return MemberFile(media=media, opened_by=opened_by) if opened_by else None
    if media.is_exclusive:
        return MemberFile(media=media, opened_by=frozenset({LIBRARY_ENTITLEMENT}))
    return None


# --- the content pipeline -----------------------------------------------------------------------------------


def insight_list_plannable(*, now: dt.datetime, max_age_hours: float, limit: int) -> list[Insight]:
    """New insights the strategist may plan: fresh, not expired, never planned; most confident first."""
    return list(
        Insight.objects.filter(
            status=InsightStatus.NEW, detected_at__gte=now - dt.timedelta(hours=max_age_hours)
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .exclude(content_plans__isnull=False)
        .order_by("-confidence", "-detected_at", "-id")[:limit]
    )


def insight_ids_gone_stale(*, now: dt.datetime, max_age_hours: float) -> list[int]:
    """New insights whose time passed before anyone planned them."""
    return list(
        Insight.objects.filter(status=InsightStatus.NEW)
        .filter(Q(expires_at__lte=now) | Q(detected_at__lt=now - dt.timedelta(hours=max_age_hours)))
        .values_list("pk", flat=True)
    )


_ACTIVE_PLAN_STATUSES = (PlanStatus.PLANNED, PlanStatus.DRAFTED, PlanStatus.PUBLISHED)


def content_plan_bookings(
    *, platforms: Collection[str], since: dt.datetime, until: dt.datetime
) -> dict[str, list[dt.datetime]]:
    """When each platform already has a post planned in [since, until) (cancelled and failed plans free
    their slot)."""
    rows = ContentPlan.objects.filter(
        platform__in=list(platforms),
        status__in=_ACTIVE_PLAN_STATUSES,
        scheduled_for__gte=since,
        scheduled_for__lt=until,
    ).values_list("platform", "scheduled_for")
    booked: dict[str, list[dt.datetime]] = {p: [] for p in platforms}
    for platform, when in rows:
        booked[platform].append(when)
    return booked


def content_plan_list_due(*, until: dt.datetime, limit: int) -> list[ContentPlan]:
    """Plans still to be drafted that are due by ``until``, soonest (then most important) first."""
    return list(
        ContentPlan.objects.filter(status=PlanStatus.PLANNED, scheduled_for__lte=until)
        .select_related("insight", "repurposed_from")
        .order_by("scheduled_for", "-priority", "id")[:limit]
    )


def insight_digest_items(*, insight_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The insights a digest covers, in the given order, as the writer's digest evidence expects them."""
    found = {i.pk: i for i in Insight.objects.filter(pk__in=list(insight_ids))}
    return [
        {"insight_type": found[pk].type, "symbol": found[pk].symbol, "evidence": found[pk].evidence}
        for pk in insight_ids
        if pk in found
    ]


def content_draft_list_needing_chart(*, formats: Collection[str], limit: int) -> list[ContentDraft]:
    """Drafts of an insight whose format shows a chart and that have none yet, oldest first."""
    return list(
        ContentDraft.objects.filter(
            image__isnull=True,
            format__in=list(formats),
            status__in=[DraftStatus.PENDING_REVIEW, DraftStatus.APPROVED],
            plan__insight__isnull=False,
        )
        .select_related("plan__insight")
        .order_by("created_at", "id")[:limit]
    )


def media_chart_for_insight(*, insight_id: int) -> Media | None:
    """The chart card already made for an insight (attached to a draft of any of its plans)."""
    return (
        Media.objects.filter(kind=Media.Kind.CHART, drafts__plan__insight_id=insight_id)
        .order_by("pk")
        .first()
    )


def content_draft_list_publishable(
    *, now: dt.datetime, platforms: Collection[str], limit: int
) -> list[ContentDraft]:
    """Approved drafts whose plan is due, by platform: the longest overdue (then most important) first."""
    return list(
        ContentDraft.objects.filter(
            status=DraftStatus.APPROVED, platform__in=list(platforms), plan__scheduled_for__lte=now
        )
        .select_related("plan__insight", "image")
        .order_by("plan__scheduled_for", "-plan__priority", "id")[:limit]
    )


def content_draft_list_unsettled(
    *, platforms: Collection[str], lease_expired_before: dt.datetime
) -> list[ContentDraft]:
    """Drafts left in publishing: those whose platform call is known to have succeeded without being
    recorded, and those whose call started before ``lease_expired_before`` and never came back."""
    return list(
        ContentDraft.objects.filter(status=DraftStatus.PUBLISHING, platform__in=list(platforms))
        .filter(Q(checks__has_key="published") | Q(updated_at__lt=lease_expired_before))
        .select_related("plan", "image")
        .order_by("updated_at", "id")
    )


def published_content_count_since(*, since: dt.datetime, until: dt.datetime | None = None) -> dict[str, int]:
    """Public posts published per platform from ``since`` up to ``until`` (what the daily caps count: an
    announcement in a members' channel takes no public slot)."""
    window = {"published_at__lt": until} if until is not None else {}
    rows = (
        PublishedContent.objects.filter(published_at__gte=since, audience=Audience.PUBLIC, **window)
        .values("platform")
        .annotate(n=Count("id"))
        .values_list("platform", "n")
    )
    return dict(rows)


def published_content_list_best(
    *, since: dt.datetime, min_engagement_rate: float, limit: int
) -> list[PublishedContent]:
    """The best-engaging posts published since ``since`` that came from an insight's own plan (not from a
    digest, nor from an earlier repurposing), best first."""
    return list(
        PublishedContent.objects.filter(
            published_at__gte=since,
            engagement_rate__isnull=False,
            engagement_rate__gte=min_engagement_rate,
            draft__plan__insight__isnull=False,
            draft__plan__repurposed_from__isnull=True,
        )
        .exclude(format=ContentFormat.DIGEST)
        .select_related("draft__plan__insight")
        .order_by("-engagement_rate", "-published_at", "-id")[:limit]
    )


def content_plan_repurposed_targets(*, post_ids: Collection[int]) -> set[tuple[int, str, str]]:
    """(post id, platform, format) of every repurposing already planned from these posts."""
    return set(
        ContentPlan.objects.filter(repurposed_from_id__in=list(post_ids)).values_list(
            "repurposed_from_id", "platform", "format"
        )
    )


def insight_planned_platforms(*, insight_ids: Collection[int]) -> dict[int, set[str]]:
    """The platforms each insight already has a plan on (whatever became of it)."""
    covered: dict[int, set[str]] = {}
    for insight_id, platform in ContentPlan.objects.filter(insight_id__in=list(insight_ids)).values_list(
        "insight_id", "platform"
    ):
        covered.setdefault(insight_id, set()).add(platform)
    return covered


def content_plan_digest_exists(*, platform: str, week: str) -> bool:
    return ContentPlan.objects.filter(
        platform=platform, format=ContentFormat.DIGEST, weights__digest_week=week
    ).exists()


def insight_list_for_digest(*, since: dt.datetime, until: dt.datetime, limit: int) -> list[Insight]:
    """The week's top insights: the most confident one of each (symbol, type), best first. Discarded ones
    were noise and never make a digest."""
    best: dict[tuple[str, str], Insight] = {}
    for insight in (
        Insight.objects.filter(detected_at__gte=since, detected_at__lt=until)
        .exclude(status=InsightStatus.DISCARDED)
        .order_by("-confidence", "-detected_at", "-id")
    ):
        best.setdefault((insight.symbol, insight.type), insight)
        if len(best) >= limit:
            break
    return list(best.values())


# --- the weekly members' report -----------------------------------------------------------------------------


def exclusive_content_get_for_period(*, kind: str, period_start: dt.date) -> ExclusiveContent | None:
    """The periodic piece of this kind for the period, whatever its status."""
    return ExclusiveContent.objects.filter(kind=kind, period_start=period_start).first()


def insight_list_for_report(*, since: dt.datetime, until: dt.datetime, limit: int) -> list[Insight]:
    """The period's insights, most confident first (at most ``limit``). Discarded ones were noise and never
    make a report."""
    return list(
        Insight.objects.filter(detected_at__gte=since, detected_at__lt=until)
        .exclude(status=InsightStatus.DISCARDED)
        .only("id", "type", "symbol", "timeframe", "confidence", "headline", "evidence", "detected_at")
        .order_by("-confidence", "-detected_at", "-id")[:limit]
    )


def exclusive_content_announced_platforms(*, content_id: int) -> set[str]:
    """The platforms a library piece has already been announced on."""
    return set(
        PublishedContent.objects.filter(exclusive_content_id=content_id).values_list("platform", flat=True)
    )


def content_draft_waiting_list() -> QuerySet[ContentDraft]:
    """Drafts waiting for an operator's approval (platforms not in CONTENT_AUTO_APPROVE_PLATFORMS), oldest
    first: the order an operator works through them."""
    return ContentDraft.objects.filter(status=DraftStatus.PENDING_REVIEW).order_by("created_at", "id")


def content_draft_waiting_count() -> int:
    return content_draft_waiting_list().count()


@dataclass(frozen=True)
class PostEngagement:
    """A public post's measured engagement with what it was planned as: the plan's arm (None for plans made
    without arms) and the payload of the A/B variant that wrote it (None without one)."""

    platform: str
    format: str
    engagement_rate: float
    published_at: dt.datetime
    arm: dict[str, Any] | None
    variant_payload: Any


def published_engagement_list(*, since: dt.datetime) -> list[PostEngagement]:
    """Public posts published since ``since`` whose engagement has been measured, oldest first (one query)."""
    rows = (
        PublishedContent.objects.filter(
            audience=Audience.PUBLIC, engagement_rate__isnull=False, published_at__gte=since
        )
        .order_by("published_at", "id")
        .values(
            "platform",
            "format",
            "engagement_rate",
            "published_at",
            "draft__plan__weights",
            "draft__variant__payload",
        )
    )
    return [
        PostEngagement(
            platform=row["platform"],
            format=row["format"],
            # Never None here (filtered); ``or`` tells the type checker so.
            engagement_rate=row["engagement_rate"] or 0.0,
            published_at=row["published_at"],
            arm=_arm(row["draft__plan__weights"]),
            variant_payload=row["draft__variant__payload"],
        )
        for row in rows
    ]


def _arm(weights: Any) -> dict[str, Any] | None:
    arm = weights.get("arm") if isinstance(weights, dict) else None
    return arm if isinstance(arm, dict) else None
