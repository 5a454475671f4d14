"""Writes to the content pipeline's rows."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.accounts.models import User
from apps.content.models import ContentDraft, DraftStatus, ExclusiveContent, ExclusiveStatus


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
