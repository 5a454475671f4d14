"""Mentions of the creator's X account (replies to its posts included), read incrementally: each read asks only
for posts newer than ``since_id``, the newest one the previous read saw, which the caller keeps durably
(``apps.bots.x``). The real reader is the X publisher's tweepy client (its circuit breaker, rate limiter and
mentions bucket); the offline twin plays the outbox audience's replies and mentions.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from apps.integrations.publishers import get_publisher
from apps.integrations.types import InboundEvent

MENTION_PAGES = 8  # 800 mentions a read at most; the rest come with the next read


@dataclass(frozen=True, slots=True)
class MentionsPage:
    events: tuple[InboundEvent, ...]  # oldest first, none of them the account's own
    newest_id: str  # the id to pass as ``since_id`` next time ("" when nothing new)


def _newer(post_id: str, than: str) -> bool:
    if post_id.isdigit() and than.isdigit():
        return int(post_id) > int(than)
    return post_id > than


def fetch_mentions(*, since_id: str = "") -> MentionsPage:
    if settings.X_BACKEND != "api":
        played = get_publisher("x").fetch_inbound(since=None)
        fresh = [e for e in played if not since_id or _newer(e.external_id, since_id)]
        newest = max((e.external_id for e in fresh), key=lambda i: (len(i), i), default="")
        return MentionsPage(tuple(sorted(fresh, key=lambda e: (e.occurred_at, e.external_id))), newest)

    from apps.integrations.publishers.x import XPublisher

    publisher = XPublisher.from_settings()
    # The publisher's own reads: the same account, client, breaker and rate-limit buckets.
    me = publisher._my_user_id()
    events, newest = publisher.mentions(since_id=since_id, pages=MENTION_PAGES)
    mine = [e for e in events if e.author_id != me]
    return MentionsPage(tuple(sorted(mine, key=lambda e: (e.occurred_at, e.external_id))), newest)
