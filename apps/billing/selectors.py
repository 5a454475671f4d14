"""Reads of plans, subscriptions and the entitlement ledger.

Access decisions read the ledger alone (``user_has_entitlement``, ``user_entitlement_keys``,
``entitled_user_ids``); ``member_access_state`` is for display."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from django.contrib.auth.models import AnonymousUser
from django.db.models import Case, Count, Exists, F, FloatField, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import (
    ConversionAttempt,
    ConversionStatus,
    Entitlement,
    OnboardingStep,
    Subscription,
    SubscriptionStatus,
    SyncStatus,
)
from apps.community.models import CommunityUser, ModerationStanding, PlatformIdentity

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


# --- the offer funnel and onboarding -----------------------------------------------------------------------

# The portal entitlement that makes someone a member: members are never offered membership.
MEMBER_ENTITLEMENT = "portal.premium"
# People we do not approach with offers: moderation has stepped in.
_NOT_APPROACHABLE = (ModerationStanding.MUTED, ModerationStanding.BANNED)


def conversion_candidates(
    *, now: dt.datetime, min_score: float, cooldown_days: int, platforms: Collection[str]
) -> QuerySet[CommunityUser]:
    """People to offer membership, most engaged first (by the stored ``engagement_score``, so its index
    serves the order): at least ``min_score``; not a member (no portal user holding ``portal.premium``); not
    muted or banned; no bot account among their identities; not approached in the last ``cooldown_days``
    (any attempt, failed ones too: someone whose direct messages are closed stays closed for a while); and
    reachable: a person account on one of ``platforms``."""
    cooldown_since = now - dt.timedelta(days=cooldown_days)
    member = Entitlement.objects.filter(
        _in_force(now), key=MEMBER_ENTITLEMENT, user_id=OuterRef("portal_user_id")
    )
    approached = ConversionAttempt.objects.filter(community_user_id=OuterRef("pk")).filter(
        Q(sent_at__gte=cooldown_since) | Q(created_at__gte=cooldown_since)
    )
    identities = PlatformIdentity.objects.filter(community_user_id=OuterRef("pk"))
    return (
        CommunityUser.objects.filter(engagement_score__gte=min_score)
        .exclude(standing__in=_NOT_APPROACHABLE)
        .exclude(muted_until__gt=now)
        .filter(Exists(identities.filter(platform__in=list(platforms), is_bot=False)))
        .exclude(Exists(identities.filter(is_bot=True)))
        .exclude(Exists(member))
        .exclude(Exists(approached))
        .order_by("-engagement_score", "pk")
    )


def reachable_identities(
    *, community_user_ids: Collection[int], platforms: Collection[str]
) -> dict[tuple[int, str], PlatformIdentity]:
    """Each person's account per platform that a direct message can reach, preferring one they linked (proved
    theirs) and then the most recently seen; one query."""
    found: dict[tuple[int, str], PlatformIdentity] = {}
    rows = PlatformIdentity.objects.filter(
        community_user_id__in=list(community_user_ids), platform__in=list(platforms), is_bot=False
    ).order_by(F("linked_at").desc(nulls_last=True), "-updated_at", "-pk")
    for identity in rows:
        found.setdefault((identity.community_user_id, identity.platform), identity)
    return found


def conversion_attempts_undelivered(*, since: dt.datetime) -> QuerySet[ConversionAttempt]:
    """Offers written but not yet delivered (a platform failed transiently) since ``since``, oldest first."""
    return (
        ConversionAttempt.objects.filter(
            status=ConversionStatus.SENT, sent_at__isnull=True, created_at__gte=since
        )
        .select_related("community_user")
        .order_by("created_at", "pk")
    )


def conversion_attempt_get_by_token(*, token: str) -> ConversionAttempt | None:
    """The offer behind a link, or None for an unknown or malformed token."""
    try:
        parsed = uuid.UUID(str(token))
    except ValueError:
        return None
    return ConversionAttempt.objects.filter(token=parsed).first()


def onboarding_members(*, since: dt.datetime) -> list[Subscription]:
    """New members: whoever holds a trialing or active subscription created since ``since``, each once, with
    their earliest such subscription (its ``created_at`` is when their membership started), user and plan
    loaded."""
    first: dict[int, Subscription] = {}
    subscriptions = (
        Subscription.objects.filter(
            status__in=(SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE), created_at__gte=since
        )
        .select_related("user", "plan")
        .order_by("created_at", "pk")
    )
    for subscription in subscriptions:
        first.setdefault(subscription.user_id, subscription)
    return list(first.values())


def onboarding_steps_done(*, user_ids: Collection[int]) -> dict[int, set[str]]:
    """The onboarding steps already recorded (whatever their outcome) per member; one query."""
    done: dict[int, set[str]] = {}
    for user_id, step in OnboardingStep.objects.filter(user_id__in=list(user_ids)).values_list(
        "user_id", "step"
    ):
        done.setdefault(user_id, set()).add(step)
    return done


def linked_identities(*, user: User, platforms: Collection[str]) -> dict[str, PlatformIdentity]:
    """The member's accounts they proved are theirs, by platform (the first linked when there are several)."""
    found: dict[str, PlatformIdentity] = {}
    rows = PlatformIdentity.objects.filter(
        community_user__portal_user=user, platform__in=list(platforms), linked_at__isnull=False, is_bot=False
    ).order_by("linked_at", "pk")
    for identity in rows:
        found.setdefault(identity.platform, identity)
    return found


def entitlement_sync_unsettled(*, user: User, keys: Collection[str], now: dt.datetime | None = None) -> bool:
    """Whether a platform sync of any of the member's ``keys`` in force is still to happen (pending or failed)."""
    return (
        Entitlement.objects.filter(_in_force(now or timezone.now()), user=user, key__in=list(keys))
        .filter(sync_status__in=(SyncStatus.PENDING, SyncStatus.FAILED))
        .exists()
    )


@dataclass(frozen=True)
class Band:
    floor: float
    offers: int
    conversions: int


def conversion_attempt_bands(*, since: dt.datetime, floors: Sequence[float]) -> tuple[int, list[Band]]:
    """Offers sent since ``since`` (failed sends are no offers) and, per score band (``floors`` ascending; a
    band runs from its floor up to the next), how many and how many converted: one GROUP BY query. Returns
    the number of offers of every score too."""
    ordered = sorted(floors, reverse=True)
    band = Case(
        *[When(score__gte=floor, then=Value(float(floor))) for floor in ordered],
        default=Value(None),
        output_field=FloatField(),
    )
    rows = (
        ConversionAttempt.objects.filter(sent_at__gte=since, sent_at__isnull=False)
        .exclude(status=ConversionStatus.FAILED)
        .annotate(band=band)
        .values("band")
        .annotate(
            offers=Count("id"),
            conversions=Count(
                "id", filter=Q(status=ConversionStatus.CONVERTED) | Q(converted_at__isnull=False)
            ),
        )
        .order_by("band")
    )
    total = 0
    bands = []
    for row in rows:
        total += row["offers"]
        if row["band"] is not None:
            bands.append(Band(floor=row["band"], offers=row["offers"], conversions=row["conversions"]))
    return total, bands
