"""``manage.py stripe_sync_plans`` with the real ``stripe`` library against a fake Stripe on 127.0.0.1 that
keeps products and prices the way Stripe does and answers with objects shaped like Stripe's own fixtures."""

from __future__ import annotations

import copy
import itertools
import json
import re
from io import StringIO
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings as DjangoSettings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.billing.factories import PlanFactory, PlanPriceFactory
from apps.billing.models import Plan, PlanPrice
from apps.billing.services.plans import StripeNotConfigured, plans_sync_to_stripe
from apps.billing.tests.stripe_fakes import RESOURCES

pytestmark = pytest.mark.django_db

FIXTURES = RESOURCES


class FakeStripeCatalogue:
    """Products and prices as Stripe keeps them: ids it assigns, prices it never changes except ``active``,
    lookup keys moved by ``transfer_lookup_key``, and creates replayed for a repeated idempotency key."""

    def __init__(self) -> None:
        self.products: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.idempotency_keys: list[str] = []
        self._replies: dict[str, dict[str, Any]] = {}
        self._serial = itertools.count(1)

    # --- what a test inspects -------------------------------------------------------------------------------

    def writes(self) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if r[0] == "POST"]

    def creates(self) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.writes() if r[1] in ("/v1/products", "/v1/prices")]

    # --- the server -----------------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        params = dict(
            parse_qsl(request.get_data(as_text=True) or request.query_string.decode(), keep_blank_values=True)
        )
        self.requests.append((request.method, request.path, params))
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key:
            self.idempotency_keys.append(key)
            if key in self._replies:
                return self._json(self._replies[key])
        body = self._route(request.method, request.path, params)
        if body is None:
            return self._json(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": "No such object",
                    }
                },
                status=404,
            )
        if request.method == "POST" and key:
            self._replies[key] = body
        return self._json(body)

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _id(self, prefix: str) -> str:
        return f"{prefix}_Fake{next(self._serial):08d}"

    def _route(self, method: str, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        if (method, path) == ("GET", "/v1/products/search"):
            slug = re.fullmatch(r"metadata\['plan_slug'\]:'(.+)'", params["query"])
            assert slug, params["query"]
            found = [p for p in self.products.values() if p["metadata"].get("plan_slug") == slug.group(1)]
            return {
                "object": "search_result",
                "data": found,
                "has_more": False,
                "next_page": None,
                "url": path,
            }
        if (method, path) == ("POST", "/v1/products"):
            product = copy.deepcopy(FIXTURES["product"]) | {
                "id": self._id("prod"),
                "name": params["name"],
                "description": params.get("description"),
                "active": params["active"] == "true",
                "metadata": _metadata(params),
                "default_price": None,
            }
            self.products[product["id"]] = product
            return product
        if (method, path) == ("GET", "/v1/prices"):
            keys = {v for k, v in params.items() if k.startswith("lookup_keys[")}
            found = [
                p
                for p in self.prices.values()
                if p["lookup_key"] in keys and (params.get("active") != "true" or p["active"])
            ]
            return {
                "object": "list",
                "data": found[: int(params.get("limit", 10))],
                "has_more": False,
                "url": path,
            }
        if (method, path) == ("POST", "/v1/prices"):
            if params.get("transfer_lookup_key") == "true":
                for other in self.prices.values():
                    if other["lookup_key"] == params["lookup_key"]:
                        other["lookup_key"] = None
            price = copy.deepcopy(FIXTURES["price"]) | {
                "id": self._id("price"),
                "product": params["product"],
                "currency": params["currency"],
                "unit_amount": int(params["unit_amount"]),
                "unit_amount_decimal": params["unit_amount"],
                "lookup_key": params.get("lookup_key"),
                "metadata": _metadata(params),
            }
            price["recurring"]["interval"] = params["recurring[interval]"]
            self.prices[price["id"]] = price
            return price
        if match := re.fullmatch(r"/v1/(products|prices)/(\w+)", path):
            store = self.products if match.group(1) == "products" else self.prices
            obj = store.get(match.group(2))
            if obj is not None and method == "POST":
                for name in ("name", "description"):
                    if name in params:
                        obj[name] = params[name] or None
                if "active" in params:
                    obj["active"] = params["active"] == "true"
                if any(k.startswith("metadata[") for k in params):
                    obj["metadata"] = _metadata(params)
            return obj
        raise AssertionError(f"the fake Stripe does not know {method} {path}")


def _metadata(params: dict[str, str]) -> dict[str, str]:
    return {k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")}


@pytest.fixture
def stripe_fake(httpserver: HTTPServer, settings: DjangoSettings) -> FakeStripeCatalogue:
    fake = FakeStripeCatalogue()
    httpserver.expect_request(re.compile(r"^/v1/")).respond_with_handler(fake)
    settings.STRIPE_SECRET_KEY = "sk_test_coinlink"
    settings.STRIPE_API_BASE = httpserver.url_for("").rstrip("/")
    return fake


@pytest.fixture
def pro() -> Plan:
    plan = PlanFactory.create(
        slug="pro",
        name="Pro",
        description="Daily analysis and the members' channels.",
        trial_days=7,
    )
    PlanPriceFactory(plan=plan, interval="month", amount_minor=2900, currency="usd")
    PlanPriceFactory(plan=plan, interval="year", amount_minor=29000, currency="usd")
    return plan


def _sync() -> str:
    out = StringIO()
    call_command("stripe_sync_plans", stdout=out)
    return out.getvalue()


def test_first_run_creates_the_product_and_prices_and_stores_their_ids(
    stripe_fake: FakeStripeCatalogue, pro: Plan
) -> None:
    output = _sync()

    pro.refresh_from_db()
    monthly, yearly = pro.prices.order_by("interval")
    assert pro.stripe_product_id == "prod_Fake00000001"
    assert monthly.stripe_price_id == "price_Fake00000002"
    assert yearly.stripe_price_id == "price_Fake00000003"
    assert stripe_fake.requests == [
        ("GET", "/v1/products/search", {"query": "metadata['plan_slug']:'pro'", "limit": "1"}),
        (
            "POST",
            "/v1/products",
            {
                "name": "Pro",
                "active": "true",
                "metadata[plan_slug]": "pro",
                "description": "Daily analysis and the members' channels.",
            },
        ),
        ("GET", "/v1/prices", {"lookup_keys[0]": "pro_month_usd", "active": "true", "limit": "1"}),
        (
            "POST",
            "/v1/prices",
            {
                "product": "prod_Fake00000001",
                "currency": "usd",
                "unit_amount": "2900",
                "recurring[interval]": "month",
                "lookup_key": "pro_month_usd",
                "transfer_lookup_key": "true",
                "metadata[plan_slug]": "pro",
                "metadata[plan_price_id]": str(monthly.pk),
            },
        ),
        ("GET", "/v1/prices", {"lookup_keys[0]": "pro_year_usd", "active": "true", "limit": "1"}),
        (
            "POST",
            "/v1/prices",
            {
                "product": "prod_Fake00000001",
                "currency": "usd",
                "unit_amount": "29000",
                "recurring[interval]": "year",
                "lookup_key": "pro_year_usd",
                "transfer_lookup_key": "true",
                "metadata[plan_slug]": "pro",
                "metadata[plan_price_id]": str(yearly.pk),
            },
        ),
    ]
    # Every create carries its own idempotency key.
    assert len(stripe_fake.idempotency_keys) == 3
    assert len(set(stripe_fake.idempotency_keys)) == 3
    assert "products created: 1 (prod_Fake00000001)" in output
    assert "prices created: 2 (price_Fake00000002, price_Fake00000003)" in output


def test_second_run_creates_and_changes_nothing(stripe_fake: FakeStripeCatalogue, pro: Plan) -> None:
    _sync()
    stripe_fake.requests.clear()

    output = _sync()

    assert stripe_fake.writes() == []
    assert stripe_fake.requests == [
        ("GET", "/v1/products/prod_Fake00000001", {}),
        ("GET", "/v1/prices/price_Fake00000002", {}),
        ("GET", "/v1/prices/price_Fake00000003", {}),
    ]
    assert len(stripe_fake.products) == 1
    assert len(stripe_fake.prices) == 2
    assert "Stripe catalogue already up to date." in output


def test_changed_amount_creates_a_new_price_and_archives_the_old(
    stripe_fake: FakeStripeCatalogue, pro: Plan
) -> None:
    _sync()
    monthly = pro.prices.get(interval="month")
    old_id = monthly.stripe_price_id
    monthly.amount_minor = 3400
    monthly.save()
    stripe_fake.requests.clear()

    output = _sync()

    monthly.refresh_from_db()
    assert monthly.stripe_price_id == "price_Fake00000004"
    assert stripe_fake.writes() == [
        (
            "POST",
            "/v1/prices",
            {
                "product": "prod_Fake00000001",
                "currency": "usd",
                "unit_amount": "3400",
                "recurring[interval]": "month",
                "lookup_key": "pro_month_usd",
                "transfer_lookup_key": "true",
                "metadata[plan_slug]": "pro",
                "metadata[plan_price_id]": str(monthly.pk),
            },
        ),
        ("POST", f"/v1/prices/{old_id}", {"active": "false"}),
    ]
    assert stripe_fake.prices[str(old_id)]["active"] is False
    assert stripe_fake.prices[str(old_id)]["lookup_key"] is None
    assert stripe_fake.prices["price_Fake00000004"]["lookup_key"] == "pro_month_usd"
    # The yearly price did not change and was left alone.
    assert pro.prices.get(interval="year").stripe_price_id == "price_Fake00000003"
    assert f"prices archived: 1 ({old_id})" in output


def test_renamed_or_retired_plan_updates_its_product(stripe_fake: FakeStripeCatalogue, pro: Plan) -> None:
    _sync()
    Plan.objects.filter(pk=pro.pk).update(name="Pro+", description="", is_active=False)
    stripe_fake.requests.clear()

    _sync()

    assert stripe_fake.writes() == [
        (
            "POST",
            "/v1/products/prod_Fake00000001",
            {"name": "Pro+", "active": "false", "metadata[plan_slug]": "pro", "description": ""},
        )
    ]
    product = stripe_fake.products["prod_Fake00000001"]
    assert (product["name"], product["description"], product["active"]) == ("Pro+", None, False)


def test_retired_price_is_archived_and_keeps_its_id(stripe_fake: FakeStripeCatalogue, pro: Plan) -> None:
    _sync()
    yearly = pro.prices.get(interval="year")
    PlanPrice.objects.filter(pk=yearly.pk).update(is_active=False)
    stripe_fake.requests.clear()

    _sync()

    yearly.refresh_from_db()
    assert yearly.stripe_price_id == "price_Fake00000003"
    assert stripe_fake.writes() == [("POST", "/v1/prices/price_Fake00000003", {"active": "false"})]


def test_run_that_lost_its_ids_finds_the_objects_instead_of_creating_twins(
    stripe_fake: FakeStripeCatalogue, pro: Plan
) -> None:
    _sync()
    # As if the run had died after Stripe created everything but before our rows were saved.
    Plan.objects.filter(pk=pro.pk).update(stripe_product_id=None)
    PlanPrice.objects.filter(plan=pro).update(stripe_price_id=None)
    stripe_fake.requests.clear()

    _sync()

    assert stripe_fake.creates() == []
    pro.refresh_from_db()
    assert pro.stripe_product_id == "prod_Fake00000001"
    assert list(pro.prices.order_by("interval").values_list("stripe_price_id", flat=True)) == [
        "price_Fake00000002",
        "price_Fake00000003",
    ]


def test_checkout_twin_ids_are_replaced_by_real_ones(stripe_fake: FakeStripeCatalogue, pro: Plan) -> None:
    Plan.objects.filter(pk=pro.pk).update(stripe_product_id="prod_twin_pro")
    PlanPrice.objects.filter(plan=pro).update(stripe_price_id=None)
    monthly = pro.prices.get(interval="month")
    PlanPrice.objects.filter(pk=monthly.pk).update(stripe_price_id=f"price_twin_{monthly.pk}")

    _sync()

    pro.refresh_from_db()
    monthly.refresh_from_db()
    assert pro.stripe_product_id == "prod_Fake00000001"
    assert monthly.stripe_price_id == "price_Fake00000002"
    assert not any("twin" in path for _, path, _ in stripe_fake.requests)


def test_refuses_without_a_stripe_key(settings: DjangoSettings, pro: Plan) -> None:
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY is not set"):
        _sync()
    with pytest.raises(StripeNotConfigured):
        plans_sync_to_stripe()

    pro.refresh_from_db()
    assert pro.stripe_product_id is None
    assert list(pro.prices.values_list("stripe_price_id", flat=True)) == [None, None]


def test_stripe_refusal_becomes_a_command_error(stripe_fake: FakeStripeCatalogue, pro: Plan) -> None:
    Plan.objects.filter(pk=pro.pk).update(stripe_product_id="prod_DeletedInTheDashboard")

    with pytest.raises(CommandError, match="Stripe refused or failed"):
        _sync()

    assert stripe_fake.creates() == []
