"""The API against its own OpenAPI schema, fuzzed by schemathesis: every operation, as an anonymous caller, a
member with an active subscription (token) and a staff member (session, with CSRF), must answer with a status
code, content type, headers and body that the schema declares, and never with a server error.

The schema is loaded from the application itself over WSGI (no network), so the run tests the schema that is
actually served. Generation is derandomized and bounded so the whole run is reproducible and fits in CI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory, SubscriptionFactory
from apps.billing.models import EntitlementSource, SubscriptionStatus
from apps.content.factories import ExclusiveContentFactory, MediaFactory, PublishedContentFactory
from apps.content.models import ExclusiveStatus
from apps.content.selectors import LIBRARY_ENTITLEMENT
from apps.core.models import Platform
from apps.market.factories import InsightFactory

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # A request the schema calls invalid (a wrong type, a value out of range, an unknown choice) must be
    # refused with a 4xx, not answered as if it were fine.
    negative_data_rejection,
]

# Fixed keys of the rows below, so that generation reaches the 200 answers of the detail operations too (a
# random id or slug almost always misses). Far above any sequence value the suite reaches, so explicit keys
# never collide with rows other factories create.
KNOWN_IDS = [900_001, 900_002]
KNOWN_SLUGS = ["members-weekly-900001", "whale-tier-report-900002", "draft-900003"]
WHALE_TIER = "portal.whale"

_application = WSGIHandler()
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", _application)


@schema.hook
def before_generate_path_parameters(
    context: schemathesis.HookContext, strategy: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    names = {parameter.name for parameter in context.operation.path_parameters}  # type: ignore[union-attr]
    if names == {"id"}:
        return st.one_of(strategy, st.fixed_dictionaries({"id": st.sampled_from(KNOWN_IDS)}))
    if names == {"slug"}:
        return st.one_of(strategy, st.fixed_dictionaries({"slug": st.sampled_from(KNOWN_SLUGS)}))
    return strategy


@pytest.fixture(autouse=True)
def _requests_share_the_test_transaction() -> Iterator[None]:
    # Django closes "old" connections at each request's start and end. Inside the test's transaction that
    # would poison it; Django's own test client disconnects the same receivers for the same reason.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _set_rates(monkeypatch: pytest.MonkeyPatch, rate: str) -> None:
    # DRF reads the configured rates once, at import; the class attribute is what a throttle consults.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": rate, "user": rate})


@pytest.fixture
def _throttles_out_of_the_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hundreds of generated requests from one address would spend the anonymous rate within a test and turn
    # the rest into 429s, exploring the throttle instead of the API. The 429 answers themselves are checked
    # against the schema by the tests below the fuzzing.
    _set_rates(monkeypatch, "100000/min")


def _member() -> User:
    now = timezone.now()
    member = UserFactory.create(display_name="Member")
    subscription = SubscriptionFactory.create(
        user=member,
        status=SubscriptionStatus.ACTIVE,
        current_period_start=now - dt.timedelta(days=10),
        current_period_end=now + dt.timedelta(days=20),
    )
    EntitlementFactory.create(
        user=member,
        key=LIBRARY_ENTITLEMENT,
        source=EntitlementSource.SUBSCRIPTION,
        subscription=subscription,
        starts_at=now - dt.timedelta(days=10),
        ends_at=now + dt.timedelta(days=20),
    )
    return member


def _content() -> None:
    now = timezone.now()
    InsightFactory.create(id=KNOWN_IDS[0], symbol="BTC/USDT")
    InsightFactory.create(id=KNOWN_IDS[1], symbol="ETH/USDT", timeframe="")
    PublishedContentFactory.create(id=KNOWN_IDS[0], platform=Platform.X)
    # A Telegram post without a link: the schema must admit the empty url.
    PublishedContentFactory.create(id=KNOWN_IDS[1], platform=Platform.TELEGRAM, url="", metrics={})
    weekly = ExclusiveContentFactory.create(
        slug=KNOWN_SLUGS[0], required_entitlement=LIBRARY_ENTITLEMENT, period_start=now.date()
    )
    weekly.media.add(MediaFactory.create())
    # A higher tier than the member's: refused (403) to them, not hidden.
    ExclusiveContentFactory.create(slug=KNOWN_SLUGS[1], required_entitlement=WHALE_TIER)
    ExclusiveContentFactory.create(slug=KNOWN_SLUGS[2], status=ExclusiveStatus.DRAFT, published_at=None)


@dataclass(frozen=True)
class Caller:
    name: str
    headers: dict[str, str]
    cookies: dict[str, str]


def _anonymous() -> Caller:
    return Caller(name="anonymous", headers={}, cookies={})


def _member_by_token() -> Caller:
    token = Token.objects.create(user=_member())
    return Caller(name="member", headers={"Authorization": f"Token {token.key}"}, cookies={})


def _staff_by_session() -> Caller:
    staff = UserFactory.create(is_staff=True, display_name="Operator")
    browser = Client()
    browser.force_login(staff)
    # Session authentication enforces CSRF on writes: send the cookie and the header, as the browser does.
    csrf_secret = "s" * 32
    return Caller(
        name="staff",
        headers={"X-CSRFToken": csrf_secret},
        cookies={"sessionid": browser.cookies["sessionid"].value, "csrftoken": csrf_secret},
    )


CALLERS: dict[str, Callable[[], Caller]] = {
    "anonymous": _anonymous,
    "member": _member_by_token,
    "staff": _staff_by_session,
}


@pytest.fixture(params=sorted(CALLERS))
def caller(request: pytest.FixtureRequest) -> Caller:
    """One of the three callers, in a database holding a row for every operation to find."""
    _content()
    return CALLERS[request.param]()


def test_each_caller_is_who_it_claims_to_be(caller: Caller) -> None:
    # Guards the fuzzing below: a caller whose credentials silently failed would explore nothing but 403s.
    me = schema["/api/v1/me/"]["GET"].Case().call(headers=caller.headers, cookies=caller.cookies)
    library = schema["/api/v1/exclusive/"]["GET"].Case().call(headers=caller.headers, cookies=caller.cookies)
    kpis = schema["/api/v1/kpis/"]["GET"].Case().call(headers=caller.headers, cookies=caller.cookies)
    rename = schema["/api/v1/me/"]["PATCH"].Case(
        body={"display_name": "Renamed"}, media_type="application/json"
    )
    renamed = rename.call(headers=caller.headers, cookies=caller.cookies)

    statuses = [me.status_code, library.status_code, kpis.status_code, renamed.status_code]
    expected = {
        "anonymous": [403, 403, 403, 403],
        "member": [200, 200, 403, 200],
        "staff": [200, 403, 200, 200],
    }
    assert statuses == expected[caller.name]
    if renamed.status_code == 200:
        assert renamed.json()["display_name"] == "Renamed"


@pytest.mark.usefixtures("_throttles_out_of_the_way")
@schema.parametrize()
@hypothesis.settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    # The health checks judge generation speed and fixture scope; the run is bounded by max_examples instead,
    # and the function-scoped fixtures (rows, caller) are meant to be shared by all examples of one test.
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, caller: Caller) -> None:
    case.call_and_validate(headers=caller.headers, cookies=caller.cookies, checks=CHECKS)


# --- the answers fuzzing reaches rarely or never, each checked against the schema ---------------------------------


def _call(path: str, method: str = "GET", *, headers: dict[str, str] | None = None, **case: Any) -> Any:
    """One request to an operation of the schema, over the same WSGI app, validated by the same checks."""
    operation_case = schema[path][method].Case(**case)
    response = operation_case.call(headers=headers)
    operation_case.validate_response(response, checks=CHECKS)
    return response


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message, "detail": None}}


@pytest.mark.parametrize("page", [3, 0, -1, "last"])
def test_a_page_that_does_not_exist_is_a_declared_404(page: int | str) -> None:
    InsightFactory.create_batch(2)

    response = _call("/api/v1/insights/", query={"page": page})

    assert response.status_code == 404
    assert response.json() == _error(404, "not_found", "Invalid page.")


def test_an_empty_filter_is_declared_and_filters_nothing() -> None:
    _content()

    response = _call("/api/v1/insights/", query={"symbol": "", "type": "", "min_confidence": "", "page": ""})

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == sorted(KNOWN_IDS, reverse=True)


def test_throttling_is_a_declared_429_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_rates(monkeypatch, "2/min")

    responses = [_call("/api/v1/published-content/") for _ in range(3)]

    assert [response.status_code for response in responses] == [200, 200, 429]
    assert responses[2].json() == _error(
        429, "throttled", "Request was throttled. Expected available in 60 seconds."
    )
    assert responses[2].headers["retry-after"] == ["60"]


def test_a_wrong_token_is_a_declared_403_and_then_a_declared_429(settings: Any) -> None:
    settings.API_AUTH_FAILURE_RATE = "2/min"
    InsightFactory.create()
    wrong = {"Authorization": "Token " + "0" * 40}

    responses = [_call("/api/v1/insights/", headers=wrong) for _ in range(3)]

    assert [response.status_code for response in responses] == [403, 403, 429]
    assert responses[0].json() == _error(403, "authentication_failed", "Invalid token.")
    assert responses[2].json()["error"]["code"] == "throttled"
    assert int(responses[2].headers["retry-after"][0]) > 0


@pytest.mark.parametrize(
    "path", ["/api/v1/insights/2.5e-108/", "/api/v1/published-content/1%2F2/", "/api/v1/nothing-here/"]
)
def test_a_path_no_route_matches_is_a_json_404(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == _error(404, "not_found", "Not found.")


def test_a_path_without_its_slash_is_still_redirected(client: Client) -> None:
    response = client.get("/api/v1/me")

    assert response.status_code == 301
    assert response["Location"] == "/api/v1/me/"
