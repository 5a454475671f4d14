"""The plans page and the checkout's landing pages, rendered through the real URLs and templates."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries
from pytest_django.fixtures import Settings as DjangoSettings

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import PlanFactory, PlanPriceFactory, SubscriptionFactory
from apps.billing.models import Entitlement, Plan, Subscription, SubscriptionStatus
from apps.portal.billing_views import OFFER_SESSION_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _twin(settings: DjangoSettings) -> None:
    settings.STRIPE_SECRET_KEY = ""
    settings.BILLING_CURRENCY = "usd"


def _plan(slug: str, *, rank: int, monthly: int, yearly: int | None = None, **kwargs: object) -> Plan:
    plan = PlanFactory.create(slug=slug, name=slug.title(), rank=rank, **kwargs)
    PlanPriceFactory(plan=plan, interval="month", amount_minor=monthly)
    if yearly is not None:
        PlanPriceFactory(plan=plan, interval="year", amount_minor=yearly)
    return plan


@pytest.fixture
def member(client: Client) -> User:
    user = UserFactory.create()
    client.force_login(user)
    return user


def test_plans_page_shows_each_tier_with_its_prices_trial_and_benefits(client: Client) -> None:
    _plan(
        "pro",
        rank=1,
        monthly=2900,
        yearly=29000,
        trial_days=7,
        description="Daily analysis for active traders.",
        benefits=["Weekly market report", "Private Telegram channel"],
    )
    _plan("elite", rank=2, monthly=7900, yearly=79000, trial_days=0, benefits=["Everything in Pro"])
    _plan("retired", rank=3, monthly=1000, is_active=False)
    hidden_price = _plan("eur-only", rank=4, monthly=100)
    hidden_price.prices.update(currency="eur")

    response = client.get(reverse("portal:plans"))

    assert response.status_code == 200
    html = response.content.decode()
    assert [card.plan.slug for card in response.context["cards"]] == ["pro", "elite"]
    assert "Daily analysis for active traders." in html
    assert "Weekly market report" in html
    assert "Private Telegram channel" in html
    assert "Everything in Pro" in html
    for amount in ("$29.00", "$290.00", "$79.00", "$790.00"):
        assert amount in html
    assert "$24.17/month" in html  # the yearly price per month
    assert "7-day free trial" in html
    assert html.count("-day free trial") == 1
    assert "Retired" not in html
    assert "Eur-Only" not in html
    assert f'action="{reverse("portal:checkout_start", args=["pro"])}"' in html
    assert 'name="interval" value="year"' in html
    assert "Your plan" not in html
    assert "local checkout twin" in html


def test_plans_page_marks_the_current_plan_of_a_subscriber(client: Client, member: User) -> None:
    pro = _plan("pro", rank=1, monthly=2900)
    _plan("elite", rank=2, monthly=7900)
    SubscriptionFactory(user=member, plan=pro, price=pro.prices.get(), status=SubscriptionStatus.ACTIVE)

    response = client.get(reverse("portal:plans"))

    html = response.content.decode()
    assert [(card.plan.slug, card.is_current) for card in response.context["cards"]] == [
        ("pro", True),
        ("elite", False),
    ]
    assert html.count("Your plan") == 1
    assert "plan-card--current" in html
    # A subscriber changes plan in the billing portal rather than buying a second subscription.
    assert f'action="{reverse("portal:checkout_start", args=["elite"])}"' not in html
    assert "Switch to Elite in billing" in html


def test_plans_page_tells_a_former_trialist_the_trial_is_used(client: Client, member: User) -> None:
    pro = _plan("pro", rank=1, monthly=2900, trial_days=7)
    SubscriptionFactory(
        user=member,
        plan=pro,
        price=pro.prices.get(),
        status=SubscriptionStatus.CANCELED,
        trial_end=timezone.now() - dt.timedelta(days=40),
    )

    html = client.get(reverse("portal:plans")).content.decode()

    assert "7-day free trial" not in html
    assert "you have had yours" in html
    assert "Your plan" not in html


def test_plans_page_remembers_the_offer_link(client: Client) -> None:
    _plan("pro", rank=1, monthly=2900)
    token = uuid.uuid4()

    client.get(reverse("portal:plans"), {"offer": str(token)})
    assert client.session[OFFER_SESSION_KEY] == str(token)

    client.get(reverse("portal:plans"), {"offer": "'; DROP TABLE plans; --"})
    assert client.session[OFFER_SESSION_KEY] == str(token)


def test_plans_page_with_nothing_on_sale(client: Client) -> None:
    html = client.get(reverse("portal:plans")).content.decode()

    assert "No plans are on sale right now." in html


# Anonymous: the plans and their prices. A member adds the session, the user, the access state, the latest
# subscription and the trial history.
PLANS_QUERIES = {"anonymous": 2, "member": 7}


@pytest.mark.parametrize("visitor", ["anonymous", "member"])
def test_plans_page_queries_do_not_grow_with_plans(
    client: Client, django_assert_max_num_queries: DjangoAssertNumQueries, visitor: str
) -> None:
    plans = [_plan(f"plan-{i}", rank=i, monthly=1000 + i, yearly=10000 + i) for i in range(2)]
    if visitor == "member":
        user = UserFactory.create()
        client.force_login(user)
        SubscriptionFactory(user=user, plan=plans[0], price=plans[0].prices.first())
    url = reverse("portal:plans")
    client.get(url)  # warm the per-process caches so both counts start equal

    with django_assert_max_num_queries(PLANS_QUERIES[visitor]) as two:
        assert len(client.get(url).context["cards"]) == 2
    for i in range(2, 6):
        _plan(f"plan-{i}", rank=i, monthly=1000 + i, yearly=10000 + i)
    with django_assert_max_num_queries(PLANS_QUERIES[visitor]) as six:
        assert len(client.get(url).context["cards"]) == 6

    assert len(six.captured_queries) == len(two.captured_queries)


def test_success_page_shows_activation_until_the_webhook_grants_access(client: Client, member: User) -> None:
    response = client.get(reverse("portal:checkout_success"), {"session_id": "cs_test_a1YS1URlnyQC"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "We are activating your membership" in html
    assert "Free account" in html
    assert (
        '<meta http-equiv="refresh" content="5;url=/billing/success/?session_id=cs_test_a1YS1URlnyQC&amp;check=1">'
        in html
    )
    # Only the webhook grants access: the landing page writes nothing.
    assert Subscription.objects.count() == 0
    assert Entitlement.objects.count() == 0


def test_success_page_stops_checking_after_a_minute(client: Client, member: User) -> None:
    html = client.get(
        reverse("portal:checkout_success"), {"session_id": "cs_x", "check": "12"}
    ).content.decode()

    assert 'http-equiv="refresh"' not in html
    assert "Still not active?" in html


def test_success_page_shows_the_access_the_webhook_granted(client: Client, member: User) -> None:
    pro = _plan("pro", rank=1, monthly=2900)
    SubscriptionFactory(user=member, plan=pro, price=pro.prices.get(), status=SubscriptionStatus.ACTIVE)

    html = client.get(reverse("portal:checkout_success"), {"session_id": "cs_x"}).content.decode()

    assert "Your Pro membership is active." in html
    assert "We are activating" not in html
    assert 'http-equiv="refresh"' not in html
    assert f'href="{reverse("portal:library")}"' in html


def test_success_page_needs_a_login(client: Client) -> None:
    url = reverse("portal:checkout_success")

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={url}"


def test_cancel_page_says_nothing_was_charged(client: Client) -> None:
    response = client.get(reverse("portal:checkout_cancel"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "No payment was taken" in html
    assert f'href="{reverse("portal:plans")}"' in html
