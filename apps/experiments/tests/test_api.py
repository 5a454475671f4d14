"""The experiments API: staff read tests and results; everyone else is refused and sees nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from apps.accounts.factories import UserFactory
from apps.experiments.factories import ABTestFactory, ABTestVariantFactory
from apps.experiments.models import ABTest

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/experiments/"


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _test_with_variants(**kwargs: Any) -> ABTest:
    test = ABTestFactory.create(**kwargs)
    ABTestVariantFactory.create(test=test, key="A", is_control=True, payload={"opening": "statement"})
    ABTestVariantFactory.create(test=test, key="B", is_control=False, payload={"opening": "question"})
    return test


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory.create(is_staff=True))
    return client


def test_anonymous_is_refused_and_sees_no_test(client: Client) -> None:
    _test_with_variants(name="Secret tone test")

    response = client.get(LIST_URL)

    assert response.status_code in (401, 403)
    assert "Secret tone test" not in response.content.decode()


def test_a_member_who_is_not_staff_is_refused(client: Client) -> None:
    test = _test_with_variants(name="Secret tone test")
    client.force_login(UserFactory.create())

    listing = client.get(LIST_URL)
    detail = client.get(f"{LIST_URL}{test.slug}/")

    assert (listing.status_code, detail.status_code) == (403, 403)
    assert "Secret tone test" not in listing.content.decode() + detail.content.decode()


def test_staff_read_a_test_with_its_variants_winner_and_result(staff_client: Client) -> None:
    test = _test_with_variants(slug="tone-1", metric="engagement_rate", secondary_metrics=["click"])
    result = {"srm_p_value": 0.4, "exposures": {"A": 120, "B": 118}, "metrics": {}}
    ABTest.objects.filter(pk=test.pk).update(
        result=result,
        decision=ABTest.Decision.WINNER,
        winner=test.variants.get(key="B"),
        status=ABTest.Status.COMPLETED,
    )

    body = staff_client.get(f"{LIST_URL}tone-1/").json()

    assert body["slug"] == "tone-1"
    assert body["metrics"] == ["engagement_rate", "click"]
    assert body["decision"] == "winner"
    assert body["winner"] == "B"
    assert body["result"] == result
    assert [(v["key"], v["is_control"], v["payload"]) for v in body["variants"]] == [
        ("A", True, {"opening": "statement"}),
        ("B", False, {"opening": "question"}),
    ]


def test_staff_filter_by_status_and_an_unknown_status_is_a_json_400(staff_client: Client) -> None:
    _test_with_variants(slug="running-1")
    _test_with_variants(slug="done-1", status=ABTest.Status.COMPLETED)

    running = staff_client.get(f"{LIST_URL}?status=running").json()["results"]
    refused = staff_client.get(f"{LIST_URL}?status=bogus")

    assert [t["slug"] for t in running] == ["running-1"]
    assert refused.status_code == 400
    assert "status" in refused.json()["error"]["detail"]


def test_the_api_is_read_only_even_for_staff(staff_client: Client) -> None:
    test = _test_with_variants(slug="tone-ro")

    response = staff_client.delete(f"{LIST_URL}{test.slug}/")

    assert response.status_code == 405
    assert ABTest.objects.filter(pk=test.pk).exists()


@pytest.mark.parametrize("rows", [3, 20])
def test_list_query_count_does_not_grow_with_rows(
    staff_client: Client, django_assert_max_num_queries: Any, rows: int
) -> None:
    for _ in range(rows):
        _test_with_variants()

    # Session and user, the COUNT, the page, and the variants prefetched once.
    with django_assert_max_num_queries(6):
        response = staff_client.get(LIST_URL)

    assert response.json()["count"] == rows
