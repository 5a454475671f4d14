"""Checkout and the billing portal through the real URLs: with a Stripe key, the real ``stripe`` library against
a fake Stripe on 127.0.0.1 answering with Stripe's own example objects; without one, the local checkout twin
walked end to end into the real subscription and entitlement services."""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import json
import re
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
from django.test import Client, override_settings
from django.urls import NoReverseMatch, clear_url_caches, reverse
from django.utils import timezone
from pytest_django.fixtures import Settings as DjangoSettings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing import twin
from apps.billing.factories import (
    BillingCustomerFactory,
    ConversionAttemptFactory,
    PlanFactory,
    PlanPriceFactory,
    SubscriptionFactory,
)
from apps.billing.models import (
    BillingCustomer,
    CheckoutTwinSession,
    CheckoutTwinSessionStatus,
    ConversionStatus,
    Entitlement,
    EntitlementSource,
    Plan,
    PlanPrice,
    Subscription,
    SubscriptionStatus,
)
from apps.billing.services.checkout import checkout_session_create
from apps.billing.tests.stripe_fakes import RESOURCES
from apps.core.resilience import PermanentError

pytestmark = pytest.mark.django_db

FIXTURES = RESOURCES
SITE = "https://coinlink.example"
SESSION_ID = "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY"
PORTAL_URL = "https://billing.stripe.com/p/session/test_YWNjdF8xTTJKVGtMa2RJd0h1"


