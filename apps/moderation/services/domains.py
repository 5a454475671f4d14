"""Blocked domains: the drainer feed and the project's seed list, kept in ``moderation_blocked_domains``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.integrations.drainer_feed import FeedEntry, get_drainer_feed, seed_feed
from apps.moderation.engine.text import normalise_domain
from apps.moderation.models import BlockedDomain

logger = logging.getLogger(__name__)

# Bumped whenever rules or blocked domains change, so every process reloads the engine's state.
ENGINE_VERSION_KEY = "moderation:engine:version"
CHUNK = 500


def engine_config_changed() -> None:
    """Tell every process to reload rules, blocked domains and protected names (after commit)."""
    transaction.on_commit(lambda: cache.set(ENGINE_VERSION_KEY, timezone.now().isoformat(), timeout=None))


def _normalised(entries: list[FeedEntry]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        domain = normalise_domain(entry.domain)
        if domain and "." in domain:
            out.setdefault(domain, entry.reason[:200])
    return out


def seed_domains() -> frozenset[str]:
    """The project's own list, normalised; the engine uses it even before the first refresh."""
    return frozenset(_normalised(seed_feed().fetch()))


@transaction.atomic
def blocked_domains_refresh() -> dict[str, Any]:
    """Fetch the configured feed and the seed list and bring the table in line: new domains added, listed ones
    (re)activated and marked seen, feed domains the feed no longer lists deactivated. Operators' own rows are
    never touched. A feed that fails raises (the caller retries); nothing is changed then."""
    feed = get_drainer_feed()
    seed = seed_feed()
    wanted: dict[str, tuple[str, str]] = {}
    for domain, reason in _normalised(seed.fetch()).items():
        wanted[domain] = (BlockedDomain.Source.SEED, reason)
    if feed.source != seed.source:
        for domain, reason in _normalised(feed.fetch()).items():
            wanted.setdefault(domain, (BlockedDomain.Source.FEED, reason))
    now = timezone.now()
    existing = {row.domain: row for row in BlockedDomain.objects.select_for_update()}
    added = reactivated = 0
    new_rows = []
    for domain, (source, reason) in wanted.items():
        row = existing.get(domain)
        if row is None:
            new_rows.append(
                BlockedDomain(domain=domain, source=source, reason=reason, is_active=True, last_seen_at=now)
            )
            added += 1
        elif row.source != BlockedDomain.Source.OPERATOR:
            reactivated += not row.is_active
    BlockedDomain.objects.bulk_create(new_rows, batch_size=1000)
    listed_sources = {BlockedDomain.Source.SEED, BlockedDomain.Source.FEED}
    # Chunked: a real feed lists hundreds of thousands of domains, more than one IN (...) may hold.
    seen_ids = [row.pk for d, row in existing.items() if d in wanted and row.source in listed_sources]
    dropped_ids = [
        row.pk
        for d, row in existing.items()
        if d not in wanted and row.source in listed_sources and row.is_active
    ]
    for i in range(0, len(seen_ids), CHUNK):
        BlockedDomain.objects.filter(pk__in=seen_ids[i : i + CHUNK]).update(is_active=True, last_seen_at=now)
    for i in range(0, len(dropped_ids), CHUNK):
        BlockedDomain.objects.filter(pk__in=dropped_ids[i : i + CHUNK]).update(is_active=False)
    dropped = len(dropped_ids)
    engine_config_changed()
    result = {
        "source": feed.source,
        "listed": len(wanted),
        "added": added,
        "reactivated": reactivated,
        "deactivated": dropped,
        "active": BlockedDomain.objects.filter(is_active=True).count(),
    }
    logger.info("blocked domains refreshed", extra=result)
    return result
