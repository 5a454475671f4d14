"""The local checkout twin: Stripe Checkout's stand-in on a machine without a Stripe key, so the whole path
from choosing a plan to having access can be walked offline.

A twin session moves ``open → complete`` (paid) or ``open → expired`` (24 hours unpaid, like Stripe's).
Paying it does what the ``checkout.session.completed`` webhook does with Stripe's answer, through the same
services: link the customer, sync a subscription shaped exactly like Stripe's (items with their price and
billing period, ``trialing`` with ``trial_end`` when the session carries a trial) and credit the offer that
led there. The subscription's entitlements then come from the real ledger code.

Sessions are rows (``CheckoutTwinSession``) rather than signed tokens: the conditional ``open → complete``
update is what makes a double-clicked "Pay" create one subscription, and an operator can see them.

The twin refuses to run in production or once a Stripe key is set, and its pages are not routed in
production at all.
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import (
    BillingInterval,
    CheckoutTwinSession,
    CheckoutTwinSessionStatus,
    Plan,
    PlanPrice,
)
from apps.billing.services.subscriptions import (
    billing_customer_link,
    conversion_attempt_mark_converted,
    subscription_sync_from_stripe,
)

SESSION_LIFETIME = dt.timedelta(hours=24)
TWIN_PRODUCT_PREFIX = "prod_twin_"
TWIN_PRICE_PREFIX = "price_twin_"


class CheckoutTwinUnavailable(Exception):
    """The twin only runs in development without a Stripe key."""


class CheckoutTwinSessionExpired(Exception):
    pass


def is_twin_id(stripe_object_id: str | None) -> bool:
    return bool(stripe_object_id) and str(stripe_object_id).startswith(
        (TWIN_PRODUCT_PREFIX, TWIN_PRICE_PREFIX)
    )


def _require_twin() -> None:
    if settings.PRODUCTION:
        raise CheckoutTwinUnavailable("the checkout twin never runs in production")
    if settings.STRIPE_SECRET_KEY:
        raise CheckoutTwinUnavailable("a Stripe key is set: checkout goes to Stripe, not the twin")


def checkout_twin_session_url(session: CheckoutTwinSession) -> str:
    return reverse("portal:billing_twin_checkout", args=[session.id])


def _twin_catalogue_ids(price: PlanPrice) -> None:
    """Give the plan and price the ids they would have in Stripe, once, so the subscription the twin
    reports maps back to them exactly as a real one does. ``stripe_sync_plans`` replaces these ids."""
    plan = price.plan
    unset = Q(stripe_product_id__isnull=True) | Q(stripe_product_id="")
    Plan.objects.filter(unset, pk=plan.pk).update(
        stripe_product_id=f"{TWIN_PRODUCT_PREFIX}{plan.slug}", updated_at=timezone.now()
    )
    unset = Q(stripe_price_id__isnull=True) | Q(stripe_price_id="")
    PlanPrice.objects.filter(unset, pk=price.pk).update(
        stripe_price_id=f"{TWIN_PRICE_PREFIX}{price.pk}", updated_at=timezone.now()
    )
    plan.refresh_from_db(fields=["stripe_product_id"])
    price.refresh_from_db(fields=["stripe_price_id"])


def checkout_twin_session_create(
    *,
    user: User,
    price: PlanPrice,
    success_url: str,
    cancel_url: str,
    metadata: dict[str, str],
    trial_period_days: int | None,
    customer: str,
    customer_email: str,
) -> CheckoutTwinSession:
    _require_twin()
    _twin_catalogue_ids(price)
    now = timezone.now()
    return CheckoutTwinSession.objects.create(
        id=f"cs_twin_{uuid.uuid4().hex}",
        user=user,
        price=price,
        trial_period_days=trial_period_days,
        customer=customer,
        customer_email=customer_email,
        metadata=metadata,
        success_url=success_url,
        cancel_url=cancel_url,
        expires_at=now + SESSION_LIFETIME,
    )


def checkout_twin_session_get(*, session_id: str, user: User) -> CheckoutTwinSession | None:
    """The member's own twin session with its plan and price, or None (someone else's is None too)."""
    _require_twin()
    return CheckoutTwinSession.objects.select_related("price__plan").filter(pk=session_id, user=user).first()


def checkout_twin_session_is_expired(session: CheckoutTwinSession, *, now: dt.datetime | None = None) -> bool:
    if session.status == CheckoutTwinSessionStatus.EXPIRED:
        return True
    return session.status == CheckoutTwinSessionStatus.OPEN and session.expires_at <= (now or timezone.now())


def checkout_twin_session_success_url(session: CheckoutTwinSession) -> str:
    return session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id)


def checkout_twin_session_pay(*, session: CheckoutTwinSession) -> CheckoutTwinSession:
    """Complete the session as Stripe would on a successful payment, then deliver what the webhook would.
    Paying a completed session again changes nothing."""
    _require_twin()
    now = timezone.now()
    if checkout_twin_session_is_expired(session, now=now):
        CheckoutTwinSession.objects.filter(pk=session.pk, status=CheckoutTwinSessionStatus.OPEN).update(
            status=CheckoutTwinSessionStatus.EXPIRED, updated_at=now
        )
        raise CheckoutTwinSessionExpired(f"checkout session {session.id} has expired")
    with transaction.atomic():
        claimed = CheckoutTwinSession.objects.filter(
            pk=session.pk, status=CheckoutTwinSessionStatus.OPEN, expires_at__gt=now
        ).update(status=CheckoutTwinSessionStatus.COMPLETE, completed_at=now, updated_at=now)
        if not claimed:
            session.refresh_from_db()
            return session
        customer_id = session.customer or f"cus_twin_{uuid.uuid4().hex[:24]}"
        stripe_subscription = _stripe_shaped_subscription(session, customer_id=customer_id, now=now)
        # What the checkout.session.completed handler does with Stripe's answer, in the same order.
        billing_customer_link(user=session.user, stripe_customer_id=customer_id)
        subscription = subscription_sync_from_stripe(
            stripe_subscription=stripe_subscription, event_created=now
        )
        if token := session.metadata.get("conversion_token"):
            conversion_attempt_mark_converted(token=token, subscription=subscription)
        CheckoutTwinSession.objects.filter(pk=session.pk).update(
            stripe_subscription_id=stripe_subscription["id"], customer=customer_id
        )
    session.refresh_from_db()
    return session


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Stripe's monthly anchor: the same day next month, or that month's last day when it is shorter."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _stripe_shaped_subscription(
    session: CheckoutTwinSession, *, customer_id: str, now: dt.datetime
) -> dict[str, Any]:
    """A subscription as ``GET /v1/subscriptions/{id}`` returns it (see Stripe's fixtures): the billing period
    on the item, the item's full price with its product and recurrence."""
    price = session.price
    start = now.replace(microsecond=0)
    if session.trial_period_days:
        status, trial_end = "trialing", start + dt.timedelta(days=session.trial_period_days)
        period_end = trial_end
    else:
        status, trial_end = "active", None
        period_end = _add_months(start, 12 if price.interval == BillingInterval.YEAR else 1)
    subscription_id = f"sub_twin_{uuid.uuid4().hex[:24]}"

    def ts(moment: dt.datetime | None) -> int | None:
        return int(moment.timestamp()) if moment else None

    stripe_price = {
        "id": price.stripe_price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": ts(price.created_at),
        "currency": price.currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": price.plan.stripe_product_id,
        "recurring": {
            "interval": price.interval,
            "interval_count": 1,
            "meter": None,
            "usage_type": "licensed",
            "trial_period_days": None,
        },
        "tax_behavior": "unspecified",
        "type": "recurring",
        "unit_amount": price.amount_minor,
        "unit_amount_decimal": str(price.amount_minor),
    }
    return {
        "id": subscription_id,
        "object": "subscription",
        "billing_cycle_anchor": ts(period_end),
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": ts(start),
        "currency": price.currency,
        "customer": customer_id,
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_twin_{uuid.uuid4().hex[:14]}",
                    "object": "subscription_item",
                    "created": ts(start),
                    "current_period_start": ts(start),
                    "current_period_end": ts(period_end),
                    "metadata": {},
                    "price": stripe_price,
                    "quantity": 1,
                    "subscription": subscription_id,
                    "tax_rates": [],
                }
            ],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={subscription_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": dict(session.metadata),
        "start_date": ts(start),
        "status": status,
        "trial_end": ts(trial_end),
        "trial_start": ts(start) if trial_end else None,
    }