class FakeStripeCheckout:
    """Answers Checkout and customer-portal session creates as Stripe does, and keeps what it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.fail_with: int | None = None

    def __call__(self, request: Request) -> Response:
        params = dict(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
        self.requests.append((request.method, request.path, params))
        if self.fail_with:
            error = {"error": {"type": "invalid_request_error", "message": "No such price"}}
            return Response(json.dumps(error), status=self.fail_with, content_type="application/json")
        if (request.method, request.path) == ("POST", "/v1/checkout/sessions"):
            body = copy.deepcopy(FIXTURES["checkout.session"]) | {
                "mode": "subscription",
                "client_reference_id": params["client_reference_id"],
                "customer": params.get("customer"),
                "customer_email": params.get("customer_email"),
                "success_url": params["success_url"],
                "cancel_url": params["cancel_url"],
                "allow_promotion_codes": True,
                "payment_intent": None,
            }
        elif (request.method, request.path) == ("POST", "/v1/billing_portal/sessions"):
            body = copy.deepcopy(FIXTURES["billing_portal.session"]) | {
                "customer": params["customer"],
                "return_url": params["return_url"],
                "url": PORTAL_URL,
            }
        else:
            raise AssertionError(f"the fake Stripe does not know {request.method} {request.path}")
        return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def stripe_fake(httpserver: HTTPServer, settings: DjangoSettings) -> FakeStripeCheckout:
    fake = FakeStripeCheckout()
    httpserver.expect_request(re.compile(r"^/v1/")).respond_with_handler(fake)
    settings.STRIPE_SECRET_KEY = "sk_test_coinlink"
    settings.STRIPE_API_BASE = httpserver.url_for("").rstrip("/")
    settings.SITE_URL = SITE
    return fake


@pytest.fixture
def twin_mode(settings: DjangoSettings) -> None:
    settings.STRIPE_SECRET_KEY = ""
    settings.SITE_URL = "http://testserver"


@pytest.fixture
def pro() -> Plan:
    plan = PlanFactory.create(
        slug="pro", name="Pro", trial_days=7, entitlement_keys=["portal.premium", "portal.elite"]
    )
    PlanPriceFactory(plan=plan, interval="month", amount_minor=2900, stripe_price_id="price_1ProMonthly")
    PlanPriceFactory(plan=plan, interval="year", amount_minor=29000, stripe_price_id="price_1ProYearly")
    return plan


@pytest.fixture
def member(client: Client) -> User:
    user = UserFactory.create(email="ada@example.com")
    client.force_login(user)
    return user


def _checkout_url(plan: Plan) -> str:
    return reverse("portal:checkout_start", args=[plan.slug])


def _price(plan: Plan, interval: str) -> PlanPrice:
    return plan.prices.get(interval=interval)


def _nothing_billed() -> None:
    assert Subscription.objects.count() == 0
    assert Entitlement.objects.count() == 0
    assert BillingCustomer.objects.count() == 0


# --- checkout with Stripe -----------------------------------------------------------------------------------


def test_first_checkout_opens_a_stripe_session_with_a_trial_and_redirects_to_it(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    response = client.post(_checkout_url(pro), {"interval": "month"})

    assert response.status_code == 303
    assert response["Location"] == FIXTURES["checkout.session"]["url"]
    monthly = _price(pro, "month")
    assert stripe_fake.requests == [
        (
            "POST",
            "/v1/checkout/sessions",
            {
                "mode": "subscription",
                "line_items[0][price]": "price_1ProMonthly",
                "line_items[0][quantity]": "1",
                "client_reference_id": str(member.pk),
                "metadata[user_id]": str(member.pk),
                "metadata[plan]": "pro",
                "metadata[price]": str(monthly.pk),
                "subscription_data[metadata][user_id]": str(member.pk),
                "subscription_data[metadata][plan]": "pro",
                "subscription_data[metadata][price]": str(monthly.pk),
                "subscription_data[trial_period_days]": "7",
                "allow_promotion_codes": "true",
                "success_url": f"{SITE}/billing/success/?session_id={{CHECKOUT_SESSION_ID}}",
                "cancel_url": f"{SITE}/billing/cancel/",
                "customer_email": "ada@example.com",
            },
        )
    ]
    # Starting a checkout grants nothing: the webhook does, once Stripe reports the subscription.
    _nothing_billed()


def test_returning_customer_pays_as_their_stripe_customer_without_a_second_trial(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    BillingCustomerFactory(user=member, stripe_customer_id="cus_QXg1o8vcGmoR32")
    SubscriptionFactory(
        user=member,
        plan=pro,
        price=_price(pro, "month"),
        status=SubscriptionStatus.CANCELED,
        trial_end=timezone.now() - dt.timedelta(days=60),
    )

    response = client.post(_checkout_url(pro), {"interval": "year"})

    assert response.status_code == 303
    [(_, _, params)] = stripe_fake.requests
    assert params["customer"] == "cus_QXg1o8vcGmoR32"
    assert "customer_email" not in params
    assert "subscription_data[trial_period_days]" not in params
    assert params["line_items[0][price]"] == "price_1ProYearly"
    assert params["metadata[price]"] == str(_price(pro, "year").pk)


def test_offer_link_travels_to_stripe_as_the_conversion_token(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    token = uuid.uuid4()
    client.get(reverse("portal:plans"), {"offer": str(token)})

    client.post(_checkout_url(pro), {"interval": "month"})

    [(_, _, params)] = stripe_fake.requests
    assert params["metadata[conversion_token]"] == str(token)
    assert params["subscription_data[metadata][conversion_token]"] == str(token)


def test_unreadable_offer_is_not_forwarded(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    client.get(reverse("portal:plans"), {"offer": "not-a-token"})

    client.post(_checkout_url(pro), {"interval": "month"})

    [(_, _, params)] = stripe_fake.requests
    assert not any("conversion_token" in name for name in params)


def test_anonymous_visitor_is_sent_to_log_in_and_nothing_is_created(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan
) -> None:
    response = client.post(_checkout_url(pro), {"interval": "month"})

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={reverse('portal:plans')}"
    assert stripe_fake.requests == []
    assert CheckoutTwinSession.objects.count() == 0
    _nothing_billed()


@pytest.mark.parametrize(
    ("change", "interval"),
    [
        ("plan_inactive", "month"),
        ("price_inactive", "month"),
        ("no_such_interval", "week"),
        ("no_yearly_price", "year"),
    ],
)
def test_what_is_not_for_sale_is_not_found(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User, change: str, interval: str
) -> None:
    if change == "plan_inactive":
        Plan.objects.filter(pk=pro.pk).update(is_active=False)
    elif change == "price_inactive":
        PlanPrice.objects.filter(plan=pro, interval="month").update(is_active=False)
    elif change == "no_yearly_price":
        PlanPrice.objects.filter(plan=pro, interval="year").delete()

    response = client.post(_checkout_url(pro), {"interval": interval})

    assert response.status_code == 404
    assert stripe_fake.requests == []


def test_checkout_is_post_only(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    assert client.get(_checkout_url(pro), {"interval": "month"}).status_code == 405
    assert stripe_fake.requests == []


def test_member_with_a_live_subscription_is_sent_to_the_billing_portal_instead(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    SubscriptionFactory(user=member, plan=pro, price=_price(pro, "month"), status=SubscriptionStatus.ACTIVE)

    response = client.post(_checkout_url(pro), {"interval": "year"}, follow=True)

    assert response.redirect_chain == [(reverse("portal:account"), 303)]
    assert "You already have a membership" in response.content.decode()
    assert stripe_fake.requests == []


def test_stripe_refusing_the_session_shows_an_error_and_charges_nothing(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    stripe_fake.fail_with = 400

    response = client.post(_checkout_url(pro), {"interval": "month"}, follow=True)

    assert response.redirect_chain == [(reverse("portal:plans"), 303)]
    assert "Payments are unavailable right now" in response.content.decode()
    assert len(stripe_fake.requests) == 1
    _nothing_billed()


def test_price_never_synced_to_stripe_cannot_be_bought(
    client: Client, stripe_fake: FakeStripeCheckout, pro: Plan, member: User
) -> None:
    PlanPrice.objects.filter(plan=pro).update(stripe_price_id=None)

    response = client.post(_checkout_url(pro), {"interval": "month"}, follow=True)

    assert response.redirect_chain == [(reverse("portal:plans"), 303)]
    assert "have not been synced to Stripe" in response.content.decode()
    assert stripe_fake.requests == []


# --- billing portal -----------------------------------------------------------------------------------------


def test_billing_portal_redirects_to_stripes_portal_session(
    client: Client, stripe_fake: FakeStripeCheckout, member: User
) -> None:
    BillingCustomerFactory(user=member, stripe_customer_id="cus_QXg1o8vcGmoR32")

    response = client.post(reverse("portal:billing_portal"))

    assert response.status_code == 303
    assert response["Location"] == PORTAL_URL
    assert stripe_fake.requests == [
        (
            "POST",
            "/v1/billing_portal/sessions",
            {"customer": "cus_QXg1o8vcGmoR32", "return_url": f"{SITE}/account/"},
        )
    ]


def test_billing_portal_without_a_customer_goes_back_to_the_account(
    client: Client, stripe_fake: FakeStripeCheckout, member: User
) -> None:
    BillingCustomerFactory(user=member, deleted_at=timezone.now())

    response = client.post(reverse("portal:billing_portal"), follow=True)

    assert response.redirect_chain == [(reverse("portal:account"), 303)]
    assert "You have no billing account yet." in response.content.decode()
    assert stripe_fake.requests == []


def test_billing_portal_refuses_anonymous_visitors(client: Client, stripe_fake: FakeStripeCheckout) -> None:
    response = client.post(reverse("portal:billing_portal"))

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={reverse('portal:account')}"
    assert stripe_fake.requests == []


def test_account_page_offers_manage_billing_only_to_billing_customers(
    client: Client, stripe_fake: FakeStripeCheckout, member: User
) -> None:
    button = f'action="{reverse("portal:billing_portal")}"'
    assert button not in client.get(reverse("portal:account")).content.decode()

    BillingCustomerFactory(user=member)

    html = client.get(reverse("portal:account")).content.decode()
    assert button in html
    assert "Manage billing" in html


# --- the checkout twin --------------------------------------------------------------------------------------


def _start_twin_checkout(client: Client, plan: Plan, interval: str = "month") -> CheckoutTwinSession:
    response = client.post(_checkout_url(plan), {"interval": interval})
    assert response.status_code == 303
    session = CheckoutTwinSession.objects.get()
    assert response["Location"] == reverse("portal:billing_twin_checkout", args=[session.id])
    return session


def test_twin_walks_from_checkout_to_a_trialing_membership(
    client: Client, twin_mode: None, pro: Plan, member: User
) -> None:
    PlanPrice.objects.filter(plan=pro).update(stripe_price_id=None)
    attempt = ConversionAttemptFactory.create(plan=pro)
    client.get(reverse("portal:plans"), {"offer": str(attempt.token)})

    session = _start_twin_checkout(client, pro)

    assert session.id.startswith("cs_twin_")
    assert session.status == CheckoutTwinSessionStatus.OPEN
    assert session.trial_period_days == 7
    monthly = _price(pro, "month")
    assert session.metadata == {
        "user_id": str(member.pk),
        "plan": "pro",
        "price": str(monthly.pk),
        "conversion_token": str(attempt.token),
    }
    # The twin gave the catalogue the ids Stripe would have, so its subscription maps back like a real one.
    assert monthly.stripe_price_id == f"price_twin_{monthly.pk}"
    pro.refresh_from_db()
    assert pro.stripe_product_id == "prod_twin_pro"
    _nothing_billed()

    page = client.get(reverse("portal:billing_twin_checkout", args=[session.id]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Subscribe to Pro" in html
    assert "$29.00" in html
    assert "7 days, then $29.00 per month" in html
    assert "Pay (test)" in html
    assert 'href="http://testserver/billing/cancel/"' in html

    paid = client.post(reverse("portal:billing_twin_checkout", args=[session.id]))

    assert paid.status_code == 303
    assert paid["Location"] == f"http://testserver/billing/success/?session_id={session.id}"
    session.refresh_from_db()
    assert session.status == CheckoutTwinSessionStatus.COMPLETE
    subscription = Subscription.objects.get()
    assert subscription.stripe_subscription_id == session.stripe_subscription_id
    assert subscription.stripe_subscription_id.startswith("sub_twin_")
    assert (subscription.user, subscription.plan, subscription.price) == (member, pro, monthly)
    assert subscription.status == SubscriptionStatus.TRIALING
    assert subscription.trial_end is not None
    assert subscription.current_period_start is not None
    assert subscription.trial_end - subscription.current_period_start == dt.timedelta(days=7)
    assert subscription.current_period_end == subscription.trial_end
    customer = BillingCustomer.objects.get(user=member)
    assert customer.stripe_customer_id == subscription.stripe_customer_id == session.customer
    entitlements = Entitlement.objects.filter(user=member, subscription=subscription)
    assert sorted(entitlements.values_list("key", "source")) == [
        ("portal.elite", EntitlementSource.TRIAL),
        ("portal.premium", EntitlementSource.TRIAL),
    ]
    attempt.refresh_from_db()
    assert (attempt.status, attempt.subscription) == (ConversionStatus.CONVERTED, subscription)

    success = client.get(paid["Location"])
    success_html = success.content.decode()
    assert "Free trial" in success_html
    assert "Your Pro free trial has started." in success_html
    assert 'http-equiv="refresh"' not in success_html


def test_twin_pays_once_however_often_pay_is_pressed(
    client: Client, twin_mode: None, pro: Plan, member: User
) -> None:
    session = _start_twin_checkout(client, pro)
    url = reverse("portal:billing_twin_checkout", args=[session.id])
    client.post(url)
    entitlements = list(Entitlement.objects.values_list("pk", "ends_at"))

    again = client.post(url)
    page = client.get(url)

    assert again.status_code == 303
    assert page.status_code == 303
    assert page["Location"] == again["Location"]
    assert Subscription.objects.count() == 1
    assert list(Entitlement.objects.values_list("pk", "ends_at")) == entitlements


def test_twin_without_a_trial_starts_an_active_month(
    client: Client, twin_mode: None, pro: Plan, member: User
) -> None:
    SubscriptionFactory(
        user=member,
        plan=pro,
        price=_price(pro, "month"),
        stripe_subscription_id="sub_twin_earlier",
        status=SubscriptionStatus.CANCELED,
        trial_end=timezone.now() - dt.timedelta(days=90),
    )
    session = _start_twin_checkout(client, pro, interval="year")
    assert session.trial_period_days is None

    client.post(reverse("portal:billing_twin_checkout", args=[session.id]))

    session.refresh_from_db()
    subscription = Subscription.objects.get(stripe_subscription_id=session.stripe_subscription_id)
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.trial_end is None
    assert subscription.price == _price(pro, "year")
    start, end = subscription.current_period_start, subscription.current_period_end
    assert start is not None
    assert end is not None
    assert (end.year, end.month, end.day) == (start.year + 1, start.month, start.day)
    assert sorted(subscription.entitlements.values_list("key", "source")) == [
        ("portal.elite", EntitlementSource.SUBSCRIPTION),
        ("portal.premium", EntitlementSource.SUBSCRIPTION),
    ]


def test_twin_cancel_writes_nothing(client: Client, twin_mode: None, pro: Plan, member: User) -> None:
    session = _start_twin_checkout(client, pro)
    page = client.get(reverse("portal:billing_twin_checkout", args=[session.id])).content.decode()
    assert f'href="{session.cancel_url}"' in page

    canceled = client.get(session.cancel_url)

    assert canceled.status_code == 200
    assert "No payment was taken" in canceled.content.decode()
    session.refresh_from_db()
    assert session.status == CheckoutTwinSessionStatus.OPEN
    assert session.stripe_subscription_id == ""
    _nothing_billed()


def test_twin_session_of_another_member_is_not_found(
    client: Client, twin_mode: None, pro: Plan, member: User
) -> None:
    session = _start_twin_checkout(client, pro)
    client.force_login(UserFactory.create())
    url = reverse("portal:billing_twin_checkout", args=[session.id])

    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    session.refresh_from_db()
    assert session.status == CheckoutTwinSessionStatus.OPEN
    _nothing_billed()


def test_expired_twin_session_cannot_be_paid(
    client: Client, twin_mode: None, pro: Plan, member: User
) -> None:
    session = _start_twin_checkout(client, pro)
    CheckoutTwinSession.objects.filter(pk=session.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    url = reverse("portal:billing_twin_checkout", args=[session.id])

    assert "This checkout expired" in client.get(url).content.decode()
    response = client.post(url, follow=True)

    assert response.redirect_chain == [(reverse("portal:plans"), 303)]
    session.refresh_from_db()
    assert session.status == CheckoutTwinSessionStatus.EXPIRED
    _nothing_billed()


def test_twin_is_unavailable_once_a_stripe_key_is_set(
    client: Client, twin_mode: None, settings: DjangoSettings, pro: Plan, member: User
) -> None:
    session = _start_twin_checkout(client, pro)
    settings.STRIPE_SECRET_KEY = "sk_test_coinlink"

    response = client.post(reverse("portal:billing_twin_checkout", args=[session.id]))

    assert response.status_code == 404
    session.refresh_from_db()
    assert session.status == CheckoutTwinSessionStatus.OPEN
    _nothing_billed()


@pytest.fixture
def production_urls() -> Iterator[None]:
    """The URLconf as a production process builds it at start-up."""
    import apps.portal.urls
    import coinlink.urls

    def rebuild() -> None:
        importlib.reload(apps.portal.urls)
        importlib.reload(coinlink.urls)
        clear_url_caches()

    with override_settings(PRODUCTION=True):
        rebuild()
        yield
    rebuild()


def test_twin_is_not_routed_in_production(
    client: Client, twin_mode: None, pro: Plan, member: User, production_urls: None
) -> None:
    session_id = f"cs_twin_{uuid.uuid4().hex}"

    with pytest.raises(NoReverseMatch):
        reverse("portal:billing_twin_checkout", args=[session_id])
    assert client.get(f"/billing/twin/checkout/{session_id}/").status_code == 404
    assert client.post(f"/billing/twin/checkout/{session_id}/").status_code == 404


def test_twin_services_refuse_in_production(
    client: Client, twin_mode: None, settings: DjangoSettings, pro: Plan, member: User
) -> None:
    session = _start_twin_checkout(client, pro)
    settings.PRODUCTION = True

    with pytest.raises(twin.CheckoutTwinUnavailable, match="never runs in production"):
        twin.checkout_twin_session_pay(session=session)
    with pytest.raises(twin.CheckoutTwinUnavailable):
        twin.checkout_twin_session_create(
            user=member,
            price=_price(pro, "month"),
            success_url=f"{SITE}/billing/success/",
            cancel_url=f"{SITE}/billing/cancel/",
            metadata={},
            trial_period_days=None,
            customer="",
            customer_email=member.email,
        )
    # Production without a key is refused by settings; with one, checkout never picks the twin.
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(PermanentError, match="STRIPE_SECRET_KEY is not set"):
        checkout_session_create(
            user=member,
            price=_price(pro, "month"),
            success_url=f"{SITE}/billing/success/",
            cancel_url=f"{SITE}/billing/cancel/",
        )
    assert CheckoutTwinSession.objects.count() == 1
    session.refresh_from_db()
    assert session.status == CheckoutTwinSessionStatus.OPEN
    _nothing_billed()
