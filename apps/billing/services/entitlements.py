"""The entitlement ledger: the one record of who may use what, and the only writer of it.

A subscription's rows are derived from its current state, never accumulated from events, so applying the same
state twice changes nothing and events may arrive in any order:

- trialing: source ``trial`` until ``trial_end``;
- active: source ``subscription`` until ``current_period_end``;
- both plus ``RENEWAL_LEEWAY`` when a renewal is expected (not cancelling at the period end): Stripe
  tells us about the next period by webhook, after the boundary, and a member must not lose the Discord role
  or be removed from the Telegram channel in the minutes (or, during an outage, hours) that takes;
- past_due: source ``grace`` for the plan's ``grace_days`` from ``past_due_since``, for every key or only the
  plan's ``grace_entitlement_keys``;
- canceled: ends now, unless it has not ended yet: then until its ``ended_at`` (when in the future), or, set
  to cancel at the period end and with no ``ended_at``, until ``current_period_end``;
- unpaid, incomplete, incomplete_expired, paused: ends now.

There is at most one live row per subscription, source and key: a change of dates moves that row's
``ends_at``; a change of source or a key the plan no longer grants ends the row. A revoked row is history: an
operator's or a refund's revocation holds for the period it fell in, and only a new period grants again.

Every change to a key that lives on a platform (a Discord role, a Telegram channel) marks the row
``pending`` and, once the transaction commits, enqueues ``billing.sync_entitlement`` for it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import (
    Entitlement,
    EntitlementSource,
    Subscription,
    SubscriptionStatus,
    SyncStatus,
)

logger = logging.getLogger(__name__)

RENEWAL_LEEWAY = dt.timedelta(days=1)
PLATFORM_KEY_PREFIXES = ("discord.role:", "telegram.channel:")
ENTITLEMENT_KEY = re.compile(
    r"^(portal\.[a-z][a-z0-9_]*|discord\.role:\d{1,20}|telegram\.channel:(-?\d{1,20}|@[A-Za-z0-9_]{5,32}))$"
)

ChangeAction = Literal["granted", "extended", "shortened", "ended", "revoked"]


@dataclass(frozen=True, slots=True)
class EntitlementChange:
    entitlement_id: int
    key: str
    action: ChangeAction
    ends_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class _Grant:
    """What a subscription's state calls for: these keys, from this source, until then. ``window_start``
    opens the period the grant belongs to; a revocation inside it holds."""

    source: EntitlementSource
    keys: tuple[str, ...]
    ends_at: dt.datetime
    window_start: dt.datetime | None


def is_platform_key(key: str) -> bool:
    return key.startswith(PLATFORM_KEY_PREFIXES)


def entitlement_key_validate(key: str) -> str:
    key = key.strip()
    if not ENTITLEMENT_KEY.match(key):
        raise ValidationError(
            "%(key)s is not an entitlement key: use portal.<name>, discord.role:<role id> or "
            "telegram.channel:<chat id>",
            params={"key": key},
            code="invalid_key",
        )
    return key


def _plan_keys(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k for k in keys if isinstance(k, str) and k))


def _grant_for(subscription: Subscription, *, now: dt.datetime) -> _Grant | None:
    plan = subscription.plan
    keys = _plan_keys(plan.entitlement_keys)
    status = subscription.status
    period_end = subscription.current_period_end
    leeway = dt.timedelta(0) if subscription.cancel_at_period_end else RENEWAL_LEEWAY
    grant: _Grant | None = None
    if status == SubscriptionStatus.TRIALING:
        trial_end = subscription.trial_end or period_end
        if trial_end is not None:
            grant = _Grant(
                EntitlementSource.TRIAL, keys, trial_end + leeway, subscription.current_period_start
            )
    elif status == SubscriptionStatus.ACTIVE:
        if period_end is not None:
            grant = _Grant(
                EntitlementSource.SUBSCRIPTION, keys, period_end + leeway, subscription.current_period_start
            )
    elif status == SubscriptionStatus.PAST_DUE:
        if plan.grace_days and subscription.past_due_since is not None:
            kept = set(_plan_keys(plan.grace_entitlement_keys))
            grace_keys = tuple(k for k in keys if k in kept) if kept else keys
            grant = _Grant(
                EntitlementSource.GRACE,
                grace_keys,
                subscription.past_due_since + dt.timedelta(days=plan.grace_days),
                subscription.past_due_since,
            )
    elif status == SubscriptionStatus.CANCELED:
        # Canceled but not yet ended: until the end Stripe gives, or the period's end when it was set to
        # cancel then. One that has ended (Stripe's usual canceled subscription) grants nothing.
        until = subscription.ended_at or (period_end if subscription.cancel_at_period_end else None)
        if until is not None:
            grant = _Grant(EntitlementSource.SUBSCRIPTION, keys, until, subscription.current_period_start)
    if grant is None or grant.ends_at <= now or not grant.keys:
        return None
    return grant


def entitlements_sync_for_subscription(
    *, subscription: Subscription, now: dt.datetime | None = None
) -> list[EntitlementChange]:
    """Make the subscription's rows in the ledger what its current state calls for; returns what changed
    (nothing, when run twice)."""
    now = now or timezone.now()
    with transaction.atomic():
        # The subscription's row lock serialises every writer of its entitlements.
        sub = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
        grant = _grant_for(sub, now=now)
        live = list(
            Entitlement.objects.select_for_update()
            .filter(subscription=sub, revoked_at__isnull=True)
            .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
            .order_by("starts_at", "id")
        )
        changes: list[EntitlementChange] = []
        kept: set[str] = set()
        for row in live:
            if grant and row.source == grant.source and row.key in grant.keys and row.key not in kept:
                kept.add(row.key)
                if row.ends_at != grant.ends_at:
                    grows = row.ends_at is not None and grant.ends_at > row.ends_at
                    changes.append(_move_end(row, grant.ends_at, "extended" if grows else "shortened"))
            else:
                changes.append(_end(row, now=now))
        if grant:
            changes += _grant_missing(sub, grant, [k for k in grant.keys if k not in kept], now=now)
        _enqueue_platform_sync(changes)
    if changes:
        logger.info(
            "entitlements of subscription %s (%s): %s",
            sub.stripe_subscription_id or sub.pk,
            sub.status,
            ", ".join(f"{c.action} {c.key}" for c in changes),
        )
    return changes


def _grant_missing(
    sub: Subscription, grant: _Grant, keys: Sequence[str], *, now: dt.datetime
) -> list[EntitlementChange]:
    if not keys:
        return []
    held_back: set[str] = set()
    if grant.window_start is not None:
        # A row revoked in this period stays revoked (a refund, an operator's decision) until a new one.
        held_back = set(
            Entitlement.objects.filter(
                subscription=sub,
                source=grant.source,
                key__in=keys,
                revoked_at__gte=grant.window_start,
                revoked_at__gt=F("starts_at"),
            ).values_list("key", flat=True)
        )
    changes = []
    for key in keys:
        if key in held_back:
            continue
        row = Entitlement.objects.create(
            user_id=sub.user_id,
            key=key,
            source=grant.source,
            subscription=sub,
            starts_at=now,
            ends_at=grant.ends_at,
            reason=f"{sub.plan.name}: {sub.get_status_display().lower()}",
            sync_status=SyncStatus.PENDING if is_platform_key(key) else SyncStatus.NOT_NEEDED,
        )
        changes.append(EntitlementChange(row.pk, key, "granted", row.ends_at))
    return changes


def _move_end(row: Entitlement, ends_at: dt.datetime, action: ChangeAction) -> EntitlementChange:
    row.ends_at = ends_at
    fields = ["ends_at", "updated_at"]
    if is_platform_key(row.key):
        row.sync_status = SyncStatus.PENDING
        fields.append("sync_status")
    row.save(update_fields=fields)
    return EntitlementChange(row.pk, row.key, action, ends_at)


def _end(row: Entitlement, *, now: dt.datetime) -> EntitlementChange:
    """End a row now. One that has not started yet cannot end before it starts: it is revoked instead."""
    if row.starts_at >= now:
        return _revoke(row, now=now, reason="")
    row.ends_at = now
    fields = ["ends_at", "updated_at"]
    if is_platform_key(row.key):
        row.sync_status = SyncStatus.PENDING
        fields.append("sync_status")
    row.save(update_fields=fields)
    return EntitlementChange(row.pk, row.key, "ended", now)


def _revoke(row: Entitlement, *, now: dt.datetime, reason: str) -> EntitlementChange:
    row.revoked_at = now
    fields = ["revoked_at", "updated_at"]
    if reason:
        row.reason = f"{row.reason}; {reason}".strip("; ")[:200]
        fields.append("reason")
    if is_platform_key(row.key):
        row.sync_status = SyncStatus.PENDING
        fields.append("sync_status")
    row.save(update_fields=fields)
    return EntitlementChange(row.pk, row.key, "revoked", row.ends_at)


def _enqueue_platform_sync(changes: Iterable[EntitlementChange]) -> None:
    # The tasks module imports these services; importing it at load time would be circular.
    from apps.billing.tasks import sync_entitlement

    for change in changes:
        if is_platform_key(change.key):
            transaction.on_commit(functools.partial(sync_entitlement.delay, change.entitlement_id))


def entitlement_grant_complimentary(
    *, user: User, keys: Iterable[str], ends_at: dt.datetime, granted_by: User | None, reason: str
) -> list[Entitlement]:
    """Give ``user`` these keys until ``ends_at``, free. A key the user already holds on a complimentary
    grant is extended (never shortened) rather than granted twice."""
    now = timezone.now()
    if ends_at <= now:
        raise ValidationError("a complimentary grant must end in the future", code="ends_in_past")
    wanted = list(dict.fromkeys(entitlement_key_validate(k) for k in keys))
    if not wanted:
        raise ValidationError("name at least one key", code="no_keys")
    rows: list[Entitlement] = []
    changes: list[EntitlementChange] = []
    with transaction.atomic():
        # Serialises grants to one user, so two operators granting at once extend one row.
        User.objects.select_for_update().filter(pk=user.pk).first()
        for key in wanted:
            row = (
                Entitlement.objects.select_for_update()
                .filter(user=user, key=key, source=EntitlementSource.COMPLIMENTARY, revoked_at__isnull=True)
                .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
                .order_by(F("ends_at").desc(nulls_first=True))
                .first()
            )
            if row is None:
                row = Entitlement.objects.create(
                    user=user,
                    key=key,
                    source=EntitlementSource.COMPLIMENTARY,
                    starts_at=now,
                    ends_at=ends_at,
                    granted_by=granted_by,
                    reason=reason[:200],
                    sync_status=SyncStatus.PENDING if is_platform_key(key) else SyncStatus.NOT_NEEDED,
                )
                changes.append(EntitlementChange(row.pk, key, "granted", ends_at))
            elif row.ends_at is not None and row.ends_at < ends_at:
                changes.append(_move_end(row, ends_at, "extended"))
            rows.append(row)
        _enqueue_platform_sync(changes)
    logger.info(
        "complimentary %s for user %s until %s by %s",
        ", ".join(wanted),
        user.pk,
        ends_at.isoformat(),
        getattr(granted_by, "pk", None),
    )
    return rows


def entitlement_revoke(*, entitlement_ids: Iterable[int], reason: str) -> list[EntitlementChange]:
    """Take rows out of force now. Rows already revoked are left alone, so revoking twice changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Entitlement.objects.select_for_update()
            .filter(pk__in=list(entitlement_ids), revoked_at__isnull=True)
            .order_by("pk")
        )
        changes = [
            _revoke(row, now=now, reason=f"revoked: {reason}" if reason else "revoked") for row in rows
        ]
        _enqueue_platform_sync(changes)
    return changes


