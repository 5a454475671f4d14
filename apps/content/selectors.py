"""Reads of the content pipeline's rows."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.content.models import PublishedContent


def published_content_list(*, platform: str | None = None) -> QuerySet[PublishedContent]:
    """What went out on the platforms, newest first."""
    posts = PublishedContent.objects.all()
    if platform is not None:
        posts = posts.filter(platform=platform)
    # The id breaks ties between posts published in the same instant, so pages never overlap.
    return posts.order_by("-published_at", "-id")
