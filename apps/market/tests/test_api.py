"""The public insights API: what anyone may read, how it filters, and what it refuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.throttling import AnonRateThrottle

from apps.accounts.factories import UserFactory
from apps.market.factories import InsightFactory
from apps.market.models import Insight, InsightStatus, InsightType, Timeframe

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/insights/"


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


def test_list_is_public_newest_first_and_leaves_out_discarded(client: Client) -> None:
    now = timezone.now()
    oldest = InsightFactory.create(detected_at=now - dt.timedelta(hours=3), status=InsightStatus.USED)
    newest = InsightFactory.create(detected_at=now - dt.timedelta(minutes=5))
    middle = InsightFactory.create(detected_at=now - dt.timedelta(hours=1), status=InsightStatus.EXPIRED)
    InsightFactory.create(detected_at=now, status=InsightStatus.DISCARDED)

    response = client.get(LIST_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert body["next"] is None
    assert body["previous"] is None
    assert _ids(response) == [newest.pk, middle.pk, oldest.pk]


def test_list_row_has_exactly_the_public_fields(client: Client) -> None:
    detected = timezone.now() - dt.timedelta(minutes=10)
    insight = InsightFactory.create(
        type=InsightType.VOLUME_SPIKE,
        symbol="ETH/USDT",
        timeframe=Timeframe.H4,
        confidence=0.83,
        headline="ETH volume 4.2x its 20-candle mean",
        evidence={"ratio": 4.2, "window": 20},
        detected_at=detected,
        expires_at=detected + dt.timedelta(hours=6),
        status=InsightStatus.PLANNED,
    )

    response = client.get(LIST_URL)

    assert response.json()["results"] == [
        {
            "id": insight.pk,
            "type": "volume_spike",
            "symbol": "ETH/USDT",
            "timeframe": "4h",
            "confidence": 0.83,
            "headline": "ETH volume 4.2x its 20-candle mean",
            "evidence": {"ratio": 4.2, "window": 20},
            "detected_at": _iso(detected),
            "expires_at": _iso(detected + dt.timedelta(hours=6)),
        }
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("symbol=ETH/USDT", ["eth_low", "eth_high"]),
        ("symbol=eth/usdt", ["eth_low", "eth_high"]),
        ("type=volume_spike", ["btc_spike", "eth_high"]),
        ("min_confidence=0.7", ["btc_spike", "eth_high"]),
        ("min_confidence=0", ["btc_rsi", "btc_spike", "eth_low", "eth_high"]),
        ("min_confidence=1", []),
        ("symbol=ETH/USDT&type=volume_spike&min_confidence=0.5", ["eth_high"]),
        ("symbol=SOL/USDT", []),
        # Empty parameters, as an HTML form sends them, and unknown ones filter nothing.
        ("symbol=&type=&min_confidence=", ["btc_rsi", "btc_spike", "eth_low", "eth_high"]),
        ("page=1&unknown=ignored", ["btc_rsi", "btc_spike", "eth_low", "eth_high"]),
    ],
)
def test_list_filters(client: Client, query: str, expected: list[str]) -> None:
    now = timezone.now()
    rows = {
        "btc_rsi": InsightFactory.create(
            symbol="BTC/USDT", type=InsightType.RSI_OVERSOLD, confidence=0.4, detected_at=now
        ),
        "btc_spike": InsightFactory.create(
            symbol="BTC/USDT",
            type=InsightType.VOLUME_SPIKE,
            confidence=0.7,
            detected_at=now - dt.timedelta(minutes=1),
        ),
        "eth_low": InsightFactory.create(
            symbol="ETH/USDT",
            type=InsightType.PRICE_MOVE,
            confidence=0.3,
            detected_at=now - dt.timedelta(minutes=2),
        ),
        "eth_high": InsightFactory.create(
            symbol="ETH/USDT",
            type=InsightType.VOLUME_SPIKE,
            confidence=0.95,
            detected_at=now - dt.timedelta(minutes=3),
        ),
    }
    # A discarded insight matching every filter must still never appear.
    InsightFactory.create(
        symbol="ETH/USDT",
        type=InsightType.VOLUME_SPIKE,
        confidence=0.99,
        detected_at=now,
        status=InsightStatus.DISCARDED,
    )

    response = client.get(f"{LIST_URL}?{query}")

    assert response.status_code == 200
    assert _ids(response) == [rows[name].pk for name in expected]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("type=moon", "type", '"moon" is not a valid choice.'),
        ("min_confidence=high", "min_confidence", "A valid number is required."),
        ("min_confidence=1.5", "min_confidence", "Ensure this value is less than or equal to 1.0."),
        ("min_confidence=-0.1", "min_confidence", "Ensure this value is greater than or equal to 0.0."),
        ("min_confidence=nan", "min_confidence", "A valid number is required."),
        ("symbol=" + "X" * 31, "symbol", "Ensure this field has no more than 30 characters."),
    ],
)
def test_list_refuses_bad_filters_with_json_400(client: Client, query: str, field: str, message: str) -> None:
    InsightFactory.create()

    response = client.get(f"{LIST_URL}?{query}")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {
            "status": 400,
            "code": "invalid",
            "message": "The request was not valid.",
            "detail": {field: [message]},
        }
    }


def test_list_paginates(client: Client) -> None:
    InsightFactory.create_batch(52)

    first = client.get(LIST_URL).json()
    second = client.get(f"{LIST_URL}?page=2").json()

    assert first["count"] == 52
    assert len(first["results"]) == 50
    assert first["next"] == f"http://testserver{LIST_URL}?page=2"
    assert second["count"] == 52
    assert len(second["results"]) == 2
    assert second["next"] is None
    every_id = [row["id"] for row in first["results"] + second["results"]]
    assert every_id == list(Insight.objects.order_by("-detected_at", "-id").values_list("id", flat=True))


@pytest.mark.parametrize("rows", [5, 30])
def test_list_query_count_does_not_grow_with_rows(
    client: Client, django_assert_max_num_queries: Any, rows: int
) -> None:
    InsightFactory.create_batch(rows)

    # One COUNT for the paginator and one SELECT for the page, however many rows there are.
    with django_assert_max_num_queries(2):
        response = client.get(LIST_URL)

    assert len(response.json()["results"]) == rows


def test_detail(client: Client) -> None:
    detected = timezone.now() - dt.timedelta(hours=2)
    insight = InsightFactory.create(
        type=InsightType.SENTIMENT_SHIFT,
        symbol="SOL/USDT",
        timeframe="",
        confidence=0.61,
        headline="SOL sentiment turned bullish",
        evidence={"from": -0.2, "to": 0.35},
        detected_at=detected,
    )

    response = client.get(f"{LIST_URL}{insight.pk}/")

    assert response.status_code == 200
    assert response.json() == {
        "id": insight.pk,
        "type": "sentiment_shift",
        "symbol": "SOL/USDT",
        "timeframe": "",
        "confidence": 0.61,
        "headline": "SOL sentiment turned bullish",
        "evidence": {"from": -0.2, "to": 0.35},
        "detected_at": _iso(detected),
        "expires_at": None,
    }


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        ("discarded", "No Insight matches the given query."),
        ("missing", "No Insight matches the given query."),
        ("not-a-number", "Not found."),
    ],
)
def test_detail_404s_as_json_for_discarded_and_unknown(client: Client, lookup: str, message: str) -> None:
    discarded = InsightFactory.create(status=InsightStatus.DISCARDED)
    key = {"discarded": str(discarded.pk), "missing": str(discarded.pk + 1000), "not-a-number": "abc"}[lookup]

    response = client.get(f"{LIST_URL}{key}/")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"status": 404, "code": "not_found", "message": message, "detail": None}
    }


def test_insights_are_read_only_even_for_members(client: Client) -> None:
    client.force_login(UserFactory.create())
    insight = InsightFactory.create(headline="Original")

    created = client.post(LIST_URL, {"symbol": "BTC/USDT"}, content_type="application/json")
    changed = client.patch(
        f"{LIST_URL}{insight.pk}/", {"headline": "Changed"}, content_type="application/json"
    )
    deleted = client.delete(f"{LIST_URL}{insight.pk}/")

    assert [created.status_code, changed.status_code, deleted.status_code] == [405, 405, 405]
    assert created.json()["error"]["code"] == "method_not_allowed"
    assert list(Insight.objects.values_list("headline", flat=True)) == ["Original"]


def test_anonymous_reads_are_throttled(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # The configured rate is read once at import; setting the class's rate is how a test lowers it.
    monkeypatch.setattr(AnonRateThrottle, "rate", "2/min", raising=False)

    responses = [client.get(LIST_URL) for _ in range(3)]

    assert [response.status_code for response in responses] == [200, 200, 429]
    assert responses[2].json()["error"]["code"] == "throttled"
