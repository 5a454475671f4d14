"""Reads of plans, subscriptions and the entitlement ledger."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import Entitlement, Subscription


def subscription_get_latest(*, user: User) -> Subscription | None:
    """The user's most recently created subscription, whatever its status, with its plan loaded."""
    return (
        Subscription.objects.filter(user=user).select_related("plan").order_by("-created_at", "-id").first()
    )


def entitlement_list_active(*, user: User) -> QuerySet[Entitlement]:
    """The user's entitlements in force now: started, not yet ended, and not revoked."""
    now = timezone.now()
    return (
        Entitlement.objects.filter(user=user, starts_at__lte=now, revoked_at__isnull=True)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .order_by("key", "starts_at", "id")
    )
