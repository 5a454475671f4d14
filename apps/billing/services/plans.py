"""The plan catalogue in Stripe: one product per plan and one price per plan price, created or brought up to
date by ``plans_sync_to_stripe`` (``manage.py stripe_sync_plans``), and the reads the plans page and checkout
use to find what is for sale.

Stripe prices are immutable: a changed amount, currency or interval becomes a new price, and the old one is
archived so no new checkout can use it while existing subscriptions keep it. Our rows find their Stripe
objects again through the stored ids, else through ``metadata['plan_slug']`` (products) and the price's
``lookup_key``, and every create carries an idempotency key derived from its parameters, so a run that died
between Stripe's answer and our save does not create twins on the next run (the key also covers the minute or
so in which Stripe's search does not yet see a new product).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Prefetch

from apps.billing.models import Plan, PlanPrice
from apps.billing.stripe_client import stripe_call
from apps.billing.twin import is_twin_id

logger = logging.getLogger(__name__)


class StripeNotConfigured(Exception):
    """The catalogue cannot be synced without a Stripe secret key."""


@dataclass
class PlanSyncReport:
    products_created: list[str] = field(default_factory=list)
    products_updated: list[str] = field(default_factory=list)
    prices_created: list[str] = field(default_factory=list)
    prices_archived: list[str] = field(default_factory=list)
    prices_reactivated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(
            (
                self.products_created,
                self.products_updated,
                self.prices_created,
                self.prices_archived,
                self.prices_reactivated,
            )
        )


# --- reads for the plans page and checkout ------------------------------------------------------------------


def plan_list_for_sale(*, currency: str) -> list[Plan]:
    """Active plans, cheapest tier first, each with its active prices in ``currency`` loaded, monthly first
    (``plan.prices_for_sale``)."""
    active_prices = PlanPrice.objects.filter(is_active=True, currency=currency).order_by("interval", "id")
    return list(
        Plan.objects.filter(is_active=True)
        .order_by("rank", "name")
        .prefetch_related(Prefetch("prices", queryset=active_prices, to_attr="prices_for_sale"))
    )


def plan_price_get_for_sale(*, plan_slug: str, interval: str, currency: str) -> PlanPrice | None:
    """The active price of an active plan for one billing interval and currency, or None when it is not for
    sale."""
    return (
        PlanPrice.objects.filter(
            plan__slug=plan_slug, plan__is_active=True, interval=interval, currency=currency, is_active=True
        )
        .select_related("plan")
        .first()
    )


# --- sync to Stripe -----------------------------------------------------------------------------------------


def plans_sync_to_stripe() -> PlanSyncReport:
    """Create or update every plan's product and every price in Stripe, storing the ids Stripe assigns."""
    if not settings.STRIPE_SECRET_KEY:
        raise StripeNotConfigured(
            "STRIPE_SECRET_KEY is not set: the plans can only be synced to a real Stripe account. "
            "Without a key the portal uses the local checkout twin and needs no Stripe objects."
        )
    report = PlanSyncReport()
    for plan in Plan.objects.order_by("rank", "id"):
        _product_sync(plan=plan, report=report)
        # Archive retired prices first, so a retired row's lookup key is free when an active one claims it.
        for price in plan.prices.order_by("is_active", "id"):
            _price_sync(plan=plan, price=price, report=report)
    return report


def _stripe(fn: Callable[[Any], Any]) -> dict[str, Any]:
    """A Stripe call's answer as plain data."""
    return stripe_call(fn).to_dict()


def _idempotency_key(kind: str, identity: object, params: dict[str, Any]) -> str:
    # The same parameters give the same key, so a retried create returns Stripe's first answer; changed
    # parameters give a new key instead of Stripe's "idempotency key reused with different parameters".
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
    return f"coinlink-{kind}-{identity}-{digest}"


def _product_params(plan: Plan) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": plan.name,
        "active": plan.is_active,
        "metadata": {"plan_slug": plan.slug},
    }
    if plan.description:
        params["description"] = plan.description
    return params


def _product_differs(product: dict[str, Any], plan: Plan) -> bool:
    return (
        product["name"] != plan.name
        or (product.get("description") or "") != plan.description
        or bool(product["active"]) != plan.is_active
        or (product.get("metadata") or {}).get("plan_slug") != plan.slug
    )


