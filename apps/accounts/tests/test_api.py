"""`/api/v1/me/`: the member's own profile, subscription and entitlements, and what they may change."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import factory
import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory, PlanFactory, SubscriptionFactory
from apps.billing.models import EntitlementSource, SubscriptionStatus
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.core.models import Platform

pytestmark = pytest.mark.django_db

ME_URL = "/api/v1/me/"


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> Iterator[None]:
    # Throttle counters live in the cache; each test starts with none spent.
    cache.clear()
    yield
    cache.clear()


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


NOT_AUTHENTICATED = {
    "error": {
        "status": 403,
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
        "detail": None,
    }
}


def test_anonymous_get_is_refused_as_json(client: Client) -> None:
    response = client.get(ME_URL)

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_AUTHENTICATED


def test_anonymous_patch_is_refused_and_changes_nothing(client: Client) -> None:
    user = UserFactory.create(display_name="Ada")

    response = client.patch(ME_URL, {"display_name": "Mallory"}, content_type="application/json")

    assert response.status_code == 403
    assert response.json() == NOT_AUTHENTICATED
    user.refresh_from_db()
    assert user.display_name == "Ada"


def test_an_unknown_token_is_refused_as_json(client: Client) -> None:
    response = client.get(ME_URL, HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    assert response.status_code == 403
    assert response.json()["error"] == {
        "status": 403,
        "code": "authentication_failed",
        "message": "Invalid token.",
        "detail": None,
    }


def test_member_without_community_subscription_or_entitlements(client: Client) -> None:
    user = UserFactory.create(email="ada@example.com", display_name="Ada")
    client.force_login(user)

    response = client.get(ME_URL)

    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "email": "ada@example.com",
        "display_name": "Ada",
        "date_joined": _iso(user.date_joined),
        "community_identities": [],
        "subscription": None,
        "entitlements": [],
        "access_state": "free",
    }


def test_member_with_community_subscription_and_entitlements(client: Client) -> None:
    now = timezone.now()
    user = UserFactory.create(email="grace@example.com", display_name="Grace")
    community_user = CommunityUserFactory.create(portal_user=user)
    PlatformIdentityFactory.create(community_user=community_user, platform=Platform.X, username="grace_x")
    PlatformIdentityFactory.create(
        community_user=community_user, platform=Platform.DISCORD, username="grace#1"
    )
    # Someone else's identity must not leak into this profile.
    PlatformIdentityFactory.create(platform=Platform.TELEGRAM, username="stranger")

    SubscriptionFactory.create(
        user=user, plan=PlanFactory.create(slug="basic", name="Basic"), status=SubscriptionStatus.CANCELED
    )
    period_end = now + dt.timedelta(days=20)
    latest = SubscriptionFactory.create(
        user=user,
        plan=PlanFactory.create(slug="pro", name="Pro"),
        status=SubscriptionStatus.ACTIVE,
        current_period_end=period_end,
        cancel_at_period_end=True,
    )
    SubscriptionFactory.create(
        plan=PlanFactory.create(slug="elite", name="Elite")
    )  # another member's, and newer

    from_subscription_start = now - dt.timedelta(days=10)
    EntitlementFactory.create(
        user=user,
        key="portal.premium",
        source=EntitlementSource.SUBSCRIPTION,
        subscription=latest,
        starts_at=from_subscription_start,
        ends_at=period_end,
    )
    manual_start = now - dt.timedelta(days=1)
    EntitlementFactory.create(
        user=user,
        key="discord.role:42",
        source=EntitlementSource.MANUAL,
        starts_at=manual_start,
        ends_at=None,
    )
    # Not in force, for four different reasons: none may be shown.
    EntitlementFactory.create(
        user=user,
        key="telegram.channel:-100",
        starts_at=now - dt.timedelta(days=40),
        ends_at=now - dt.timedelta(days=10),
    )
    EntitlementFactory.create(user=user, key="telegram.channel:-200", revoked_at=now - dt.timedelta(hours=1))
    EntitlementFactory.create(user=user, key="telegram.channel:-300", starts_at=now + dt.timedelta(days=1))
    EntitlementFactory.create(key="portal.premium")  # another member's
    client.force_login(user)

    response = client.get(ME_URL)

    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "email": "grace@example.com",
        "display_name": "Grace",
        "date_joined": _iso(user.date_joined),
        "community_identities": [
            {"platform": "discord", "username": "grace#1"},
            {"platform": "x", "username": "grace_x"},
        ],
        "subscription": {
            "plan": {"slug": "pro", "name": "Pro"},
            "status": "active",
            "current_period_end": _iso(period_end),
            "cancel_at_period_end": True,
        },
        "entitlements": [
            {"key": "discord.role:42", "source": "manual", "starts_at": _iso(manual_start), "ends_at": None},
            {
                "key": "portal.premium",
                "source": "subscription",
                "starts_at": _iso(from_subscription_start),
                "ends_at": _iso(period_end),
            },
        ],
        "access_state": "active",
    }


def test_an_entitlement_stops_showing_the_moment_it_ends(client: Client) -> None:
    user = UserFactory.create()
    ends = timezone.now() + dt.timedelta(seconds=30)
    EntitlementFactory.create(
        user=user, key="portal.premium", starts_at=ends - dt.timedelta(days=1), ends_at=ends
    )
    client.force_login(user)

    before = client.get(ME_URL).json()["entitlements"]
    with time_machine.travel(ends, tick=False):
        at_end = client.get(ME_URL).json()["entitlements"]

    assert [row["key"] for row in before] == ["portal.premium"]
    assert at_end == []


@pytest.mark.parametrize(
    ("status", "past_due_days", "expected"),
    [
        (SubscriptionStatus.TRIALING, None, "trialing"),
        (SubscriptionStatus.PAST_DUE, 1, "past_due_grace"),
        (SubscriptionStatus.PAST_DUE, 10, "past_due_expired"),
        (SubscriptionStatus.CANCELED, None, "canceled"),
    ],
)
def test_access_state_follows_the_membership(
    client: Client, status: str, past_due_days: int | None, expected: str
) -> None:
    user = UserFactory.create()
    past_due_since = timezone.now() - dt.timedelta(days=past_due_days) if past_due_days else None
    SubscriptionFactory.create(
        user=user, plan=PlanFactory.create(grace_days=3), status=status, past_due_since=past_due_since
    )
    client.force_login(user)

    assert client.get(ME_URL).json()["access_state"] == expected


def test_token_authentication(client: Client) -> None:
    user = UserFactory.create(email="bot-builder@example.com")
    token = Token.objects.create(user=user)

    response = client.get(ME_URL, HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200
    assert response.json()["id"] == user.pk
    assert response.json()["email"] == "bot-builder@example.com"


@pytest.mark.parametrize("rows", [5, 30])
def test_query_count_does_not_grow_with_identities_or_entitlements(
    client: Client, django_assert_max_num_queries: Any, rows: int
) -> None:
    user = UserFactory.create()
    community_user = CommunityUserFactory.create(portal_user=user)
    PlatformIdentityFactory.create_batch(rows, community_user=community_user)
    EntitlementFactory.create_batch(rows, user=user, key=factory.Sequence(lambda n: f"discord.role:{n}"))
    SubscriptionFactory.create_batch(rows, user=user)
    client.force_login(user)

    # Session, user, user with community record, identities, latest subscription with plan, entitlements, and
    # the subscriptions the access state is read from.
    with django_assert_max_num_queries(7):
        response = client.get(ME_URL)

    assert len(response.json()["community_identities"]) == rows
    assert len(response.json()["entitlements"]) == rows


def test_patch_changes_the_display_name(client: Client) -> None:
    user = UserFactory.create(display_name="Ada")
    client.force_login(user)

    response = client.patch(ME_URL, {"display_name": "  Ada Lovelace  "}, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["display_name"] == "Ada Lovelace"
    user.refresh_from_db()
    assert user.display_name == "Ada Lovelace"


def test_patch_with_a_token_needs_no_csrf_token(client: Client) -> None:
    user = UserFactory.create(display_name="Ada")
    token = Token.objects.create(user=user)
    strict = Client(enforce_csrf_checks=True)

    response = strict.patch(
        ME_URL,
        {"display_name": "Countess"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )

    assert response.status_code == 200
    user.refresh_from_db()
    assert user.display_name == "Countess"


def test_patch_with_a_session_needs_the_csrf_token() -> None:
    user = UserFactory.create(display_name="Ada")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)

    response = strict.patch(ME_URL, {"display_name": "Forged"}, content_type="application/json")

    assert response.status_code == 403
    assert response.json()["error"]["message"] == "CSRF Failed: CSRF cookie not set."
    user.refresh_from_db()
    assert user.display_name == "Ada"


def test_patch_may_clear_the_display_name(client: Client) -> None:
    user = UserFactory.create(email="ada@example.com", display_name="Ada")
    client.force_login(user)

    response = client.patch(ME_URL, {"display_name": ""}, content_type="application/json")

    assert response.status_code == 200
    user.refresh_from_db()
    assert user.display_name == ""


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"display_name": "x" * 151},
            {"display_name": ["Ensure this field has no more than 150 characters."]},
        ),
        ({"display_name": None}, {"display_name": ["This field may not be null."]}),
        # The schema says a string: a number or a boolean is refused, not turned into text.
        ({"display_name": 0}, {"display_name": ["Not a valid string."]}),
        ({"display_name": True}, {"display_name": ["Not a valid string."]}),
        (
            {"display_name": "Ada II", "email": "evil@example.com"},
            {"email": ["This field cannot be changed."]},
        ),
        ({"is_staff": True}, {"is_staff": ["This field cannot be changed."]}),
    ],
)
def test_patch_refuses_bad_input_and_changes_nothing(
    client: Client, body: dict[str, Any], detail: Any
) -> None:
    user = UserFactory.create(email="ada@example.com", display_name="Ada")
    client.force_login(user)

    response = client.patch(ME_URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {"status": 400, "code": "invalid", "message": "The request was not valid.", "detail": detail}
    }
    user.refresh_from_db()
    assert (user.email, user.display_name, user.is_staff) == ("ada@example.com", "Ada", False)
    assert User.objects.count() == 1


def test_put_and_delete_are_not_allowed(client: Client) -> None:
    user = UserFactory.create(display_name="Ada")
    client.force_login(user)

    put = client.put(ME_URL, {"display_name": "Put"}, content_type="application/json")
    delete = client.delete(ME_URL)

    assert [put.status_code, delete.status_code] == [405, 405]
    assert User.objects.filter(pk=user.pk, display_name="Ada").exists()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("--b\r\n[]--b--\r\n", "multipart/form-data; boundary=b"),
        ("display_name=Form", "application/x-www-form-urlencoded"),
    ],
)
def test_patch_takes_json_only(client: Client, body: str, content_type: str) -> None:
    user = UserFactory.create(display_name="Ada")
    client.force_login(user)

    response = client.patch(ME_URL, body, content_type=content_type)

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    user.refresh_from_db()
    assert user.display_name == "Ada"
