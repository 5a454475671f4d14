"""Subscriptions mirror Stripe: each row holds the latest state Stripe gave us, and its entitlements follow.

Webhooks tell us *that* something changed; what changed is read back from Stripe (``GET
/v1/subscriptions/{id}``), and the state is applied under the row's lock. Snapshots carry the time they were
taken: an older one than the row already holds is ignored, so news that arrives late, twice or out of order
cannot wind a subscription back. Stripe never revives a canceled (or expired) subscription, so a terminal state
is never replaced by a live one, and always replaces one.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import (
    BillingCustomer,
    ConversionAttempt,
    ConversionStatus,
    Plan,
    PlanPrice,
    Subscription,
    SubscriptionStatus,
)
from apps.billing.services.entitlements import entitlements_sync_for_subscription

logger = logging.getLogger(__name__)

TERMINAL = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})


class StripeObjectUnmapped(Exception):
    """A Stripe object we cannot place: its price belongs to no plan, or its customer to no user. Retrying will
    not help; the checkout's completion links the customer, and an operator can map the price."""


def stripe_id(value: Any) -> str:
    """The id of a Stripe reference, whether expanded (an object) or not (its id)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def stripe_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


def _user_id(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _plan_and_item(data: Mapping[str, Any]) -> tuple[Plan, PlanPrice | None, Mapping[str, Any]]:
    """The plan a subscription pays for, by its items' prices (or, for a price we do not list, the price's
    product); with several items, the highest tier wins."""
    items = [i for i in (data.get("items") or {}).get("data") or [] if isinstance(i, Mapping)]
    by_price = {stripe_id(i.get("price")): i for i in items if stripe_id(i.get("price"))}
    prices = PlanPrice.objects.select_related("plan").filter(stripe_price_id__in=list(by_price))
    best = max(prices, key=lambda p: p.plan.rank, default=None)
    if best is not None:
        return best.plan, best, by_price[str(best.stripe_price_id)]
    by_product = {}
    for item in items:
        price = item.get("price")
        if isinstance(price, Mapping) and (product := stripe_id(price.get("product"))):
            by_product[product] = item
    plans = Plan.objects.filter(stripe_product_id__in=list(by_product))
    plan = max(plans, key=lambda p: p.rank, default=None)
    if plan is not None:
        return plan, None, by_product[str(plan.stripe_product_id)]
    raise StripeObjectUnmapped(
        f"subscription {data.get('id')}: no plan for prices {sorted(by_price)} or products {sorted(by_product)}"
    )


def _fields_from_stripe(data: Mapping[str, Any]) -> dict[str, Any]:
    status = data.get("status")
    if status not in SubscriptionStatus.values:
        raise StripeObjectUnmapped(f"subscription {data.get('id')}: unknown status {status!r}")
    plan, price, item = _plan_and_item(data)
    # Current API versions keep the billing period on the items; older ones on the subscription.
    period_start = stripe_time(item.get("current_period_start")) or stripe_time(
        data.get("current_period_start")
    )
    period_end = stripe_time(item.get("current_period_end")) or stripe_time(data.get("current_period_end"))
    cancel_at = stripe_time(data.get("cancel_at"))
    # A cancellation scheduled within the period ends it without renewal, however it was asked for.
    ends_without_renewal = bool(data.get("cancel_at_period_end")) or (
        cancel_at is not None and period_end is not None and cancel_at <= period_end
    )
    return {
        "plan": plan,
        "price": price,
        "stripe_customer_id": stripe_id(data.get("customer")),
        "status": status,
        "current_period_start": period_start,
        "current_period_end": period_end,
        "trial_end": stripe_time(data.get("trial_end")),
        "cancel_at_period_end": ends_without_renewal,
        "canceled_at": stripe_time(data.get("canceled_at")),
        "ended_at": stripe_time(data.get("ended_at")),
    }


def _owner(data: Mapping[str, Any], customer_id: str) -> User:
    customer = BillingCustomer.objects.select_related("user").filter(stripe_customer_id=customer_id).first()
    if customer_id and customer is not None:
        return customer.user
    metadata = data.get("metadata") or {}
    user_id = _user_id(metadata.get("user_id"))
    user = User.objects.filter(pk=user_id).first() if user_id else None
    if user is None:
        raise StripeObjectUnmapped(
            f"subscription {data.get('id')}: customer {customer_id!r} is linked to no user"
        )
    return user


def _is_older_news(row: Subscription, status: str, snapshot_at: dt.datetime) -> bool:
    if row.status in TERMINAL and status not in TERMINAL:
        return True
    if status in TERMINAL and row.status not in TERMINAL:
        return False
    return row.stripe_synced_at is not None and snapshot_at < row.stripe_synced_at


def _past_due_since(
    row_value: dt.datetime | None, status: str, snapshot_at: dt.datetime
) -> dt.datetime | None:
    if status == SubscriptionStatus.PAST_DUE:
        return row_value or snapshot_at
    if status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
        return None
    return row_value


def subscription_sync_from_stripe(
    *, stripe_subscription: Mapping[str, Any], event_created: dt.datetime | None = None
) -> Subscription:
    """Apply Stripe's state of a subscription to its row (creating it the first time), then its entitlements.

    ``event_created`` is when the snapshot was taken: a webhook's creation time, or when it was read back from
    the API (None: now). Two deliveries racing to create the row meet on the unique Stripe id: the loser
    retries and updates the winner's row."""
    snapshot_at = event_created or timezone.now()
    sub_id = stripe_id(stripe_subscription)
    if not sub_id:
        raise StripeObjectUnmapped("a subscription without an id")
    fields = _fields_from_stripe(stripe_subscription)
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                row = Subscription.objects.select_for_update().filter(stripe_subscription_id=sub_id).first()
                if row is None:
                    row = Subscription.objects.create(
                        user=_owner(stripe_subscription, fields["stripe_customer_id"]),
                        stripe_subscription_id=sub_id,
                        stripe_synced_at=snapshot_at,
                        past_due_since=_past_due_since(None, fields["status"], snapshot_at),
                        **fields,
                    )
                elif not _is_older_news(row, fields["status"], snapshot_at):
                    row.past_due_since = _past_due_since(row.past_due_since, fields["status"], snapshot_at)
                    for name, value in fields.items():
                        setattr(row, name, value)
                    row.stripe_synced_at = max(filter(None, [row.stripe_synced_at, snapshot_at]))
                    row.save()
                else:
                    logger.info("subscription %s: ignored a snapshot older than the one applied", sub_id)
                entitlements_sync_for_subscription(subscription=row)
                return row
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def subscription_record_payment_failure(*, subscription: Subscription, failed_at: dt.datetime) -> bool:
    """Date the grace period from the failed payment itself rather than from when we heard of it. Only an
    earlier failure within the current period moves it, so a stale failure from an old period cannot."""
    with transaction.atomic():
        moved = (
            Subscription.objects.filter(
                pk=subscription.pk,
                status=SubscriptionStatus.PAST_DUE,
                past_due_since__gt=failed_at,
                current_period_start__lte=failed_at,
            ).update(past_due_since=failed_at, updated_at=timezone.now())
            > 0
        )
        if moved:
            entitlements_sync_for_subscription(subscription=subscription)
    return moved


