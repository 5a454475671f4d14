"""Writes to the content pipeline's rows."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.agents.models import PerformanceSnapshot
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
from apps.content.selectors import content_draft_waiting_list
from apps.core import live
from apps.core.live import DASHBOARD_GROUP
from apps.experiments.models import ABTest
from apps.experiments.services import exposure_record
from apps.integrations.types import PublishResult
from apps.market.models import Insight, InsightStatus


def content_draft_approve(*, draft_ids: Iterable[int], approved_by: User) -> int:
    """Approve the drafts still pending review; returns how many changed. Drafts in any other state are left
    alone, so approving twice (or racing the publisher) changes nothing."""
    now = timezone.now()
    return ContentDraft.objects.filter(pk__in=list(draft_ids), status=DraftStatus.PENDING_REVIEW).update(
        status=DraftStatus.APPROVED, approved_by=approved_by, approved_at=now, updated_at=now
    )


def content_draft_reject(*, draft_ids: Iterable[int]) -> int:
    """Reject the drafts still pending review; returns how many changed."""
    return ContentDraft.objects.filter(pk__in=list(draft_ids), status=DraftStatus.PENDING_REVIEW).update(
        status=DraftStatus.REJECTED, updated_at=timezone.now()
    )


# Drafts listed by name in one digest email; the rest are counted.
DIGEST_MAX_LISTED = 20


def content_drafts_announce_waiting(*, now: dt.datetime | None = None) -> int:
    """Tell the operators, once, about drafts that began waiting for their approval since the last digest: one
    ``drafts_waiting`` event on the live dashboard and one email to each active staff member with an address,
    however many drafts there are. Returns how many drafts this digest announced (0: nothing new, nothing
    sent). Periodic (beat, ``content.announce_waiting_drafts``).

    The drafts are marked in the same transaction that sends, so a failed send is tried again at the next
    tick, and two ticks at once announce each draft once (``skip_locked``)."""
    now = now or timezone.now()
    with transaction.atomic():
        new = list(
            content_draft_waiting_list()
            .filter(waiting_announced_at__isnull=True)
            .select_for_update(skip_locked=True, of=("self",))
            .only("id", "platform", "body", "created_at")
        )
        if not new:
            return 0
        waiting = content_draft_waiting_list().count()
        ContentDraft.objects.filter(pk__in=[draft.pk for draft in new]).update(waiting_announced_at=now)
        url = (
            reverse("admin:content_contentdraft_changelist") + f"?status__exact={DraftStatus.PENDING_REVIEW}"
        )
        _email_staff_waiting_drafts(new, waiting=waiting, url=settings.SITE_URL.rstrip("/") + url)
    live.broadcast(DASHBOARD_GROUP, "drafts_waiting", {"waiting": waiting, "new": len(new), "url": url})
    return len(new)


def _email_staff_waiting_drafts(new: list[ContentDraft], *, waiting: int, url: str) -> None:
    recipients = list(
        User.objects.filter(is_staff=True, is_active=True).exclude(email="").values_list("email", flat=True)
    )
    if not recipients:
        return
    noun = "draft waits" if len(new) == 1 else "drafts wait"
    subject = f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{len(new)} new {noun} for your approval"
    lines = [f"{len(new)} new {noun} for approval ({waiting} waiting in all):", ""]
    lines += [f"- {draft.get_platform_display()}: {draft.body[:100]}" for draft in new[:DIGEST_MAX_LISTED]]
    if len(new) > DIGEST_MAX_LISTED:
        lines.append(f"- and {len(new) - DIGEST_MAX_LISTED} more")
    lines += ["", f"Approve or reject them in the admin: {url}"]
    body = "\n".join(lines)
    # One message per operator: no operator sees the others' addresses.
    messages = [EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [email]) for email in recipients]
    get_connection(fail_silently=False).send_messages(messages)


def exclusive_content_publish(*, content_ids: Iterable[int]) -> int:
    """Put drafts (and archived pieces) in the members' library; returns how many changed. A piece published
    before keeps its first publication time."""
    now = timezone.now()
    return ExclusiveContent.objects.filter(
        pk__in=list(content_ids), status__in=[ExclusiveStatus.DRAFT, ExclusiveStatus.ARCHIVED]
    ).update(status=ExclusiveStatus.PUBLISHED, published_at=Coalesce("published_at", now), updated_at=now)


def exclusive_content_archive(*, content_ids: Iterable[int]) -> int:
    """Take pieces out of the members' library; returns how many changed."""
    return (
        ExclusiveContent.objects.filter(pk__in=list(content_ids))
        .exclude(status=ExclusiveStatus.ARCHIVED)
        .update(status=ExclusiveStatus.ARCHIVED, updated_at=timezone.now())
    )


