"""The Django admin's sign-in, limited the way allauth limits the portal's.

Failures are counted per (account, address) and per address, in the shared cache. The pair's budget
(``ADMIN_LOGIN_FAILURE_RATE``) is small: it stops guessing one operator's password from one place. The address's
(``ADMIN_LOGIN_ADDRESS_FAILURE_RATE``) is larger: it stops one place guessing across accounts. Nothing is locked
per account alone, so a guesser elsewhere, however busy, never locks an operator out of their own account from
their own address; a successful sign-in clears that pair's count.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from apps.core.attempts import FailureBudget, FailureCounter, client_address

logger = logging.getLogger(__name__)

_pairs = FailureCounter("admin-login-pair")
_addresses = FailureCounter("admin-login-address")

AdminLoginView = Callable[[HttpRequest, dict[str, Any] | None], HttpResponse]


def _budgets() -> tuple[FailureBudget, FailureBudget]:
    return (
        FailureBudget.parse(settings.ADMIN_LOGIN_FAILURE_RATE, setting="ADMIN_LOGIN_FAILURE_RATE"),
        FailureBudget.parse(
            settings.ADMIN_LOGIN_ADDRESS_FAILURE_RATE, setting="ADMIN_LOGIN_ADDRESS_FAILURE_RATE"
        ),
    )


def _pair(account: str, address: str) -> str:
    return f"{account.strip().lower()}\n{address}"


def _locked_out(request: HttpRequest, wait: float) -> HttpResponse:
    minutes = max(1, math.ceil(wait / 60))
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed sign-ins",
        "minutes": minutes,
    }
    response = TemplateResponse(request, "accounts/admin_login_locked.html", context, status=429)
    response["Retry-After"] = str(math.ceil(wait))
    return response


def admin_login_limited(login: AdminLoginView) -> AdminLoginView:
    """Wrap ``AdminSite.login``: a POST from a locked pair or address is answered 429 without checking the
    password; any other POST is counted as a failure unless it signed a staff member in."""

    @functools.wraps(login)
    def limited_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method != "POST":
            return login(request, extra_context)
        address = client_address(request)
        pair = _pair(request.POST.get("username", ""), address)
        if wait := max(_pairs.blocked_for(pair), _addresses.blocked_for(address)):
            logger.warning("admin sign-in refused: too many failures from %s", address)
            return _locked_out(request, wait)
        response = login(request, extra_context)
        signed_in = response.status_code == 302 and request.user.is_authenticated and request.user.is_staff
        if signed_in:
            _pairs.clear(pair)
        else:
            pair_budget, address_budget = _budgets()
            _pairs.record(pair, pair_budget)
            _addresses.record(address, address_budget)
        return response

    return limited_login
