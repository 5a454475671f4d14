"""The members' side of the portal: the exclusive library, members' files, and linking platform accounts.

Every decision here is the entitlement ledger's (``apps.billing.selectors``); a subscription's status is only
ever shown, never trusted for access.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from apps.accounts.models import User
from apps.accounts.selectors import user_get_profile
from apps.billing.models import Subscription
from apps.billing.selectors import member_access_state, subscription_get_latest, user_entitlement_keys
from apps.community.models import PlatformIdentity
from apps.community.services.linking import (
    LINK_CODE_TTL,
    TELEGRAM_LOGIN_MAX_AGE,
    LinkOutcome,
    LinkResult,
    TelegramLoginInvalid,
    telegram_link_code_create,
    telegram_login_link,
)
from apps.content.selectors import (
    LIBRARY_ENTITLEMENT,
    exclusive_content_get_published,
    exclusive_content_teaser_list,
    member_file_get,
)
from apps.core.middleware import csp_update
from apps.core.models import Platform

LIBRARY_PAGE_SIZE = 12
# Shown in the browser as they are; anything else (HTML, SVG, scripts) could run on our origin, so it downloads.
INLINE_CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"})
_TELEGRAM_STATE_SALT = "portal.links.telegram-login"

ACCESS_STATE_LABELS = {
    "anonymous": "Not signed in",
    "free": "Free account",
    "trialing": "Free trial",
    "active": "Active",
    "past_due_grace": "Payment overdue: access kept for a few days",
    "past_due_expired": "Payment overdue: access paused",
    "canceled": "Canceled",
}


def _entitlement_keys(request: HttpRequest) -> set[str]:
    user = request.user
    return user_entitlement_keys(user=user) if isinstance(user, User) else set()


# --- library ---------------------------------------------------------------------------------------------------


@require_safe
@never_cache
def library(request: HttpRequest) -> HttpResponse:
    """Every published piece's title and summary (public: they sell the membership), linked for those who may
    read it. Bodies appear only on a piece's own page."""
    keys = _entitlement_keys(request)
    search = request.GET.get("q", "").strip()
    page = Paginator(exclusive_content_teaser_list(search=search), LIBRARY_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "page_obj": page,
        "entitlement_keys": keys,
        "is_member": LIBRARY_ENTITLEMENT in keys,
        "search": search,
        "search_query": urlencode({"q": search}) if search else "",
    }
    return render(request, "portal/library.html", context)


@require_safe
@never_cache
@login_required
def library_item(request: HttpRequest, slug: str) -> HttpResponse:
    piece = exclusive_content_get_published(slug=slug)
    if piece is None:
        raise Http404("No such piece in the library.")
    keys = _entitlement_keys(request)
    unlocked = piece.required_entitlement in keys
    context = {
        "piece": piece,
        "unlocked": unlocked,
        "needs_upgrade": LIBRARY_ENTITLEMENT in keys and not unlocked,
    }
    return render(request, "portal/library_item.html", context, status=200 if unlocked else 403)


@require_safe
def member_media(request: HttpRequest, pk: int) -> HttpResponseBase:
    # Anonymous callers are sent to log in before the id is even looked up, so the answer cannot tell them
    # which ids are members' files.
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    member_file = member_file_get(media_id=pk)
    if member_file is None:
        raise Http404("No such members' file.")
    if not member_file.opened_by & _entitlement_keys(request):
        return HttpResponseForbidden("Your membership does not include this file.")
    media = member_file.media
    name = media.file.name
    try:
        if not name:
            raise FileNotFoundError(f"media #{media.pk} has no file")
        handle = media.file.storage.open(name, "rb")
    except FileNotFoundError as missing:
        raise Http404("The file is missing.") from missing
    filename = PurePosixPath(name).name
    content_type = media.content_type or mimetypes.guess_type(filename)[0] or ""
    inline = content_type in INLINE_CONTENT_TYPES
    response = FileResponse(
        handle,
        content_type=content_type if inline else "application/octet-stream",
        as_attachment=not inline,
        filename=filename,
    )
    # A member's file must not outlive their membership in a shared or browser cache.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- account ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    """What the account page says about the member's plan: for reading, not for deciding access."""

    state: str
    state_label: str
    subscription: Subscription | None
    date_label: str
    date: dt.datetime | None


def membership_get(*, user: User) -> Membership:
    state = member_access_state(user=user)
    subscription = subscription_get_latest(user=user)
    date_label, date = "", None
    if subscription is not None:
        if state == "trialing":
            date_label, date = "Trial ends on", subscription.trial_end or subscription.current_period_end
        elif state == "active":
            date_label = "Ends on" if subscription.cancel_at_period_end else "Renews on"
            date = subscription.current_period_end
        elif state == "past_due_grace" and subscription.past_due_since is not None:
            date_label = "Access kept until"
            date = subscription.past_due_since + dt.timedelta(days=subscription.plan.grace_days)
        elif state == "canceled":
            date_label, date = "Ended on", subscription.ended_at or subscription.current_period_end
    return Membership(
        state=state,
        state_label=ACCESS_STATE_LABELS.get(state, state),
        subscription=subscription,
        date_label=date_label,
        date=date,
    )