@dataclass(frozen=True)
class PeriodicPieceSpec:
    """A periodic members' piece (the weekly market report), ready to go into the library."""

    kind: str
    period_start: dt.date
    title: str
    slug: str
    summary: str
    body: str
    media_ids: Sequence[int]


def exclusive_content_publish_periodic(
    *, spec: PeriodicPieceSpec, now: dt.datetime
) -> tuple[ExclusiveContent, bool]:
    """Put the period's piece in the library, published, with its media; or, when the period already has
    its piece (``exclusive_one_report_per_period`` decides a race), return that one untouched. The second
    value says whether the piece was created now."""
    existing = ExclusiveContent.objects.filter(kind=spec.kind, period_start=spec.period_start).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            piece = ExclusiveContent.objects.create(
                kind=spec.kind,
                period_start=spec.period_start,
                title=spec.title[:200],
                slug=spec.slug,
                summary=spec.summary[:500],
                body=spec.body,
                status=ExclusiveStatus.PUBLISHED,
                published_at=now,
            )
            if spec.media_ids:
                piece.media.set(list(spec.media_ids))
                # Attached to a members' piece, a file is members' only wherever else it turns up.
                Media.objects.filter(pk__in=list(spec.media_ids), is_exclusive=False).update(
                    is_exclusive=True, updated_at=now
                )
    except IntegrityError:
        existing = ExclusiveContent.objects.filter(kind=spec.kind, period_start=spec.period_start).first()
        if existing is None:
            raise  # not the period's constraint (the slug is taken by another piece): the operator's to see
        return existing, False
    return piece, True


def published_content_record_announcement(
    *, content_id: int, platform: str, result: PublishResult, text: str, now: dt.datetime
) -> PublishedContent:
    """Record a library piece's announcement in the members' channel of a platform: members-only, so it
    never shows in the public feeds. Recording the same post (or a second announcement of the piece on the
    platform) returns the first row."""
    try:
        with transaction.atomic():
            announcement, _ = PublishedContent.objects.get_or_create(
                platform=platform,
                external_id=result.external_id,
                defaults={
                    "audience": Audience.MEMBERS,
                    "exclusive_content_id": content_id,
                    "format": ContentFormat.SINGLE_POST,
                    "part_ids": list(result.part_ids) or [result.external_id],
                    "url": result.url,
                    "text": text,
                    "published_at": now,
                },
            )
    except IntegrityError:
        return PublishedContent.objects.get(exclusive_content_id=content_id, platform=platform)
    return announcement


# --- the content pipeline: plans ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanSpec:
    """One plan the strategist wants for an insight."""

    platform: str
    format: str
    scheduled_for: dt.datetime
    priority: float
    weights: dict[str, Any]
    topic: str


def insight_expire(*, insight_ids: Iterable[int]) -> int:
    """Mark new insights that were never planned and are past their time as expired; returns how many."""
    return Insight.objects.filter(pk__in=list(insight_ids), status=InsightStatus.NEW).update(
        status=InsightStatus.EXPIRED, updated_at=timezone.now()
    )


@transaction.atomic
def content_plans_create_for_insight(*, insight_id: int, plans: Sequence[PlanSpec]) -> list[ContentPlan]:
    """Plan an insight once: moves it from new to planned and creates its plans (one per platform), or does
    nothing and returns [] when it is not new any more (another strategist got there first, or it was
    planned before). Both happen in one transaction, so an insight is never planned without its plans."""
    platforms = [p.platform for p in plans]
    if not plans or len(set(platforms)) != len(platforms):
        raise ValueError(f"an insight gets at most one plan per platform, not {platforms}")
    if ContentPlan.objects.filter(insight_id=insight_id).exists():
        # Put back to new by hand after it was planned: still never planned twice.
        return []
    if not Insight.objects.filter(pk=insight_id, status=InsightStatus.NEW).update(
        status=InsightStatus.PLANNED, updated_at=timezone.now()
    ):
        return []
    return ContentPlan.objects.bulk_create(
        [
            ContentPlan(
                insight_id=insight_id,
                platform=spec.platform,
                format=spec.format,
                topic=spec.topic[:200],
                scheduled_for=spec.scheduled_for,
                priority=spec.priority,
                weights=spec.weights,
                status=PlanStatus.PLANNED,
            )
            for spec in plans
        ]
    )


def content_plan_create_repurposing(
    *,
    source: PublishedContent,
    insight_id: int,
    platform: str,
    format: str,
    scheduled_for: dt.datetime,
    priority: float,
    weights: dict[str, Any],
    topic: str,
) -> ContentPlan | None:
    """A plan that turns a published post into another format; None when that post was already repurposed
    into this platform and format (the ``content_plans_repurpose_once`` constraint decides a race)."""
    try:
        with transaction.atomic():
            return ContentPlan.objects.create(
                insight_id=insight_id,
                repurposed_from=source,
                platform=platform,
                format=format,
                topic=topic[:200],
                scheduled_for=scheduled_for,
                priority=priority,
                weights=weights,
            )
    except IntegrityError:
        return None


