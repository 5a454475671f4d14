"""Stripe in tests: Stripe's own example objects (``fixtures/stripe/fixtures3.json``) with the ids, statuses and
times a case needs, wrapped in events and signed exactly as Stripe signs them; and a fake Stripe API on loopback
that answers ``GET /v1/subscriptions/{id}`` with each subscription's current state, for the real ``stripe``
client to read."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import BillingCustomerFactory, PlanFactory, PlanPriceFactory
from apps.billing.models import Plan, PlanPrice

RESOURCES: dict[str, Any] = json.loads(
    (Path(settings.BASE_DIR) / "fixtures" / "stripe" / "fixtures3.json").read_text()
)["resources"]

WEBHOOK_SECRET = "whsec_test_5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f"
SECRET_KEY = "sk_test_coinlink_fake"
WEBHOOK_URL = "/billing/stripe/webhook/"
API_VERSION = "2025-08-27.basil"

_serial = itertools.count(1)


def ts(moment: dt.datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def at_second(moment: dt.datetime) -> dt.datetime:
    """Stripe's times are whole seconds."""
    return moment.replace(microsecond=0)


def unique(prefix: str) -> str:
    return f"{prefix}_T{next(_serial):010d}"


@dataclass
class Member:
    user: User
    customer_id: str
    plan: Plan
    price: PlanPrice


def member(
    *,
    keys: tuple[str, ...] = ("portal.premium", "discord.role:111"),
    grace_days: int = 3,
    grace_keys: tuple[str, ...] = (),
    linked: bool = True,
) -> Member:
    """A portal user, a plan granting ``keys`` with its Stripe price, and (``linked``) the user's Stripe
    customer."""
    plan = PlanFactory.create(
        entitlement_keys=list(keys), grace_days=grace_days, grace_entitlement_keys=list(grace_keys)
    )
    price = PlanPriceFactory.create(plan=plan, stripe_price_id=unique("price"))
    user = UserFactory.create()
    customer_id = unique("cus")
    if linked:
        BillingCustomerFactory.create(user=user, stripe_customer_id=customer_id)
    return Member(user=user, customer_id=customer_id, plan=plan, price=price)