def linked_identities_get(*, user: User) -> list[PlatformIdentity]:
    """The platform accounts on the member's community record, proved ones first."""
    profile = user_get_profile(user_id=user.pk)
    community_user = getattr(profile, "community_user", None)
    if community_user is None:
        return []
    identities = list(community_user.identities.all())
    return sorted(identities, key=lambda identity: (identity.linked_at is None, identity.platform))


# --- linking platform accounts ---------------------------------------------------------------------------------


def _discord_connect_available(request: HttpRequest) -> bool:
    from allauth.socialaccount.adapter import get_adapter

    return bool(get_adapter(request).list_apps(request, provider="discord"))


def _telegram_widget(request: HttpRequest, user: User) -> dict[str, str] | None:
    if not (settings.TELEGRAM_LOGIN_BOT_USERNAME and settings.TELEGRAM_BOT_TOKEN):
        return None
    # The widget sends the browser back with a GET; the state ties that request to this member, so a link
    # crafted by someone else cannot attach their Telegram account to the member who follows it.
    state = signing.dumps(user.pk, salt=_TELEGRAM_STATE_SALT)
    callback = reverse("portal:links_telegram_login") + "?" + urlencode({"state": state})
    return {
        "bot_username": settings.TELEGRAM_LOGIN_BOT_USERNAME,
        "auth_url": request.build_absolute_uri(callback),
    }


def _links_page(request: HttpRequest, *, code: str = "") -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login_required guarantees a real user
    identities = linked_identities_get(user=user)

    def linked(platform: str) -> PlatformIdentity | None:
        return next((i for i in identities if i.platform == platform and i.linked_at), None)

    context = {
        "telegram_identity": linked(Platform.TELEGRAM),
        "discord_identity": linked(Platform.DISCORD),
        "discord_available": _discord_connect_available(request),
        "telegram_widget": _telegram_widget(request, user),
        "telegram_bot_username": settings.TELEGRAM_LOGIN_BOT_USERNAME,
        "link_code": code,
        "link_code_minutes": int(LINK_CODE_TTL.total_seconds() // 60),
    }
    return render(request, "portal/links.html", context)


@require_safe
@never_cache
@login_required
# The Telegram Login Widget is Telegram's script, which opens Telegram's sign-in in a frame.
@csp_update(script_src=["https://telegram.org"], frame_src=["https://oauth.telegram.org"])
def links(request: HttpRequest) -> HttpResponse:
    return _links_page(request)


@require_POST
@never_cache
@login_required
def links_telegram_code(request: HttpRequest) -> HttpResponse:
    """A fresh code, shown once in this response: only its hash is kept."""
    user = request.user
    assert isinstance(user, User)
    return _links_page(request, code=telegram_link_code_create(user=user))


_LINK_MESSAGES = {
    LinkOutcome.LINKED: (messages.SUCCESS, "Your {platform} account is now linked."),
    LinkOutcome.MERGED: (messages.SUCCESS, "Your {platform} account is now linked."),
    LinkOutcome.ALREADY_LINKED: (messages.INFO, "That {platform} account was already linked to you."),
    LinkOutcome.CLAIMED_BY_OTHER_MEMBER: (
        messages.ERROR,
        "That {platform} account is already linked to another CoinLink member.",
    ),
    LinkOutcome.OTHER_ACCOUNT_LINKED: (
        messages.ERROR,
        "A different {platform} account is already linked to your membership.",
    ),
}


def _report_link(request: HttpRequest, result: LinkResult, platform: str) -> None:
    level, text = _LINK_MESSAGES.get(
        result.outcome, (messages.ERROR, "The {platform} account was not linked.")
    )
    messages.add_message(request, level, text.format(platform=Platform(platform).label))


@require_safe
@never_cache
@login_required
def links_telegram_login(request: HttpRequest) -> HttpResponse:
    """Where the Telegram Login Widget sends the member back, with their signed Telegram profile."""
    user = request.user
    assert isinstance(user, User)
    try:
        state_user_id = signing.loads(
            request.GET.get("state", ""), salt=_TELEGRAM_STATE_SALT, max_age=TELEGRAM_LOGIN_MAX_AGE
        )
    except signing.BadSignature:
        state_user_id = None
    if state_user_id != user.pk:
        messages.error(
            request, "That Telegram sign-in was not started from your account page. Please try again."
        )
        return redirect("portal:links")
    try:
        result = telegram_login_link(
            user=user, data=request.GET, bot_token=settings.TELEGRAM_BOT_TOKEN, ignore=frozenset({"state"})
        )
    except TelegramLoginInvalid:
        messages.error(request, "Telegram did not confirm that sign-in, or it has expired. Please try again.")
        return redirect("portal:links")
    _report_link(request, result, Platform.TELEGRAM)
    return redirect("portal:links")
