"""The public home page and the member's account page, rendered through the real URLs and templates."""

from __future__ import annotations

import datetime as dt

import pytest
from allauth.account.models import EmailAddress
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from apps.accounts.factories import UserFactory
from apps.content.factories import PublishedContentFactory
from apps.core.models import Platform
from apps.market.factories import InsightFactory
from apps.market.models import InsightStatus, InsightType

pytestmark = pytest.mark.django_db

# An anonymous visitor costs exactly the two list reads; no session, user or per-row queries.
HOME_QUERIES_ANONYMOUS = 2


def test_home_renders_empty_state_for_anonymous_visitor(client: Client) -> None:
    response = client.get(reverse("portal:home"))

    assert response.status_code == 200
    assert [t.name for t in response.templates][:2] == ["portal/home.html", "base.html"]
    html = response.content.decode()
    assert "No insights yet." in html
    assert "Nothing published yet." in html
    assert f'href="{reverse("account_login")}"' in html
    assert f'href="{reverse("account_signup")}"' in html
    assert f'href="{reverse("api:docs")}"' in html
    assert f'href="{reverse("admin:index")}"' not in html
    assert f'action="{reverse("account_logout")}"' not in html


def test_home_lists_public_insights_and_posts(client: Client) -> None:
    now = timezone.now()
    InsightFactory(
        symbol="ETH/USDT",
        type=InsightType.MACD_BULLISH_CROSS,
        headline="ETH MACD crossed above its signal line",
        confidence=0.83,
        detected_at=now,
    )
    InsightFactory(
        headline="Stale BTC spike the analyst threw away",
        status=InsightStatus.DISCARDED,
        detected_at=now + dt.timedelta(minutes=1),
    )
    PublishedContentFactory(
        platform=Platform.TELEGRAM,
        text="SOL volume is three times its weekly average. " + "More context follows. " * 20,
        url="https://t.me/coinlink/4242",
    )

    response = client.get(reverse("portal:home"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "ETH MACD crossed above its signal line" in html
    assert "ETH/USDT" in html
    assert "MACD bullish cross" in html
    assert "Confidence 83%" in html
    assert "Stale BTC spike the analyst threw away" not in html
    assert "SOL volume is three times its weekly average." in html
    assert 'href="https://t.me/coinlink/4242"' in html
    assert "Read on Telegram" in html
    # The excerpt is cut: the full post is longer than what the card shows.
    assert "More context follows. " * 20 not in html
    assert "No insights yet." not in html
    assert "Nothing published yet." not in html
    assert [i.headline for i in response.context["insights"]] == ["ETH MACD crossed above its signal line"]


def test_home_shows_only_the_six_newest_of_each(client: Client) -> None:
    now = timezone.now()
    for n in range(8):
        InsightFactory(headline=f"insight number {n}", detected_at=now - dt.timedelta(hours=n))
        PublishedContentFactory(text=f"post number {n}", published_at=now - dt.timedelta(hours=n))

    response = client.get(reverse("portal:home"))

    assert [i.headline for i in response.context["insights"]] == [f"insight number {n}" for n in range(6)]
    assert [p.text for p in response.context["posts"]] == [f"post number {n}" for n in range(6)]
    html = response.content.decode()
    assert "insight number 6" not in html
    assert "post number 7" not in html


@pytest.mark.parametrize("rows", [3, 20])
def test_home_query_count_does_not_grow_with_rows(
    client: Client, django_assert_max_num_queries: DjangoAssertNumQueries, rows: int
) -> None:
    InsightFactory.create_batch(rows)
    InsightFactory.create_batch(rows, status=InsightStatus.DISCARDED)
    PublishedContentFactory.create_batch(rows)

    with django_assert_max_num_queries(HOME_QUERIES_ANONYMOUS):
        response = client.get(reverse("portal:home"))

    assert response.status_code == 200
    assert len(response.context["insights"]) == min(rows, 6)
    assert len(response.context["posts"]) == min(rows, 6)


def test_home_nav_for_a_member_offers_account_and_a_post_logout(client: Client) -> None:
    client.force_login(UserFactory.create())

    html = client.get(reverse("portal:home")).content.decode()

    assert f'href="{reverse("portal:account")}"' in html
    assert f'<form class="inline-form" method="post" action="{reverse("account_logout")}">' in html
    assert f'href="{reverse("account_login")}"' not in html
    assert f'href="{reverse("admin:index")}"' not in html


def test_home_nav_links_staff_to_the_admin(client: Client) -> None:
    client.force_login(UserFactory.create(staff=True))

    html = client.get(reverse("portal:home")).content.decode()

    assert f'href="{reverse("admin:index")}"' in html


def test_account_redirects_anonymous_visitor_to_login(client: Client) -> None:
    url = reverse("portal:account")

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={url}"


def test_account_shows_the_members_details_and_account_links(client: Client) -> None:
    user = UserFactory.create(email="satoshi@example.com", display_name="Satoshi N.")
    client.force_login(user)

    response = client.get(reverse("portal:account"))

    assert response.status_code == 200
    assert "base.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert "satoshi@example.com" in html
    assert "Satoshi N." in html
    assert "Not verified" in html
    assert f'href="{reverse("account_change_password")}"' in html
    assert f'href="{reverse("account_email")}"' in html
    assert f'action="{reverse("account_logout")}"' in html
    assert 'aria-current="page"' in html


def test_account_marks_a_confirmed_email_as_verified(client: Client) -> None:
    user = UserFactory.create(email="verified@example.com")
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    client.force_login(user)

    html = client.get(reverse("portal:account")).content.decode()

    assert "Verified" in html
    assert "Not verified" not in html


@pytest.mark.django_db
def test_account_shows_a_waiting_telegram_invite(client: Client) -> None:
    from apps.billing.factories import EntitlementFactory
    from apps.billing.services.access_sync import _INVITE_KEY, TelegramInvite, _invite_store

    user = UserFactory.create()
    EntitlementFactory.create(user=user, key="telegram.channel:-1001234567890")
    _invite_store(
        _INVITE_KEY.format(user_id=user.pk, chat_id="-1001234567890"),
        TelegramInvite(
            chat_id="-1001234567890",
            url="https://t.me/+single-use-invite",
            expires_at=timezone.now() + dt.timedelta(hours=12),
        ),
    )
    client.force_login(user)

    page = client.get("/account/").content.decode()

    assert 'href="https://t.me/+single-use-invite"' in page

    other = UserFactory.create()
    client.force_login(other)
    assert "t.me/+single-use-invite" not in client.get("/account/").content.decode()
