"""Receivers that turn allauth events into calls of the domain's services.

A connected Discord account is a proved platform identity: the community records it as the member's, which is
what role sync and the community's history of the person go by.
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.signals import social_account_added, social_account_updated
from django.contrib import messages
from django.dispatch import receiver
from django.http import HttpRequest

from apps.community.services.linking import LinkOutcome, platform_identity_link
from apps.core.models import Platform

_REFUSALS = {
    LinkOutcome.CLAIMED_BY_OTHER_MEMBER: "That Discord account is already linked to another CoinLink member.",
    LinkOutcome.OTHER_ACCOUNT_LINKED: "A different Discord account is already linked to your membership.",
}


@receiver(social_account_added, dispatch_uid="accounts.link_discord_identity_added")
@receiver(social_account_updated, dispatch_uid="accounts.link_discord_identity_updated")
def link_discord_identity(sender: Any, request: HttpRequest, sociallogin: SocialLogin, **kwargs: Any) -> None:
    account = sociallogin.account
    if account.provider != "discord" or account.user_id is None:
        return
    # The account's owner, not whoever is signed in: allauth refuses to connect one Discord account to two members.
    data = account.extra_data if isinstance(account.extra_data, dict) else {}
    result = platform_identity_link(
        user=account.user,
        platform=Platform.DISCORD,
        external_id=str(account.uid),
        username=str(data.get("username") or ""),
        display_name=str(data.get("global_name") or data.get("username") or ""),
    )
    if result.outcome in _REFUSALS:
        messages.error(request, _REFUSALS[result.outcome], fail_silently=True)
