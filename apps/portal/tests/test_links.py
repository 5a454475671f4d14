"""Linking Telegram and Discord accounts from the portal, and what the account page says about the membership.

Discord runs the whole OAuth flow through allauth and ``requests`` against a fake Discord on loopback; the
Telegram widget's redirect is signed the way Telegram signs it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from allauth.socialaccount.providers.discord.views import DiscordOAuth2Adapter
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_httpserver import HTTPServer

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory, PlanFactory, SubscriptionFactory
from apps.billing.models import EntitlementSource, SubscriptionStatus
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.models import CommunityUser, PlatformIdentity
from apps.community.services.linking import LinkOutcome, telegram_link_code_redeem
from apps.core.models import Platform

pytestmark = pytest.mark.django_db

LINKS_URL = "/account/links/"
BOT_TOKEN = "123456:AAH-portal-test"


@pytest.fixture
def member(client: Client) -> User:
    user = UserFactory.create(email="ada@example.com", display_name="Ada")
    client.force_login(user)
    return user


def _identity_of(user: User, platform: str) -> PlatformIdentity | None:
    return PlatformIdentity.objects.filter(community_user__portal_user=user, platform=platform).first()


# --- the page ---------------------------------------------------------------------------------------------------


def test_the_page_needs_a_login(client: Client) -> None:
    response = client.get(LINKS_URL)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={LINKS_URL}"


def test_nothing_linked_yet(client: Client, member: User) -> None:
    response = client.get(LINKS_URL)

    assert response.status_code == 200
    html_text = response.content.decode()
    assert html_text.count("Not linked") == 2
    assert f'action="{reverse("portal:links_telegram_code")}"' in html_text
    # Discord is not configured in tests, and the widget needs a bot: neither is offered.
    assert "Connecting Discord is not available yet." in html_text
    assert "telegram-widget.js" not in html_text
    assert "no-store" in response["Cache-Control"]


def test_linked_accounts_are_shown_and_not_offered_again(client: Client, member: User) -> None:
    community_user = CommunityUserFactory.create(portal_user=member)
    PlatformIdentityFactory.create(
        community_user=community_user, platform=Platform.TELEGRAM, username="ada_tg", linked_at=timezone.now()
    )
    PlatformIdentityFactory.create(
        community_user=community_user, platform=Platform.DISCORD, username="ada_dc", linked_at=timezone.now()
    )

    html_text = client.get(LINKS_URL).content.decode()

    assert "@ada_tg" in html_text
    assert "@ada_dc" in html_text
    assert "Not linked" not in html_text
    assert reverse("portal:links_telegram_code") not in html_text


def test_an_identity_nobody_proved_does_not_count_as_linked(client: Client, member: User) -> None:
    community_user = CommunityUserFactory.create(portal_user=member)
    PlatformIdentityFactory.create(community_user=community_user, platform=Platform.TELEGRAM, linked_at=None)

    assert client.get(LINKS_URL).content.decode().count("Not linked") == 2


# --- Telegram: one-time code ------------------------------------------------------------------------------------


def test_a_member_gets_a_code_and_the_bot_redeems_it(
    client: Client, member: User, settings: SettingsWrapper
) -> None:
    settings.TELEGRAM_LOGIN_BOT_USERNAME = "coinlink_bot"

    response = client.post(reverse("portal:links_telegram_code"))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html_text = response.content.decode()
    code = re.search(r"<code>/link ([A-Z0-9]{5}-[A-Z0-9]{5})</code>", html_text)
    assert code is not None
    assert 'href="https://t.me/coinlink_bot"' in html_text
    assert "within 15 minutes" in html_text

    result = telegram_link_code_redeem(code=code.group(1), telegram_user_id=5550001, username="ada_tg")

    assert result.outcome == LinkOutcome.LINKED
    identity = _identity_of(member, Platform.TELEGRAM)
    assert identity is not None
    assert identity.external_id == "5550001"
    assert "@ada_tg" in client.get(LINKS_URL).content.decode()


def test_codes_are_only_made_on_post(client: Client, member: User) -> None:
    assert client.get(reverse("portal:links_telegram_code")).status_code == 405


def test_a_visitor_gets_no_code(client: Client) -> None:
    response = client.post(reverse("portal:links_telegram_code"))

    assert response.status_code == 302
    assert b"/link" not in response.content


def test_making_a_code_needs_the_csrf_token(member: User) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member)

    response = strict.post(reverse("portal:links_telegram_code"))

    assert response.status_code == 403
    assert b"/link " not in response.content


# --- Telegram: the Login Widget ---------------------------------------------------------------------------------


@pytest.fixture
def telegram_widget(settings: SettingsWrapper) -> None:
    settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
    settings.TELEGRAM_LOGIN_BOT_USERNAME = "coinlink_bot"


def _signed_login(telegram_id: int = 4242, **overrides: str) -> dict[str, str]:
    fields = {
        "id": str(telegram_id),
        "first_name": "Ada",
        "username": "ada_tg",
        "auth_date": str(int(timezone.now().timestamp())),
        **overrides,
    }
    check_string = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hashlib.sha256(BOT_TOKEN.encode()).digest()
    return {**fields, "hash": hmac.new(secret, check_string.encode(), hashlib.sha256).hexdigest()}


def _widget_auth_url(client: Client) -> str:
    page = client.get(LINKS_URL).content.decode()
    match = re.search(r'data-auth-url="([^"]+)"', page)
    assert match is not None, "the widget is not on the page"
    return html.unescape(match.group(1))


def _with(url: str, params: dict[str, str]) -> str:
    """Telegram appends its fields to the query string the widget was given."""
    return f"{url}&{urlencode(params)}"


def test_the_widget_is_offered_with_a_state_bound_to_the_member(
    client: Client, member: User, telegram_widget: None
) -> None:
    page = client.get(LINKS_URL).content.decode()

    assert '<script async src="https://telegram.org/js/telegram-widget.js?22"' in page
    assert 'data-telegram-login="coinlink_bot"' in page
    auth_url = urlsplit(_widget_auth_url(client))
    assert (auth_url.scheme, auth_url.netloc, auth_url.path) == (
        "http",
        "testserver",
        "/account/links/telegram/login/",
    )
    assert parse_qs(auth_url.query)["state"]


def test_a_signed_widget_login_links_the_account(client: Client, member: User, telegram_widget: None) -> None:
    auth_url = _widget_auth_url(client)

    response = client.get(_with(auth_url, _signed_login()), follow=True)

    assert response.redirect_chain == [(LINKS_URL, 302)]
    assert "Your Telegram account is now linked." in response.content.decode()
    identity = _identity_of(member, Platform.TELEGRAM)
    assert identity is not None
    assert (identity.external_id, identity.username, identity.display_name) == ("4242", "ada_tg", "Ada")


def test_a_forged_widget_login_links_nothing(client: Client, member: User, telegram_widget: None) -> None:
    auth_url = _widget_auth_url(client)

    response = client.get(_with(auth_url, {**_signed_login(), "id": "1"}), follow=True)

    assert "Telegram did not confirm that sign-in" in response.content.decode()
    assert PlatformIdentity.objects.count() == 0
    assert CommunityUser.objects.count() == 0


def test_a_stale_widget_login_links_nothing(client: Client, member: User, telegram_widget: None) -> None:
    auth_url = _widget_auth_url(client)
    two_days_ago = str(int((timezone.now() - dt.timedelta(days=2)).timestamp()))

    response = client.get(_with(auth_url, _signed_login(auth_date=two_days_ago)), follow=True)

    assert "Telegram did not confirm that sign-in" in response.content.decode()
    assert PlatformIdentity.objects.count() == 0


def test_a_widget_redirect_made_for_someone_else_links_nothing(
    client: Client, member: User, telegram_widget: None
) -> None:
    # An attacker starts the widget on their own account page and sends the victim the resulting link, hoping to
    # attach the attacker's Telegram account to the victim's membership.
    attacker = Client()
    attacker.force_login(UserFactory.create())
    attackers_link = _widget_auth_url(attacker)

    response = client.get(_with(attackers_link, _signed_login(telegram_id=666)), follow=True)

    assert "was not started from your account page" in response.content.decode()
    assert PlatformIdentity.objects.count() == 0


def test_a_widget_redirect_without_state_links_nothing(
    client: Client, member: User, telegram_widget: None
) -> None:
    response = client.get(reverse("portal:links_telegram_login"), _signed_login(), follow=True)

    assert "was not started from your account page" in response.content.decode()
    assert PlatformIdentity.objects.count() == 0


def test_the_widget_refuses_an_account_another_member_linked(
    client: Client, member: User, telegram_widget: None
) -> None:
    owner = UserFactory.create()
    PlatformIdentityFactory.create(
        community_user=CommunityUserFactory.create(portal_user=owner),
        platform=Platform.TELEGRAM,
        external_id="4242",
        linked_at=timezone.now(),
    )

    response = client.get(_with(_widget_auth_url(client), _signed_login()), follow=True)

    assert "already linked to another CoinLink member" in response.content.decode()
    assert _identity_of(member, Platform.TELEGRAM) is None


# --- Discord: OAuth through allauth -----------------------------------------------------------------------------

DISCORD_USER = {
    "id": "80351110224678912",
    "username": "nelly",
    "global_name": "Nelly",
    "discriminator": "0",
    "avatar": None,
}


@pytest.fixture
def discord(settings: SettingsWrapper, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    settings.SOCIALACCOUNT_PROVIDERS = {
        "discord": {
            "SCOPE": ["identify"],
            "APPS": [{"client_id": "1234567890", "secret": "discord-secret", "key": ""}],
        }
    }
    monkeypatch.setattr(DiscordOAuth2Adapter, "access_token_url", httpserver.url_for("/api/oauth2/token"))
    monkeypatch.setattr(DiscordOAuth2Adapter, "profile_url", httpserver.url_for("/api/users/@me"))
    httpserver.expect_request("/api/oauth2/token", method="POST").respond_with_json(
        {
            "access_token": "discord-access-token",
            "token_type": "Bearer",
            "expires_in": 604800,
            "scope": "identify",
        }
    )
    httpserver.expect_request(
        "/api/users/@me", headers={"Authorization": "Bearer discord-access-token"}
    ).respond_with_json(DISCORD_USER)
    return httpserver


def _discord_round_trip(client: Client, connect_form_action: str) -> list[tuple[str, int]]:
    """Press the button, let "Discord" approve, and follow allauth back to our site."""
    to_discord = client.post(connect_form_action)
    assert to_discord.status_code == 302
    authorize = urlsplit(to_discord["Location"])
    assert (authorize.netloc, authorize.path) == ("discord.com", "/api/oauth2/authorize")
    query = parse_qs(authorize.query)
    assert query["scope"] == ["identify"]
    assert query["client_id"] == ["1234567890"]
    back = client.get(
        reverse("discord_callback"), {"code": "one-time-grant", "state": query["state"][0]}, follow=True
    )
    assert back.status_code == 200
    return back.redirect_chain


def test_connecting_discord_links_the_identity(client: Client, member: User, discord: HTTPServer) -> None:
    page = client.get(LINKS_URL).content.decode()
    action = re.search(r'<form method="post" action="([^"]*/accounts/discord/login/[^"]*)"', page)
    assert action is not None, "no Connect Discord button"
    assert "process=connect" in html.unescape(action.group(1))

    chain = _discord_round_trip(client, html.unescape(action.group(1)))

    assert chain[-1] == (LINKS_URL, 302)
    assert SocialAccount.objects.get().user == member
    identity = _identity_of(member, Platform.DISCORD)
    assert identity is not None
    assert (identity.external_id, identity.username, identity.display_name) == (
        "80351110224678912",
        "nelly",
        "Nelly",
    )
    assert identity.linked_at is not None
    assert "@nelly" in client.get(LINKS_URL).content.decode()


def test_connecting_discord_folds_in_what_the_community_knew(
    client: Client, member: User, discord: HTTPServer
) -> None:
    known = PlatformIdentityFactory.create(platform=Platform.DISCORD, external_id=DISCORD_USER["id"])
    lurker = known.community_user
    CommunityUserFactory.create(portal_user=member)

    _discord_round_trip(client, "/accounts/discord/login/?process=connect")

    known.refresh_from_db()
    assert known.community_user.portal_user == member
    assert not CommunityUser.objects.filter(pk=lurker.pk).exists()


def test_discord_does_not_create_accounts(client: Client, discord: HTTPServer) -> None:
    _discord_round_trip(client, "/accounts/discord/login/?process=login")

    assert User.objects.count() == 0
    assert SocialAccount.objects.count() == 0
    assert PlatformIdentity.objects.count() == 0


def test_a_discord_account_another_member_linked_is_not_taken(
    client: Client, member: User, discord: HTTPServer
) -> None:
    owner = UserFactory.create()
    PlatformIdentityFactory.create(
        community_user=CommunityUserFactory.create(portal_user=owner),
        platform=Platform.DISCORD,
        external_id=DISCORD_USER["id"],
        linked_at=timezone.now(),
    )

    _discord_round_trip(client, "/accounts/discord/login/?process=connect")

    assert _identity_of(member, Platform.DISCORD) is None
    assert _identity_of(owner, Platform.DISCORD) is not None


# --- the account page -------------------------------------------------------------------------------------------


def test_the_account_page_of_a_free_member(client: Client, member: User) -> None:
    html_text = client.get(reverse("portal:account")).content.decode()

    assert "<dt>Plan</dt>\n        <dd>Free</dd>" in html_text
    assert "Free account" in html_text
    assert "Renews on" not in html_text
    assert "No Telegram or Discord account is linked yet." in html_text
    assert f'href="{reverse("portal:links")}"' in html_text
    assert f'href="{reverse("portal:library")}"' in html_text


def test_the_account_page_of_a_paying_member(client: Client, member: User) -> None:
    period_end = timezone.now() + dt.timedelta(days=20)
    subscription = SubscriptionFactory.create(
        user=member,
        plan=PlanFactory.create(name="Pro"),
        status=SubscriptionStatus.ACTIVE,
        current_period_end=period_end,
    )
    EntitlementFactory.create(
        user=member, source=EntitlementSource.SUBSCRIPTION, subscription=subscription, ends_at=period_end
    )
    community_user = CommunityUserFactory.create(portal_user=member)
    PlatformIdentityFactory.create(
        community_user=community_user, platform=Platform.TELEGRAM, username="ada_tg", linked_at=timezone.now()
    )
    PlatformIdentityFactory.create(
        community_user=community_user, platform=Platform.X, username="ada_unproved"
    )

    html_text = client.get(reverse("portal:account")).content.decode()

    assert "<dd>Pro</dd>" in html_text
    assert ">Active</span>" in html_text
    assert "<dt>Renews on</dt>" in html_text
    assert period_end.strftime("%-d %B %Y") in html_text
    assert "@ada_tg" in html_text
    assert "ada_unproved" not in html_text


def test_the_account_page_says_when_a_canceling_membership_ends(client: Client, member: User) -> None:
    period_end = timezone.now() + dt.timedelta(days=5)
    subscription = SubscriptionFactory.create(
        user=member,
        status=SubscriptionStatus.ACTIVE,
        current_period_end=period_end,
        cancel_at_period_end=True,
    )
    EntitlementFactory.create(
        user=member, source=EntitlementSource.SUBSCRIPTION, subscription=subscription, ends_at=period_end
    )

    html_text = client.get(reverse("portal:account")).content.decode()

    assert "<dt>Ends on</dt>" in html_text
    assert period_end.strftime("%-d %B %Y") in html_text
