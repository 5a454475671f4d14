"""Starting a membership: a Stripe Checkout Session in subscription mode, and the customer portal for members
who already pay. Nothing here grants access: the webhook (or, in development, the checkout twin replaying
what the webhook would deliver) does that once Stripe reports the subscription.

Without ``STRIPE_SECRET_KEY`` (the embedded default) sessions are created on the local checkout twin
(``apps.billing.twin``), which walks the same states; production always has a key and never reaches the twin.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q

from apps.accounts.models import User
from apps.billing import twin
from apps.billing.models import BillingCustomer, PlanPrice, Subscription, SubscriptionStatus
from apps.billing.stripe_client import stripe_call

# A member with one of these already has a subscription in Stripe: a second checkout would bill them twice.
# Changing plan goes through the customer portal instead.
LIVE_STATUSES = (
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.UNPAID,
    SubscriptionStatus.PAUSED,
)


class CheckoutRefused(Exception):
    """This checkout cannot start; the message is fit to show the member."""


class AlreadySubscribed(CheckoutRefused):
    pass


class BillingPortalUnavailable(Exception):
    """There is no customer portal to send this member to; the message is fit to show them."""


@dataclass(frozen=True, slots=True)
class CheckoutRedirect:
    url: str
    session_id: str


def checkout_uses_twin() -> bool:
    return not settings.STRIPE_SECRET_KEY and not settings.PRODUCTION


def user_had_trial(*, user: User) -> bool:
    """A trial is offered once per member: any subscription that ever had one uses it up."""
    return (
        Subscription.objects.filter(user=user)
        .filter(Q(trial_end__isnull=False) | Q(status=SubscriptionStatus.TRIALING))
        .exists()
    )


def checkout_trial_days(*, user: User, price: PlanPrice) -> int | None:
    """The free days this member would get on this plan, or None."""
    trial_days = price.plan.trial_days
    if not trial_days or user_had_trial(user=user):
        return None
    return trial_days


def _billing_customer_id(user: User) -> str | None:
    return (
        BillingCustomer.objects.filter(user=user, deleted_at__isnull=True)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )


def checkout_session_create(
    *,
    user: User,
    price: PlanPrice,
    success_url: str,
    cancel_url: str,
    conversion_token: str | None = None,
) -> CheckoutRedirect:
    """Open a subscription checkout for ``price`` and return where to send the member.

    ``success_url`` may contain ``{CHECKOUT_SESSION_ID}``, which Stripe (and the twin) fill in. The session's
    metadata names the member (``user_id``, also ``client_reference_id``), the plan's slug, our price's id
    and, when the member came from an offer link, its ``conversion_token``; the subscription carries the
    same metadata, so its own events can be placed whatever order they arrive in."""
    plan = price.plan
    if not (price.is_active and plan.is_active):
        raise CheckoutRefused(f"{plan.name} is not available any more.")
    if Subscription.objects.filter(user=user, status__in=LIVE_STATUSES).exists():
        raise AlreadySubscribed("You already have a membership: change or cancel it from the billing portal.")

    metadata = {"user_id": str(user.pk), "plan": plan.slug, "price": str(price.pk)}
    if conversion_token:
        metadata["conversion_token"] = conversion_token
    trial_days = checkout_trial_days(user=user, price=price)
    customer_id = _billing_customer_id(user)

    if checkout_uses_twin():
        session = twin.checkout_twin_session_create(
            user=user,
            price=price,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata=metadata,
            trial_period_days=trial_days,
            customer=customer_id or "",
            customer_email="" if customer_id else user.email,
        )
        return CheckoutRedirect(url=twin.checkout_twin_session_url(session), session_id=session.id)

    if not price.stripe_price_id:
        raise CheckoutRefused(f"{plan.name} cannot be bought yet: the plans have not been synced to Stripe.")
    subscription_data: dict[str, Any] = {"metadata": metadata}
    if trial_days:
        subscription_data["trial_period_days"] = trial_days
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": price.stripe_price_id, "quantity": 1}],
        "client_reference_id": str(user.pk),
        "metadata": metadata,
        "subscription_data": subscription_data,
        "allow_promotion_codes": True,
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if customer_id:
        params["customer"] = customer_id
    else:
        params["customer_email"] = user.email
    # One key per checkout started: retries of this request reuse it, a second click opens a new session.
    options = {"idempotency_key": f"coinlink-checkout-{user.pk}-{uuid.uuid4()}"}
    stripe_session = stripe_call(lambda client: client.v1.checkout.sessions.create(params, options))  # type: ignore[arg-type]
    return CheckoutRedirect(url=str(stripe_session["url"]), session_id=str(stripe_session["id"]))


def billing_portal_url(*, user: User, return_url: str) -> str:
    """A Stripe customer portal session for the member, where they change plan, update their card, see
    invoices or cancel; Stripe sends them back to ``return_url``."""
    customer_id = _billing_customer_id(user)
    if not customer_id:
        raise BillingPortalUnavailable("You have no billing account yet.")
    if checkout_uses_twin():
        raise BillingPortalUnavailable(
            "Payments run on the local checkout twin, which has no billing portal: "
            "manage test subscriptions in the admin."
        )
    portal = stripe_call(
        lambda client: client.v1.billing_portal.sessions.create(
            {"customer": customer_id, "return_url": return_url}
        )
    )
    return str(portal["url"])
