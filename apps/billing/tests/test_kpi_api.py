"""``/api/v1/kpis/``: the KPIs for staff, in exactly this shape; everyone else gets a JSON 403 and nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from rest_framework.authtoken.models import Token

from apps.accounts.factories import UserFactory
from apps.billing.factories import ConversionAttemptFactory, PlanPriceFactory, SubscriptionFactory
from apps.billing.models import BillingInterval, ConversionStatus, SubscriptionStatus

pytestmark = pytest.mark.django_db

URL = "/api/v1/kpis/"
NOW = dt.datetime(2025, 3, 7, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _frozen() -> Iterator[None]:
    cache.clear()  # throttle counters
    with time_machine.travel(NOW, tick=False):
        yield


def _business() -> None:
    monthly = PlanPriceFactory.create(amount_minor=2900)
    yearly = PlanPriceFactory.create(amount_minor=29000, interval=BillingInterval.YEAR)
    SubscriptionFactory.create(plan=monthly.plan, price=monthly)
    SubscriptionFactory.create(plan=yearly.plan, price=yearly)
    SubscriptionFactory.create(plan=monthly.plan, price=monthly, status=SubscriptionStatus.TRIALING)
    ConversionAttemptFactory.create(sent_at=NOW - dt.timedelta(days=3))
    ConversionAttemptFactory.create(
        sent_at=NOW - dt.timedelta(days=2),
        clicked_at=NOW - dt.timedelta(days=2),
        converted_at=NOW - dt.timedelta(days=1),
        status=ConversionStatus.CONVERTED,
    )
    ConversionAttemptFactory.create(sent_at=NOW - dt.timedelta(days=20))


def test_staff_get_the_kpis(client: Client) -> None:
    _business()
    client.force_login(UserFactory.create(is_staff=True))

    response = client.get(URL, {"period": "7d"})

    assert response.status_code == 200
    assert response.json() == {
        "as_of": "2025-03-07T12:00:00Z",
        "period": {"days": 7, "start": "2025-02-28T12:00:00Z", "end": "2025-03-07T12:00:00Z"},
        # 2900 monthly + 29000 / 12 = 2416.67, rounded to 2417.
        "mrr_minor": {"usd": 5317},
        "active_members": 2,
        "trials": 1,
        # Every subscription was created today: none was paying a week ago.
        "churn": {"subscriptions_at_start": 0, "ended": 0, "rate": None},
        "funnel": {"offers_sent": 2, "clicked": 1, "converted": 1},
    }


def test_the_period_defaults_to_thirty_days(client: Client) -> None:
    _business()
    token = Token.objects.create(user=UserFactory.create(is_staff=True))

    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200
    body = response.json()
    assert body["period"] == {"days": 30, "start": "2025-02-05T12:00:00Z", "end": "2025-03-07T12:00:00Z"}
    assert body["funnel"] == {"offers_sent": 3, "clicked": 1, "converted": 1}


def test_a_malformed_period_is_refused(client: Client) -> None:
    client.force_login(UserFactory.create(is_staff=True))

    response = client.get(URL, {"period": "1y"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (400, "invalid")
    assert error["detail"] == {"period": ["a period is a number of days from 1d to 366d, like 30d"]}


def test_members_who_are_not_staff_are_refused(client: Client) -> None:
    _business()
    client.force_login(UserFactory.create())

    response = client.get(URL)

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {
            "status": 403,
            "code": "permission_denied",
            "message": "You do not have permission to perform this action.",
            "detail": None,
        }
    }


def test_anonymous_callers_are_refused(client: Client) -> None:
    _business()

    response = client.get(URL)

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {
            "status": 403,
            "code": "not_authenticated",
            "message": "Authentication credentials were not provided.",
            "detail": None,
        }
    }


def test_the_schema_documents_the_period_and_the_shape(client: Client) -> None:
    schema = json.loads(client.get("/api/schema/?format=json").content)

    operation = schema["paths"]["/api/v1/kpis/"]["get"]
    assert [(p["name"], p["in"], p["schema"]["default"]) for p in operation["parameters"]] == [
        ("period", "query", "30d")
    ]
    assert sorted(operation["responses"]) == ["200", "400", "403", "429"]
    report = schema["components"]["schemas"]["KpiReport"]
    assert sorted(report["properties"]) == [
        "active_members",
        "as_of",
        "churn",
        "funnel",
        "mrr_minor",
        "period",
        "trials",
    ]