def subscription_end_with_customer(*, subscription: Subscription, deleted_at: dt.datetime) -> Subscription:
    """Stripe cancels every subscription of a customer it deletes: mirror that at once, rather than wait for
    each subscription's own event, and end their entitlements."""
    with transaction.atomic():
        row = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if row.status not in TERMINAL:
            row.status = SubscriptionStatus.CANCELED
            row.canceled_at = row.canceled_at or deleted_at
        # Never later than now: a customer Stripe has deleted pays for nothing, whatever the clocks say.
        row.ended_at = min(filter(None, [row.ended_at, deleted_at, timezone.now()]))
        row.cancel_at_period_end = False
        row.stripe_synced_at = max(filter(None, [row.stripe_synced_at, deleted_at]))
        row.save()
        entitlements_sync_for_subscription(subscription=row)
    return row


def billing_customer_link(*, user: User, stripe_customer_id: str) -> BillingCustomer:
    """Record that ``stripe_customer_id`` pays for ``user``. A customer already linked to someone else keeps
    its link (Stripe's customer is the payer; the conflict is logged for an operator)."""
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                existing = (
                    BillingCustomer.objects.select_for_update()
                    .filter(stripe_customer_id=stripe_customer_id)
                    .first()
                )
                if existing is not None:
                    if existing.user_id != user.pk:
                        logger.warning(
                            "Stripe customer %s is linked to user %s; not relinking it to user %s",
                            stripe_customer_id,
                            existing.user_id,
                            user.pk,
                        )
                    return existing
                customer, _ = BillingCustomer.objects.update_or_create(
                    user=user, defaults={"stripe_customer_id": stripe_customer_id, "deleted_at": None}
                )
                return customer
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def billing_customer_mark_deleted(*, stripe_customer_id: str, deleted_at: dt.datetime) -> bool:
    return (
        BillingCustomer.objects.filter(stripe_customer_id=stripe_customer_id, deleted_at__isnull=True).update(
            deleted_at=deleted_at, updated_at=timezone.now()
        )
        > 0
    )


def conversion_attempt_mark_converted(*, token: str, subscription: Subscription) -> bool:
    """Credit the offer whose link the member followed to checkout; the first conversion wins."""
    try:
        parsed = uuid.UUID(str(token))
    except ValueError:
        logger.warning("checkout carried an unreadable conversion token %r", token)
        return False
    now = timezone.now()
    return (
        ConversionAttempt.objects.filter(token=parsed)
        .exclude(status=ConversionStatus.CONVERTED)
        .update(
            status=ConversionStatus.CONVERTED, converted_at=now, subscription=subscription, updated_at=now
        )
        > 0
    )
