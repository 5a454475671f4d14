"""Reads behind the portal pages: bounded, fully loaded lists, so a template cannot add queries.

Which rows are public is the domain's rule (``apps.market.selectors``, ``apps.content.selectors``); this
module only decides how many the home page shows and which columns it needs.
"""

from __future__ import annotations

from allauth.account.models import EmailAddress

from apps.accounts.models import User
from apps.content.models import PublishedContent
from apps.content.selectors import published_content_list
from apps.market.models import Insight
from apps.market.selectors import insight_list

HOME_LIST_LIMIT = 6


def insight_list_latest(*, limit: int = HOME_LIST_LIMIT) -> list[Insight]:
    """The newest insights a visitor may see."""
    # Only the shown columns: evidence can be a large JSON document the home page never needs.
    return list(
        insight_list().only("id", "type", "symbol", "timeframe", "confidence", "headline", "detected_at")[
            :limit
        ]
    )


def published_content_list_latest(*, limit: int = HOME_LIST_LIMIT) -> list[PublishedContent]:
    """The newest posts across every platform."""
    # Metrics and thread part ids can be large and the page shows neither.
    return list(published_content_list().only("id", "platform", "url", "text", "published_at")[:limit])


def user_primary_email_verified(*, user: User) -> bool:
    """Whether the address the member logs in with has been confirmed through the emailed link."""
    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()
