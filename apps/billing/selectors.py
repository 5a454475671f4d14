"""Reads of plans, subscriptions and the entitlement ledger.

Access decisions read the ledger alone (``user_has_entitlement``, ``user_entitlement_keys``,
``entitled_user_ids``); ``member_access_state`` is for display."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import Entitlement, Subscription, SubscriptionStatus

MemberAccessState = Literal[
    "anonymous", "free", "trialing", "active", "past_due_grace", "past_due_expired", "canceled"
]


def subscription_get_latest(*, user: User) -> Subscription | None:
    """The user's most recently created subscription, whatever its status, with its plan loaded."""
    return (
        Subscription.objects.filter(user=user).select_related("plan").order_by("-created_at", "-id").first()
    )


def _in_force(now: dt.datetime) -> Q:
    return Q(starts_at__lte=now, revoked_at__isnull=True) & (Q(ends_at__isnull=True) | Q(ends_at__gt=now))


def _known(user: User | AnonymousUser | None) -> User | None:
    return user if isinstance(user, User) and user.pk is not None else None


def entitlement_list_active(*, user: User, now: dt.datetime | None = None) -> QuerySet[Entitlement]:
    """The user's entitlements in force: started, not yet ended, and not revoked."""
    return Entitlement.objects.filter(_in_force(now or timezone.now()), user=user).order_by(
        "key", "starts_at", "id"
    )


def user_has_entitlement(
    *, user: User | AnonymousUser | None, key: str, now: dt.datetime | None = None
) -> bool:
    known = _known(user)
    if known is None:
        return False
    return Entitlement.objects.filter(_in_force(now or timezone.now()), user=known, key=key).exists()


def user_entitlement_keys(*, user: User | AnonymousUser | None, now: dt.datetime | None = None) -> set[str]:
    known = _known(user)
    if known is None:
        return set()
    return set(
        Entitlement.objects.filter(_in_force(now or timezone.now()), user=known)
        .order_by()
        .values_list("key", flat=True)
        .distinct()
    )


def entitled_user_ids(*, key: str, now: dt.datetime | None = None) -> QuerySet[Entitlement, int]:
    """Ids of the users holding ``key`` (for comparing with who actually has a role or is in a channel)."""
    return (
        Entitlement.objects.filter(_in_force(now or timezone.now()), key=key)
        .order_by("user_id")
        .values_list("user_id", flat=True)
        .distinct()
    )


# Which of a member's subscriptions describes them best: one that grants access now, then one in trouble, then
# the most recent of the rest.
_DISPLAY_PRIORITY = {
    SubscriptionStatus.ACTIVE: 0,
    SubscriptionStatus.TRIALING: 0,
    SubscriptionStatus.PAST_DUE: 1,
    SubscriptionStatus.UNPAID: 2,
}


def member_access_state(
    *, user: User | AnonymousUser | None, now: dt.datetime | None = None
) -> MemberAccessState:
    """Where a member stands, for display: "anonymous", "free" (never subscribed, or checkout not completed),
    "trialing", "active" (also while set to cancel at the period end), "past_due_grace", "past_due_expired"
    (past due beyond the plan's grace, or unpaid), "canceled" (also paused)."""
    known = _known(user)
    if known is None:
        return "anonymous"
    now = now or timezone.now()
    subscriptions = list(
        Subscription.objects.filter(user=known).select_related("plan").order_by("-created_at", "-id")
    )
    if not subscriptions:
        return "free"
    current = min(subscriptions, key=lambda s: _DISPLAY_PRIORITY.get(SubscriptionStatus(s.status), 3))
    status = current.status
    if status == SubscriptionStatus.TRIALING:
        return "trialing"
    if status == SubscriptionStatus.ACTIVE:
        return "active"
    if status == SubscriptionStatus.PAST_DUE:
        grace_end = current.past_due_since and current.past_due_since + dt.timedelta(
            days=current.plan.grace_days
        )
        return "past_due_grace" if grace_end and grace_end > now else "past_due_expired"
    if status == SubscriptionStatus.UNPAID:
        return "past_due_expired"
    if status in (SubscriptionStatus.CANCELED, SubscriptionStatus.PAUSED):
        return "canceled"
    return "free"