def entitlements_revoke_for_subscription(
    *, subscription: Subscription, reason: str
) -> list[EntitlementChange]:
    """Revoke every row of a subscription that is still in force (or yet to start)."""
    now = timezone.now()
    ids = (
        Entitlement.objects.filter(subscription=subscription, revoked_at__isnull=True)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .values_list("pk", flat=True)
    )
    return entitlement_revoke(entitlement_ids=list(ids), reason=reason)


def entitlements_expire_due(*, now: dt.datetime) -> int:
    """Enqueue the platform sync of every platform row that has ended (or been revoked) since the platform
    last heard about it; returns how many were enqueued. Rows end by their ``ends_at`` alone, so the ledger
    needs no write to stop granting them: this is what takes the Discord role or Telegram channel away.

    Rows already ``pending`` have a sync on its way; ``failed`` ones belong to the access-sync retries."""
    platform = Q(key__startswith=PLATFORM_KEY_PREFIXES[0]) | Q(key__startswith=PLATFORM_KEY_PREFIXES[1])
    ended_unheard = Q(ends_at__lte=now) & (Q(synced_at__isnull=True) | Q(synced_at__lt=F("ends_at")))
    revoked_unheard = Q(revoked_at__lte=now) & (Q(synced_at__isnull=True) | Q(synced_at__lt=F("revoked_at")))
    due = (
        Entitlement.objects.filter(platform)
        .filter(ended_unheard | revoked_unheard)
        .exclude(sync_status__in=[SyncStatus.PENDING, SyncStatus.FAILED])
        .values_list("pk", "key")
    )
    changes = []
    for pk, key in due.iterator():
        # Conditional: a concurrent run (or a sync that just finished) wins, and this one skips the row.
        claimed = (
            Entitlement.objects.filter(pk=pk)
            .exclude(sync_status__in=[SyncStatus.PENDING, SyncStatus.FAILED])
            .update(sync_status=SyncStatus.PENDING, updated_at=now)
        )
        if claimed:
            changes.append(EntitlementChange(pk, key, "ended", None))
    with transaction.atomic():
        _enqueue_platform_sync(changes)
    if changes:
        logger.info("%d ended platform entitlements queued for removal", len(changes))
    return len(changes)


def entitlement_mark_sync_failed(*, entitlement_id: int, error: str) -> None:
    """The platform sync gave up: leave the row for the access-sync drift check, with the reason."""
    Entitlement.objects.filter(pk=entitlement_id).update(
        sync_status=SyncStatus.FAILED, sync_error=error[:2000], updated_at=timezone.now()
    )
