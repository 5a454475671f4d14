"""The strategy-change API: staff read the log; everyone else is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from apps.accounts.factories import UserFactory
from apps.learning.models import StrategyChange

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/strategy-changes/"


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _change(**kwargs: Any) -> StrategyChange:
    fields: dict[str, Any] = {
        "agent_name": "content_strategist",
        "parameter": "platform_weights",
        "source": StrategyChange.Source.STRATEGY_TUNING,
        "status": StrategyChange.Status.APPLIED,
        "reason": "X posts earned twice the engagement of Discord posts",
        "evidence": {"arms": {"x": {"n": 40, "mean": 0.031}}},
        "before": {"x": 1.0, "discord": 0.6},
        "after": {"x": 1.0, "discord": 0.48},
        "target": {"x": 1.0, "discord": 0.3},
    }
    return StrategyChange.objects.create(**{**fields, **kwargs})


def test_anonymous_and_members_are_refused(client: Client) -> None:
    _change()
    anonymous = client.get(LIST_URL)
    client.force_login(UserFactory.create())
    member = client.get(LIST_URL)

    assert anonymous.status_code in (401, 403)
    assert member.status_code == 403
    assert "engagement" not in anonymous.content.decode() + member.content.decode()


def test_staff_read_the_log_newest_first_with_before_and_after(client: Client) -> None:
    first = _change()
    second = _change(parameter="arm_weights", status=StrategyChange.Status.PROPOSED, after=None)
    client.force_login(UserFactory.create(is_staff=True))

    rows = client.get(LIST_URL).json()["results"]
    detail = client.get(f"{LIST_URL}{first.pk}/").json()

    assert [r["id"] for r in rows] == [second.pk, first.pk]
    assert detail["before"] == {"x": 1.0, "discord": 0.6}
    assert detail["after"] == {"x": 1.0, "discord": 0.48}
    assert detail["target"] == {"x": 1.0, "discord": 0.3}
    assert detail["source"] == "strategy_tuning"


def test_staff_filter_by_status_and_refuse_an_unknown_one(client: Client) -> None:
    applied = _change()
    _change(status=StrategyChange.Status.SKIPPED, skip_reason="frozen")
    client.force_login(UserFactory.create(is_staff=True))

    rows = client.get(f"{LIST_URL}?status=applied").json()["results"]
    tuned = client.get(f"{LIST_URL}?origin=strategy_tuning&status=applied").json()["results"]
    from_tests = client.get(f"{LIST_URL}?origin=ab_test").json()["results"]
    refused = client.get(f"{LIST_URL}?status=maybe")

    assert [r["id"] for r in rows] == [applied.pk]
    assert [r["id"] for r in tuned] == [applied.pk]
    assert from_tests == []
    assert refused.status_code == 400


@pytest.mark.parametrize("rows", [3, 25])
def test_list_query_count_does_not_grow_with_rows(
    client: Client, django_assert_max_num_queries: Any, rows: int
) -> None:
    for _ in range(rows):
        _change()
    client.force_login(UserFactory.create(is_staff=True))

    with django_assert_max_num_queries(4):
        response = client.get(LIST_URL)

    assert response.json()["count"] == rows