def _product_sync(*, plan: Plan, report: PlanSyncReport) -> None:
    # The checkout twin's ids name nothing in Stripe.
    product_id = None if is_twin_id(plan.stripe_product_id) else plan.stripe_product_id
    if not product_id:
        query = f"metadata['plan_slug']:'{plan.slug}'"
        found = _stripe(lambda client: client.v1.products.search({"query": query, "limit": 1}))
        if found["data"]:
            product_id = found["data"][0]["id"]
        else:
            params = _product_params(plan)
            key = _idempotency_key("product", plan.slug, params)
            created = _stripe(lambda client: client.v1.products.create(params, {"idempotency_key": key}))
            plan.stripe_product_id = created["id"]
            plan.save(update_fields=["stripe_product_id", "updated_at"])
            report.products_created.append(created["id"])
            logger.info("created Stripe product %s for plan %s", created["id"], plan.slug)
            return
        plan.stripe_product_id = product_id
        plan.save(update_fields=["stripe_product_id", "updated_at"])

    product = _stripe(lambda client: client.v1.products.retrieve(product_id))
    if _product_differs(product, plan):
        # An empty string is how Stripe's API clears a description.
        params = {**_product_params(plan), "description": plan.description}
        _stripe(lambda client: client.v1.products.update(product_id, params))
        report.products_updated.append(product_id)
        logger.info("updated Stripe product %s for plan %s", product_id, plan.slug)


def _lookup_key(plan: Plan, price: PlanPrice) -> str:
    return f"{plan.slug}_{price.interval}_{price.currency}"


def _price_matches(stripe_price: dict[str, Any], plan: Plan, price: PlanPrice) -> bool:
    """Whether a Stripe price charges what the row says; these fields cannot change on a Stripe price."""
    recurring = stripe_price.get("recurring") or {}
    return (
        stripe_price.get("unit_amount") == price.amount_minor
        and stripe_price.get("currency") == price.currency
        and recurring.get("interval") == price.interval
        and recurring.get("interval_count", 1) == 1
        and stripe_price.get("product") == plan.stripe_product_id
    )


def _price_create(*, plan: Plan, price: PlanPrice, report: PlanSyncReport) -> str:
    params: dict[str, Any] = {
        "product": plan.stripe_product_id,
        "currency": price.currency,
        "unit_amount": price.amount_minor,
        "recurring": {"interval": price.interval},
        "lookup_key": _lookup_key(plan, price),
        # Moves the lookup key off the price this one replaces.
        "transfer_lookup_key": True,
        "metadata": {"plan_slug": plan.slug, "plan_price_id": str(price.pk)},
    }
    key = _idempotency_key("price", price.pk, params)
    created = _stripe(lambda client: client.v1.prices.create(params, {"idempotency_key": key}))
    price.stripe_price_id = created["id"]
    price.save(update_fields=["stripe_price_id", "updated_at"])
    report.prices_created.append(created["id"])
    logger.info("created Stripe price %s for %s", created["id"], price)
    return str(created["id"])


def _price_archive(*, stripe_price_id: str, report: PlanSyncReport) -> None:
    _stripe(lambda client: client.v1.prices.update(stripe_price_id, {"active": False}))
    report.prices_archived.append(stripe_price_id)
    logger.info("archived Stripe price %s", stripe_price_id)


def _price_sync(*, plan: Plan, price: PlanPrice, report: PlanSyncReport) -> None:
    stripe_price_id = price.stripe_price_id
    if not stripe_price_id or is_twin_id(stripe_price_id):
        if price.is_active:
            _price_adopt_or_create(plan=plan, price=price, report=report)
        # A retired price that never reached Stripe has nothing to archive.
        return

    stripe_price = _stripe(lambda client: client.v1.prices.retrieve(stripe_price_id))
    if not price.is_active:
        # A retired row keeps its id: existing subscriptions still point at that Stripe price.
        if stripe_price["active"]:
            _price_archive(stripe_price_id=stripe_price_id, report=report)
        return
    if not _price_matches(stripe_price, plan, price):
        _price_create(plan=plan, price=price, report=report)
        if stripe_price["active"]:
            _price_archive(stripe_price_id=stripe_price_id, report=report)
        return
    if not stripe_price["active"]:
        _stripe(lambda client: client.v1.prices.update(stripe_price_id, {"active": True}))
        report.prices_reactivated.append(stripe_price_id)
        logger.info("reactivated Stripe price %s", stripe_price_id)


def _price_adopt_or_create(*, plan: Plan, price: PlanPrice, report: PlanSyncReport) -> None:
    """Find the price a previous run created (its lookup key) before creating one."""
    lookup_key = _lookup_key(plan, price)
    found = _stripe(
        lambda client: client.v1.prices.list({"lookup_keys": [lookup_key], "active": True, "limit": 1})
    )
    existing = found["data"][0] if found["data"] else None
    if (
        existing is not None
        and _price_matches(existing, plan, price)
        and not PlanPrice.objects.filter(stripe_price_id=existing["id"]).exists()
    ):
        price.stripe_price_id = existing["id"]
        price.save(update_fields=["stripe_price_id", "updated_at"])
        return
    _price_create(plan=plan, price=price, report=report)
    if existing is not None:
        _price_archive(stripe_price_id=existing["id"], report=report)