def content_plan_create_digest(
    *,
    platform: str,
    week: str,
    insight_ids: Sequence[int],
    scheduled_for: dt.datetime,
    priority: float,
    topic: str,
) -> ContentPlan:
    """The weekly digest plan of one platform: the insights it covers, in order, are in its weights."""
    return ContentPlan.objects.create(
        platform=platform,
        format=ContentFormat.DIGEST,
        topic=topic[:200],
        scheduled_for=scheduled_for,
        priority=priority,
        weights={"digest_week": week, "insight_ids": list(insight_ids)},
    )


def content_plan_cancel(*, plan_ids: Iterable[int]) -> int:
    """Cancel plans that have not been drafted yet; returns how many changed."""
    return ContentPlan.objects.filter(pk__in=list(plan_ids), status=PlanStatus.PLANNED).update(
        status=PlanStatus.CANCELLED, updated_at=timezone.now()
    )


# --- drafts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftSpec:
    """A written, checked post, ready to be stored as the draft of a plan."""

    body: str
    parts: list[str]
    embed: dict[str, Any]
    generator: str
    checks: dict[str, Any]
    variant_id: int | None
    approved: bool


@transaction.atomic
def content_draft_create(*, plan_id: int, spec: DraftSpec) -> ContentDraft | None:
    """Store the draft of a plan and move the plan from planned to drafted; None (and nothing written) when
    the plan is not planned any more, so a plan is drafted once however many writers race for it."""
    now = timezone.now()
    if not ContentPlan.objects.filter(pk=plan_id, status=PlanStatus.PLANNED).update(
        status=PlanStatus.DRAFTED, updated_at=now
    ):
        return None
    plan = ContentPlan.objects.get(pk=plan_id)
    return ContentDraft.objects.create(
        plan=plan,
        platform=plan.platform,
        format=plan.format,
        body=spec.body,
        parts=spec.parts,
        embed=spec.embed,
        generator=spec.generator,
        checks=spec.checks,
        variant_id=spec.variant_id,
        status=DraftStatus.APPROVED if spec.approved else DraftStatus.PENDING_REVIEW,
        approved_at=now if spec.approved else None,
    )


# --- media --------------------------------------------------------------------------------------------------


def media_chart_store(
    *, png: bytes, width: int, height: int, alt_text: str, name: str, exclusive: bool = False
) -> Media:
    """Store a chart card, or return the stored one with the same bytes (charts are rendered
    deterministically, so the same data never makes a second file). An ``exclusive`` card is served to
    entitled members only, and is never found again as a public one (nor the other way round)."""
    sha = hashlib.sha256(png).hexdigest()
    existing = (
        Media.objects.filter(kind=Media.Kind.CHART, sha256=sha, is_exclusive=exclusive).order_by("pk").first()
    )
    if existing is not None:
        return existing
    media = Media(
        kind=Media.Kind.CHART,
        content_type="image/png",
        width=width,
        height=height,
        size_bytes=len(png),
        sha256=sha,
        alt_text=alt_text[:300],
        is_exclusive=exclusive,
    )
    media.file.save(name, ContentFile(png), save=False)
    media.save()
    return media


_IMAGE_ATTACHABLE = (DraftStatus.PENDING_REVIEW, DraftStatus.APPROVED)


def content_draft_attach_image(*, draft_ids: Iterable[int], media_id: int) -> int:
    """Give drafts that have no image yet (and are not on their way out) the chart; returns how many."""
    return ContentDraft.objects.filter(
        pk__in=list(draft_ids), image__isnull=True, status__in=_IMAGE_ATTACHABLE
    ).update(image_id=media_id, updated_at=timezone.now())


# --- publishing ---------------------------------------------------------------------------------------------
#
# A draft goes approved → publishing (claimed, before the platform is called) → published, or back to approved
# (a transient error: tried again later), or failed. Each move is a conditional UPDATE, so of two workers only
# one ever calls the platform for a draft, and a draft left in publishing by a worker that died mid-call is
# never sent again blindly (see the publishing agent).

PUBLISHED_NOTE_KEY = "published"
# The analytics agent's series of mean engagement rates per platform and format, and the A/B metric a post's
# own rate is recorded under (apps.experiments.metrics).
ENGAGEMENT_RATE = "engagement_rate"


def content_draft_claim_for_publishing(*, draft_id: int) -> bool:
    """Move an approved draft to publishing; False when someone else has it (or it is not approved)."""
    return bool(
        ContentDraft.objects.filter(pk=draft_id, status=DraftStatus.APPROVED).update(
            status=DraftStatus.PUBLISHING,
            publish_attempts=F("publish_attempts") + 1,
            updated_at=timezone.now(),
        )
    )