def subscription_object(
    *,
    subscription_id: str,
    customer: str,
    price_id: str,
    product_id: str = "prod_QXg1hqf4jFNsqG",
    status: str = "active",
    period_start: dt.datetime,
    period_end: dt.datetime,
    trial_end: dt.datetime | None = None,
    cancel_at_period_end: bool = False,
    canceled_at: dt.datetime | None = None,
    ended_at: dt.datetime | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Stripe's example subscription with one item: the billing period on the item, as current API versions
    keep it."""
    obj = copy.deepcopy(RESOURCES["subscription"])
    item = obj["items"]["data"][0]
    item["price"]["id"] = price_id
    item["price"]["product"] = product_id
    item["subscription"] = subscription_id
    item["current_period_start"] = ts(period_start)
    item["current_period_end"] = ts(period_end)
    obj["items"]["url"] = f"/v1/subscription_items?subscription={subscription_id}"
    obj.update(
        id=subscription_id,
        customer=customer,
        status=status,
        start_date=ts(period_start),
        billing_cycle_anchor=ts(period_end),
        trial_start=ts(period_start) if trial_end else None,
        trial_end=ts(trial_end),
        cancel_at_period_end=cancel_at_period_end,
        cancel_at=ts(period_end) if cancel_at_period_end else None,
        canceled_at=ts(canceled_at),
        ended_at=ts(ended_at),
        metadata=metadata or {},
        pending_update=None,
        latest_invoice=None,
    )
    return obj


def checkout_session_object(
    *,
    session_id: str,
    customer: str,
    subscription: str,
    user_id: int | None,
    conversion_token: str | None = None,
) -> dict[str, Any]:
    obj = copy.deepcopy(RESOURCES["checkout.session"])
    metadata = {"user_id": str(user_id)} if user_id is not None else {}
    if conversion_token:
        metadata["conversion_token"] = conversion_token
    obj.update(
        id=session_id,
        mode="subscription",
        status="complete",
        payment_status="paid",
        customer=customer,
        subscription=subscription,
        client_reference_id=str(user_id) if user_id is not None else None,
        metadata=metadata,
        payment_intent=None,
    )
    return obj


def invoice_object(
    *, invoice_id: str, customer: str, subscription: str | None, status: str = "paid"
) -> dict[str, Any]:
    """Current API versions name the invoice's subscription under ``parent.subscription_details``."""
    obj = copy.deepcopy(RESOURCES["invoice"])
    obj.update(id=invoice_id, customer=customer, status=status, billing_reason="subscription_cycle")
    obj["parent"] = {
        "quote_details": None,
        "subscription_details": {"metadata": {}, "subscription": subscription} if subscription else None,
        "type": "subscription_details" if subscription else "quote_details",
    }
    for line in obj["lines"]["data"]:
        line["invoice"] = invoice_id
    return obj


def charge_object(*, charge_id: str, customer: str, amount: int, amount_refunded: int) -> dict[str, Any]:
    obj = copy.deepcopy(RESOURCES["charge"])
    obj.update(
        id=charge_id,
        customer=customer,
        amount=amount,
        amount_captured=amount,
        amount_refunded=amount_refunded,
        refunded=amount_refunded >= amount,
        captured=True,
    )
    return obj


def customer_object(*, customer_id: str) -> dict[str, Any]:
    obj = copy.deepcopy(RESOURCES["customer"])
    obj.update(id=customer_id)
    return obj


def event(
    event_type: str, obj: dict[str, Any], *, created: dt.datetime, event_id: str | None = None
) -> dict[str, Any]:
    """Stripe's example event around ``obj``."""
    data = copy.deepcopy(RESOURCES["event"])
    data.update(
        id=event_id or unique("evt"),
        type=event_type,
        created=ts(created),
        api_version=API_VERSION,
        livemode=False,
        pending_webhooks=1,
        data={"object": obj},
    )
    return data


def sign(body: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` as Stripe computes it: HMAC-SHA256 of ``"<t>.<body>"`` with the endpoint secret."""
    t = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={signature}"


def deliver(
    client: Client,
    data: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> Any:
    """Post ``data`` to the webhook endpoint as Stripe would; returns the test client's response."""
    body = json.dumps(data)
    header = signature if signature is not None else sign(body, secret=secret, timestamp=timestamp)
    return client.post(
        WEBHOOK_URL, data=body, content_type="application/json", headers={"Stripe-Signature": header}
    )


class FakeStripe:
    """Stripe's API as far as billing reads it: the current state of each subscription. ``subscriptions`` is
    what Stripe knows now; ``calls`` is every request the real client made."""

    SUBSCRIPTION = re.compile(r"^/v1/subscriptions/(?P<id>[A-Za-z0-9_]+)$")

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.failure: tuple[int, dict[str, Any]] | None = None
        # Seconds each answer takes, so that racing workers overlap.
        self.latency = 0.0
        server.expect_request(self.SUBSCRIPTION, method="GET").respond_with_handler(self._subscription)

    @classmethod
    def install(cls, server: HTTPServer, django_settings: Any) -> FakeStripe:
        django_settings.STRIPE_SECRET_KEY = SECRET_KEY
        django_settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        django_settings.STRIPE_API_BASE = server.url_for("/").rstrip("/")
        return cls(server)

    def put(self, subscription: dict[str, Any]) -> dict[str, Any]:
        self.subscriptions[subscription["id"]] = copy.deepcopy(subscription)
        return subscription

    def fail_with(self, status: int, error: dict[str, Any]) -> None:
        self.failure = (status, {"error": error})

    def reads(self, subscription_id: str | None = None) -> int:
        return sum(
            1
            for method, path, _ in self.calls
            if subscription_id is None or path.endswith(f"/{subscription_id}")
        )

    def _subscription(self, request: Request) -> Response:
        self.calls.append((request.method, request.path, dict(request.headers)))
        time.sleep(self.latency)
        if self.failure is not None:
            status, body = self.failure
            return Response(json.dumps(body), status=status, content_type="application/json")
        match = self.SUBSCRIPTION.match(request.path)
        subscription = self.subscriptions.get(match["id"]) if match else None
        if subscription is None:
            error = {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "id",
                "message": f"No such subscription: '{match['id'] if match else ''}'",
            }
            return Response(json.dumps({"error": error}), status=404, content_type="application/json")
        return Response(json.dumps(subscription), status=200, content_type="application/json")
