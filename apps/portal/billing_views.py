"""Plans, checkout and billing pages. The billing services decide; these views read the request, call them
and render or redirect. None of them grants access: that is the webhook's job (or, in development, the
checkout twin's replay of it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from apps.accounts.models import User
from apps.billing import twin
from apps.billing.models import BillingInterval, CheckoutTwinSessionStatus, Plan, PlanPrice
from apps.billing.services.checkout import (
    AlreadySubscribed,
    BillingPortalUnavailable,
    CheckoutRefused,
    billing_portal_url,
    checkout_session_create,
    checkout_uses_twin,
    user_had_trial,
)
from apps.billing.services.plans import plan_list_for_sale, plan_price_get_for_sale
from apps.core.models import format_money
from apps.core.resilience import IntegrationError
from apps.portal.member_views import membership_get

# The offer link a visitor arrived with, kept across sign-up and login until they check out.
OFFER_SESSION_KEY = "billing.offer_token"
# States in which the member holds a subscription, so their plan is "current" on the plans page.
SUBSCRIBED_STATES = frozenset({"trialing", "active", "past_due_grace", "past_due_expired"})
ACCESS_STATES = frozenset({"trialing", "active", "past_due_grace"})
# The success page looks again every few seconds for the webhook's result, for about a minute.
SUCCESS_REFRESH_SECONDS = 5
SUCCESS_REFRESH_LIMIT = 12
PAYMENTS_UNAVAILABLE = (
    "Payments are unavailable right now. Nothing was charged; please try again in a few minutes."
)


@dataclass(frozen=True)
class PriceOption:
    interval: str
    interval_label: str
    amount: str
    per_month: str


@dataclass(frozen=True)
class PlanCard:
    plan: Plan
    prices: list[PriceOption]
    is_current: bool


def _price_option(price: PlanPrice) -> PriceOption:
    return PriceOption(
        interval=price.interval,
        interval_label="month" if price.interval == BillingInterval.MONTH else "year",
        amount=format_money(price.amount_minor, price.currency),
        per_month=format_money(price.monthly_amount_minor, price.currency),
    )


def _absolute(path: str) -> str:
    # Stripe sends the member back to these, so they must name the public site, not this request's host.
    return settings.SITE_URL.rstrip("/") + path


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _offer_token(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


@require_safe
def plans(request: HttpRequest) -> HttpResponse:
    if offer := _offer_token(request.GET.get("offer")):
        request.session[OFFER_SESSION_KEY] = offer
    user = request.user if isinstance(request.user, User) else None
    current_plan_id = None
    trial_available = True
    if user is not None:
        membership = membership_get(user=user)
        if membership.state in SUBSCRIBED_STATES and membership.subscription is not None:
            current_plan_id = membership.subscription.plan_id
        trial_available = not user_had_trial(user=user)
    cards = [
        PlanCard(
            plan=plan,
            prices=[_price_option(price) for price in plan.prices_for_sale],  # type: ignore[attr-defined]
            is_current=plan.pk == current_plan_id,
        )
        for plan in plan_list_for_sale(currency=settings.BILLING_CURRENCY)
    ]
    context = {
        "cards": [card for card in cards if card.prices],
        "is_subscribed": current_plan_id is not None,
        "trial_available": trial_available,
        "uses_twin": checkout_uses_twin(),
    }
    return render(request, "portal/plans.html", context)


@require_POST
def checkout_start(request: HttpRequest, slug: str) -> HttpResponse:
    user = request.user
    if not isinstance(user, User):
        # Back to the plans after logging in: this POST cannot be replayed by the login redirect.
        return redirect_to_login(reverse("portal:plans"))
    interval = request.POST.get("interval") or request.GET.get("interval", "")
    if interval not in BillingInterval.values:
        raise Http404("No such billing interval.")
    price = plan_price_get_for_sale(plan_slug=slug, interval=interval, currency=settings.BILLING_CURRENCY)
    if price is None:
        raise Http404("This plan is not for sale.")
    try:
        checkout = checkout_session_create(
            user=user,
            price=price,
            success_url=_absolute(reverse("portal:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=_absolute(reverse("portal:checkout_cancel")),
            conversion_token=request.session.get(OFFER_SESSION_KEY),
        )
    except AlreadySubscribed as exc:
        messages.info(request, str(exc))
        return _see_other(reverse("portal:account"))
    except CheckoutRefused as exc:
        messages.error(request, str(exc))
        return _see_other(reverse("portal:plans"))
    except IntegrationError:
        messages.error(request, PAYMENTS_UNAVAILABLE)
        return _see_other(reverse("portal:plans"))
    return _see_other(checkout.url)


@require_safe
@never_cache
@login_required
def checkout_success(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login_required guarantees a real user
    membership = membership_get(user=user)
    has_access = membership.state in ACCESS_STATES
    try:
        attempt = max(0, int(request.GET.get("check", "0")))
    except ValueError:
        attempt = 0
    refresh_url = ""
    if not has_access and attempt < SUCCESS_REFRESH_LIMIT:
        query = request.GET.copy()
        query["check"] = str(attempt + 1)
        refresh_url = f"{request.path}?{query.urlencode()}"
    context = {
        "membership": membership,
        "has_access": has_access,
        "refresh_url": refresh_url,
        "refresh_seconds": SUCCESS_REFRESH_SECONDS,
    }
    return render(request, "portal/checkout_success.html", context)


@require_safe
def checkout_cancel(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/checkout_cancel.html")


@require_POST
def billing_portal(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not isinstance(user, User):
        return redirect_to_login(reverse("portal:account"))
    try:
        url = billing_portal_url(user=user, return_url=_absolute(reverse("portal:account")))
    except BillingPortalUnavailable as exc:
        messages.info(request, str(exc))
        return _see_other(reverse("portal:account"))
    except IntegrationError:
        messages.error(
            request, "The billing portal is unavailable right now; please try again in a few minutes."
        )
        return _see_other(reverse("portal:account"))
    return _see_other(url)


@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@login_required
def billing_twin_checkout(request: HttpRequest, session_id: str) -> HttpResponse:
    """The checkout twin's payment page: what Stripe's hosted checkout shows, with a test "Pay" button."""
    user = request.user
    assert isinstance(user, User)  # login_required guarantees a real user
    try:
        session = twin.checkout_twin_session_get(session_id=session_id, user=user)
        if session is None:
            raise Http404("No such checkout session.")
        if request.method == "POST":
            session = twin.checkout_twin_session_pay(session=session)
    except twin.CheckoutTwinUnavailable as exc:
        raise Http404("The checkout twin is not available here.") from exc
    except twin.CheckoutTwinSessionExpired:
        messages.error(
            request, "That checkout expired before it was paid. Nothing was charged; choose a plan again."
        )
        return _see_other(reverse("portal:plans"))
    if session.status == CheckoutTwinSessionStatus.COMPLETE:
        return _see_other(twin.checkout_twin_session_success_url(session))
    price = session.price
    context = {
        "session": session,
        "plan": price.plan,
        "price": _price_option(price),
        "expired": twin.checkout_twin_session_is_expired(session),
    }
    return render(request, "billing/twin_checkout.html", context)