def content_draft_release(*, draft_id: int, error: str, count_attempt: bool = True) -> bool:
    """Put a draft whose publishing failed transiently back to approved, to be tried on a later run.
    ``count_attempt=False`` when the platform was never called (rate limited, circuit open)."""
    changes: dict[str, Any] = {
        "status": DraftStatus.APPROVED,
        "last_error": error,
        "updated_at": timezone.now(),
    }
    if not count_attempt:
        changes["publish_attempts"] = Greatest(F("publish_attempts") - 1, 0)
    return bool(ContentDraft.objects.filter(pk=draft_id, status=DraftStatus.PUBLISHING).update(**changes))


def content_draft_fail(*, draft_id: int, error: str, from_statuses: Sequence[str]) -> bool:
    """Give up on a draft; ``error`` tells the operator what happened and what to check."""
    return bool(
        ContentDraft.objects.filter(pk=draft_id, status__in=list(from_statuses)).update(
            status=DraftStatus.FAILED, last_error=error, updated_at=timezone.now()
        )
    )


def _result_note(result: PublishResult) -> dict[str, Any]:
    return {"external_id": result.external_id, "url": result.url, "part_ids": list(result.part_ids)}


def content_draft_note_unrecorded(*, draft_id: int, result: PublishResult, error: str) -> bool:
    """Remember on the draft, still in publishing, that the platform accepted it as ``result`` although
    recording that failed: the next publishing run records it without calling the platform again."""
    draft = ContentDraft.objects.filter(pk=draft_id).only("checks").first()
    if draft is None:
        return False
    return bool(
        ContentDraft.objects.filter(pk=draft_id, status=DraftStatus.PUBLISHING).update(
            checks={**draft.checks, PUBLISHED_NOTE_KEY: _result_note(result)},
            last_error=f"published as {result.external_id} {result.url}, but recording it failed: {error}",
            updated_at=timezone.now(),
        )
    )


@transaction.atomic
def content_draft_record_published(
    *, draft_id: int, result: PublishResult, now: dt.datetime
) -> PublishedContent | None:
    """Record what the platform accepted: the PublishedContent row, the draft and its plan published, the
    insight used. None (nothing written) when the draft is neither publishing nor failed: a draft failed as
    "outcome unknown" whose call then turns out to have gone through is published after all. Recording the
    same platform id twice returns the first row."""
    recordable = [DraftStatus.PUBLISHING, DraftStatus.FAILED]
    draft = (
        ContentDraft.objects.select_for_update()
        .select_related("plan")
        .filter(pk=draft_id, status__in=recordable)
        .first()
    )
    if draft is None:
        return None
    published, _ = PublishedContent.objects.get_or_create(
        platform=draft.platform,
        external_id=result.external_id,
        defaults={
            "draft": draft,
            "format": draft.format,
            "part_ids": list(result.part_ids) or [result.external_id],
            "url": result.url,
            "text": draft.body,
            "published_at": now,
        },
    )
    checks = {k: v for k, v in draft.checks.items() if k != PUBLISHED_NOTE_KEY}
    ContentDraft.objects.filter(pk=draft.pk, status__in=recordable).update(
        status=DraftStatus.PUBLISHED, checks=checks, last_error="", updated_at=now
    )
    ContentPlan.objects.filter(pk=draft.plan_id).exclude(status=PlanStatus.PUBLISHED).update(
        status=PlanStatus.PUBLISHED, updated_at=now
    )
    if draft.plan.insight_id is not None:
        Insight.objects.filter(
            pk=draft.plan.insight_id, status__in=[InsightStatus.NEW, InsightStatus.PLANNED]
        ).update(status=InsightStatus.USED, updated_at=now)
    if draft.variant_id is not None:
        # The variant is now shown: its assignment (keyed by the plan, as creation asked) counts from here.
        baseline = _engagement_baseline(platform=draft.platform, post_format=draft.format, before=now)
        exposure_record(
            subject=ABTest.Subject.POST,
            subject_key=f"plan:{draft.plan_id}",
            at=now,
            pre_values={ENGAGEMENT_RATE: baseline} if baseline is not None else None,
        )
    return published


def _engagement_baseline(*, platform: str, post_format: str, before: dt.datetime) -> float | None:
    """The latest mean engagement rate of the platform and format before ``before``: the post's pre-period
    value for CUPED, which takes out what the platform and format explain of its own rate."""
    return (
        PerformanceSnapshot.objects.filter(
            metric=ENGAGEMENT_RATE,
            scope=f"platform:{platform}|format:{post_format}",
            captured_at__lte=before,
        )
        .order_by("-captured_at")
        .values_list("value", flat=True)
        .first()
    )
