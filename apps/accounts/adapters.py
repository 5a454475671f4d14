"""allauth adapters: how third-party accounts (Discord) relate to portal members."""

from __future__ import annotations

from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount, SocialLogin
from django.http import HttpRequest
from django.urls import reverse


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """A Discord account is connected to a member who signed up with their email, never used to create one: an
    account made from Discord would have no verified address to bill or reach."""

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return False

    def get_connect_redirect_url(self, request: HttpRequest, socialaccount: SocialAccount) -> str:
        return reverse("portal:links")
