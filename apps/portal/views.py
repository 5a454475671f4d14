"""Member-facing pages. Views only gather what the selectors return and render it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.accounts.models import User
from apps.billing.services.access_sync import telegram_invites_for_user
from apps.moderation.selectors import member_moderation_get
from apps.portal import selectors
from apps.portal.member_views import linked_identities_get, membership_get


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "insights": selectors.insight_list_latest(),
        "posts": selectors.published_content_list_latest(),
    }
    return render(request, "portal/home.html", context)


@require_safe
@login_required
def account(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login_required guarantees a real user, not AnonymousUser
    context = {
        "email_verified": selectors.user_primary_email_verified(user=user),
        "membership": membership_get(user=user),
        "linked_identities": [i for i in linked_identities_get(user=user) if i.linked_at],
        "telegram_invites": telegram_invites_for_user(user=user),
        "moderation": member_moderation_get(user=user),
    }
    return render(request, "portal/account.html", context)
