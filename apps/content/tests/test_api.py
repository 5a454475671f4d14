"""The public published-content API: what anyone may read, how it filters, and what it refuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import factory
import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.content.factories import ContentDraftFactory, PublishedContentFactory
from apps.content.models import ContentFormat, PublishedContent
from apps.core.models import Platform

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/published-content/"


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> Iterator[None]:
    # Throttle counters live in the cache; each test starts with none spent.
    cache.clear()
    yield
    cache.clear()


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _ids(response: Any) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def test_list_is_public_and_newest_first(client: Client) -> None:
    now = timezone.now()
    oldest = PublishedContentFactory.create(published_at=now - dt.timedelta(days=2))
    newest = PublishedContentFactory.create(published_at=now, platform=Platform.TELEGRAM)
    middle = PublishedContentFactory.create(
        published_at=now - dt.timedelta(hours=5), platform=Platform.DISCORD
    )

    response = client.get(LIST_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert body["next"] is None
    assert body["previous"] is None
    assert _ids(response) == [newest.pk, middle.pk, oldest.pk]


def test_list_row_has_exactly_the_public_fields(client: Client) -> None:
    published = timezone.now() - dt.timedelta(hours=1)
    measured = published + dt.timedelta(minutes=30)
    post = PublishedContentFactory.create(
        draft=ContentDraftFactory.create(),
        platform=Platform.X,
        format=ContentFormat.X_THREAD,
        external_id="1790000000000000123",
        part_ids=["1790000000000000123", "1790000000000000124"],
        url="https://x.com/coinlink/status/1790000000000000123",
        text="BTC RSI at 27.4: oversold on the 1h. A thread on what usually follows.",
        published_at=published,
        metrics={"impressions": 5400, "likes": 210},
        engagement_rate=0.0389,
        metrics_updated_at=measured,
    )

    response = client.get(LIST_URL)

    assert response.json()["results"] == [
        {
            "id": post.pk,
            "platform": "x",
            "format": "x_thread",
            "external_id": "1790000000000000123",
            "part_ids": ["1790000000000000123", "1790000000000000124"],
            "url": "https://x.com/coinlink/status/1790000000000000123",
            "text": "BTC RSI at 27.4: oversold on the 1h. A thread on what usually follows.",
            "published_at": _iso(published),
            "metrics": {"impressions": 5400, "likes": 210},
            "engagement_rate": 0.0389,
            "metrics_updated_at": _iso(measured),
        }
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("platform=x", ["x_new", "x_old"]),
        ("platform=telegram", ["telegram"]),
        ("platform=discord", []),
        ("platform=", ["x_new", "telegram", "x_old"]),
        ("", ["x_new", "telegram", "x_old"]),
    ],
)
def test_list_filters_by_platform(client: Client, query: str, expected: list[str]) -> None:
    now = timezone.now()
    rows = {
        "x_new": PublishedContentFactory.create(platform=Platform.X, published_at=now),
        "telegram": PublishedContentFactory.create(
            platform=Platform.TELEGRAM, published_at=now - dt.timedelta(minutes=1)
        ),
        "x_old": PublishedContentFactory.create(
            platform=Platform.X, published_at=now - dt.timedelta(minutes=2)
        ),
    }

    response = client.get(f"{LIST_URL}?{query}")

    assert response.status_code == 200
    assert _ids(response) == [rows[name].pk for name in expected]


@pytest.mark.parametrize("platform", ["X", "twitter", "mastodon"])
def test_list_refuses_an_unknown_platform_with_json_400(client: Client, platform: str) -> None:
    PublishedContentFactory.create()

    response = client.get(f"{LIST_URL}?platform={platform}")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {
            "status": 400,
            "code": "invalid",
            "message": "The request was not valid.",
            "detail": {"platform": [f'"{platform}" is not a valid choice.']},
        }
    }


def test_list_paginates(client: Client) -> None:
    PublishedContentFactory.create_batch(51)

    first = client.get(LIST_URL).json()
    second = client.get(f"{LIST_URL}?page=2").json()

    assert first["count"] == 51
    assert len(first["results"]) == 50
    assert first["next"] == f"http://testserver{LIST_URL}?page=2"
    assert len(second["results"]) == 1
    assert second["previous"] == f"http://testserver{LIST_URL}"
    every_id = [row["id"] for row in first["results"] + second["results"]]
    expected = PublishedContent.objects.order_by("-published_at", "-id").values_list("id", flat=True)
    assert every_id == list(expected)


@pytest.mark.parametrize("rows", [5, 30])
def test_list_query_count_does_not_grow_with_rows(
    client: Client, django_assert_max_num_queries: Any, rows: int
) -> None:
    # Posts that came from drafts must not make the list load each draft.
    PublishedContentFactory.create_batch(rows, draft=factory.SubFactory(ContentDraftFactory))

    # One COUNT for the paginator and one SELECT for the page, however many rows there are.
    with django_assert_max_num_queries(2):
        response = client.get(f"{LIST_URL}?platform=x")

    assert len(response.json()["results"]) == rows


def test_detail(client: Client) -> None:
    published = timezone.now() - dt.timedelta(days=1)
    post = PublishedContentFactory.create(
        platform=Platform.TELEGRAM,
        format=ContentFormat.TELEGRAM_CHART_POST,
        external_id="-1001234567890:812",
        url="",
        text="ETH volume spike on the 4h chart.",
        published_at=published,
        metrics={},
        engagement_rate=None,
    )

    response = client.get(f"{LIST_URL}{post.pk}/")

    assert response.status_code == 200
    assert response.json() == {
        "id": post.pk,
        "platform": "telegram",
        "format": "telegram_chart_post",
        "external_id": "-1001234567890:812",
        "part_ids": [],
        "url": "",
        "text": "ETH volume spike on the 4h chart.",
        "published_at": _iso(published),
        "metrics": {},
        "engagement_rate": None,
        "metrics_updated_at": None,
    }


def test_detail_404s_as_json(client: Client) -> None:
    response = client.get(f"{LIST_URL}999999/")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "status": 404,
            "code": "not_found",
            "message": "No PublishedContent matches the given query.",
            "detail": None,
        }
    }


def test_published_content_is_read_only_even_for_members(client: Client) -> None:
    client.force_login(UserFactory.create())
    post = PublishedContentFactory.create(text="Original")

    created = client.post(LIST_URL, {"text": "New"}, content_type="application/json")
    changed = client.put(f"{LIST_URL}{post.pk}/", {"text": "Changed"}, content_type="application/json")
    deleted = client.delete(f"{LIST_URL}{post.pk}/")

    assert [created.status_code, changed.status_code, deleted.status_code] == [405, 405, 405]
    assert list(PublishedContent.objects.values_list("text", flat=True)) == ["Original"]
