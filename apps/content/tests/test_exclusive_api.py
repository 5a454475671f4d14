"""`/api/v1/exclusive/`: the members' library over the API, for members whose entitlements open it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.authtoken.models import Token
from rest_framework.pagination import PageNumberPagination

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory
from apps.content.factories import ExclusiveContentFactory, MediaFactory
from apps.content.models import ExclusiveContent, ExclusiveStatus, Media

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/exclusive/"
BODY = "Members-only reasoning: the basis trade unwinds first."


@pytest.fixture(autouse=True)
def _private_media_root(settings: Settings, tmp_path: Path) -> None:
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private-media"


def _member(*keys: str) -> User:
    user = UserFactory.create()
    for key in keys:
        EntitlementFactory.create(user=user, key=key)
    return user


def _piece(*, media: list[Media] | None = None, **kwargs: Any) -> ExclusiveContent:
    kwargs.setdefault("body", BODY)
    piece = ExclusiveContentFactory.create(**kwargs)
    piece.media.set(media or [])
    return piece


def _chart(**kwargs: Any) -> Media:
    return MediaFactory.create(file=ContentFile(b"\x89PNG chart", name="chart.png"), **kwargs)


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_a_member_lists_the_pieces_in_full(client: Client) -> None:
    published = timezone.now()
    chart = _chart(alt_text="Basis, 90 days", width=1200, height=675)
    piece = _piece(
        slug="basis-unwind",
        title="The basis unwind",
        kind=ExclusiveContent.Kind.MARKET_REPORT,
        summary="What breaks first.",
        published_at=published,
        media=[chart],
    )
    client.force_login(_member("portal.premium"))

    response = client.get(LIST_URL)

    assert response.status_code == 200
    assert response.json() == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
                "slug": "basis-unwind",
                "title": "The basis unwind",
                "kind": "market_report",
                "summary": "What breaks first.",
                "body": BODY,
                "required_entitlement": "portal.premium",
                "published_at": _iso(published),
                "period_start": None,
                "media": [
                    {
                        "id": chart.pk,
                        "kind": "chart",
                        "content_type": "image/png",
                        "alt_text": "Basis, 90 days",
                        "width": 1200,
                        "height": 675,
                        "url": f"http://testserver/library/media/{chart.pk}/",
                    }
                ],
            }
        ],
    }
    assert piece.slug == "basis-unwind"


def test_the_list_holds_only_published_pieces_the_member_may_read_newest_first(client: Client) -> None:
    now = timezone.now()
    _piece(slug="older", published_at=now - dt.timedelta(days=3))
    _piece(slug="newer", published_at=now)
    _piece(slug="elite", required_entitlement="portal.elite", published_at=now)
    _piece(slug="draft", status=ExclusiveStatus.DRAFT, published_at=None)
    _piece(slug="archived", status=ExclusiveStatus.ARCHIVED)
    client.force_login(_member("portal.premium"))

    slugs = [row["slug"] for row in client.get(LIST_URL).json()["results"]]

    assert slugs == ["newer", "older"]


def test_a_higher_tier_sees_its_pieces_too(client: Client) -> None:
    _piece(slug="premium")
    _piece(slug="elite", required_entitlement="portal.elite")
    client.force_login(_member("portal.premium", "portal.elite"))

    slugs = {row["slug"] for row in client.get(LIST_URL).json()["results"]}

    assert slugs == {"premium", "elite"}


def test_the_detail_by_slug(client: Client) -> None:
    _piece(slug="basis-unwind")
    client.force_login(_member("portal.premium"))

    response = client.get(f"{LIST_URL}basis-unwind/")

    assert response.status_code == 200
    assert response.json()["body"] == BODY


def test_token_authentication(client: Client) -> None:
    _piece(slug="basis-unwind")
    token = Token.objects.create(user=_member("portal.premium"))

    response = client.get(f"{LIST_URL}basis-unwind/", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200


NOT_AUTHENTICATED = {
    "error": {
        "status": 403,
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
        "detail": None,
    }
}
NO_LIBRARY = {
    "error": {
        "status": 403,
        "code": "permission_denied",
        "message": "Your membership does not include the members' library.",
        "detail": None,
    }
}


@pytest.mark.parametrize("path", ["", "basis-unwind/", "no-such-piece/"])
def test_anonymous_callers_get_nothing(client: Client, path: str) -> None:
    _piece(slug="basis-unwind")

    response = client.get(f"{LIST_URL}{path}")

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_AUTHENTICATED


@pytest.mark.parametrize("path", ["", "basis-unwind/", "no-such-piece/"])
def test_accounts_without_the_library_get_nothing(client: Client, path: str) -> None:
    _piece(slug="basis-unwind")
    # Entitlements that are not the library's, and one that has ended, open nothing here.
    user = _member("discord.role:42")
    EntitlementFactory.create(
        user=user,
        starts_at=timezone.now() - dt.timedelta(days=40),
        ends_at=timezone.now() - dt.timedelta(days=1),
    )
    client.force_login(user)

    response = client.get(f"{LIST_URL}{path}")

    assert response.status_code == 403
    assert response.json() == NO_LIBRARY
    assert BODY not in response.content.decode()


def test_a_piece_of_a_higher_tier_is_refused_not_hidden(client: Client) -> None:
    _piece(slug="elite", required_entitlement="portal.elite")
    client.force_login(_member("portal.premium"))

    response = client.get(f"{LIST_URL}elite/")

    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Your membership does not include this piece."
    assert BODY not in response.content.decode()


@pytest.mark.parametrize("status", [ExclusiveStatus.DRAFT, ExclusiveStatus.ARCHIVED])
def test_unpublished_and_unknown_pieces_are_404_for_members(client: Client, status: str) -> None:
    _piece(slug="hidden", status=status)
    client.force_login(_member("portal.premium"))

    hidden = client.get(f"{LIST_URL}hidden/")
    unknown = client.get(f"{LIST_URL}no-such-piece/")

    assert hidden.status_code == 404
    assert BODY not in hidden.content.decode()
    assert unknown.status_code == 404


def test_pages_hold_no_one_elses_pieces(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    now = timezone.now()
    for n in range(3):
        _piece(slug=f"p{n}", published_at=now - dt.timedelta(days=n))
    _piece(slug="elite", required_entitlement="portal.elite", published_at=now - dt.timedelta(days=9))
    client.force_login(_member("portal.premium"))

    first = client.get(LIST_URL).json()
    second = client.get(LIST_URL, {"page": 2}).json()

    assert first["count"] == 3
    assert [row["slug"] for row in first["results"]] == ["p0", "p1"]
    assert [row["slug"] for row in second["results"]] == ["p2"]
    assert second["next"] is None


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_library_is_read_only(client: Client, method: str) -> None:
    piece = _piece(slug="basis-unwind", title="Original")
    client.force_login(_member("portal.premium"))

    response = getattr(client, method)(
        f"{LIST_URL}basis-unwind/", {"title": "Changed"}, content_type="application/json"
    )

    assert response.status_code == 405
    piece.refresh_from_db()
    assert piece.title == "Original"


@pytest.mark.parametrize("rows", [3, 20])
def test_query_count_does_not_grow_with_rows(
    client: Client, django_assert_max_num_queries: Any, rows: int
) -> None:
    for _ in range(rows):
        _piece(media=[_chart(), _chart()])
    client.force_login(_member("portal.premium"))

    # Session, user, entitlement keys, count, page rows, their media.
    with django_assert_max_num_queries(6):
        response = client.get(LIST_URL)

    assert len(response.json()["results"]) == rows
    assert all(len(row["media"]) == 2 for row in response.json()["results"])


def test_the_api_root_and_schema_list_the_library(client: Client) -> None:
    root = client.get("/api/v1/").json()
    schema = client.get("/api/schema/", {"format": "json"}).json()

    assert root["exclusive"] == "http://testserver/api/v1/exclusive/"
    assert "/api/v1/exclusive/" in schema["paths"]
    assert "/api/v1/exclusive/{slug}/" in schema["paths"]
