"""The operator dashboard page (and the admin's KPI page): operators only, showing the KPIs, the latest runs,
the circuit breakers and insights, at a fixed number of queries however full the tables are; its live list is
fed by a static script that is told where the websocket is, with no inline script."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.agents.factories import AgentRunFactory, PipelineRunFactory
from apps.agents.models import AgentRunStatus, PipelineRun
from apps.billing.factories import ConversionAttemptFactory, PlanPriceFactory, SubscriptionFactory
from apps.core.models import CircuitBreakerState
from apps.market.factories import InsightFactory

pytestmark = pytest.mark.django_db

URL = "/dashboard/"


@pytest.fixture
def operator() -> User:
    return UserFactory.create(is_staff=True)


@pytest.fixture
def staff_client(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


def _rows(count: int) -> None:
    now = timezone.now()
    for index in range(count):
        pipeline = PipelineRunFactory.create()
        AgentRunFactory.create(agent_name=f"agent_{index}", pipeline_run=pipeline)
        AgentRunFactory.create(agent_name="publishing", status=AgentRunStatus.FAILED, error="X answered 503")
        InsightFactory.create(detected_at=now - dt.timedelta(minutes=index))
        CircuitBreakerState.objects.create(service=f"service-{count}-{index}")
        price = PlanPriceFactory.create(amount_minor=1000)
        SubscriptionFactory.create(plan=price.plan, price=price)
        ConversionAttemptFactory.create()


def test_anonymous_visitors_are_sent_to_the_admin_login(client: Client) -> None:
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/dashboard/"


def test_members_who_are_not_staff_are_refused(client: Client) -> None:
    client.force_login(UserFactory.create())

    response = client.get(URL)

    assert response.status_code == 403


def test_an_inactive_operator_is_refused(client: Client) -> None:
    operator = UserFactory.create(is_staff=True)
    client.force_login(operator)
    User.objects.filter(pk=operator.pk).update(is_active=False)

    response = client.get(URL)

    # The session no longer authenticates a deactivated account: back to the login.
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/dashboard/"


def test_shows_kpis_runs_breakers_and_insights(staff_client: Client) -> None:
    price = PlanPriceFactory.create(amount_minor=2900)
    SubscriptionFactory.create(plan=price.plan, price=price)
    ConversionAttemptFactory.create()
    pipeline = PipelineRunFactory.create(
        name="full", status=PipelineRun.Status.PARTIAL, error="analysis failed"
    )
    AgentRunFactory.create(agent_name="market_scanner", pipeline_run=pipeline, summary="Fetched 240 candles")
    AgentRunFactory.create(
        agent_name="analysis", status=AgentRunStatus.FAILED, error="ZeroDivisionError: boom"
    )
    CircuitBreakerState.objects.create(
        service="telegram", state=CircuitBreakerState.State.OPEN, last_error="429"
    )
    CircuitBreakerState.objects.create(service="discord")
    InsightFactory.create(symbol="ETH/USDT", headline="ETH RSI at 27.4")

    response = staff_client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    kpis = {(kpi.label, kpi.value) for kpi in response.context["kpis"]}
    assert {("MRR (USD)", "$29.00"), ("Active members", "1"), ("Trials", "0"), ("Offers sent", "1")} <= kpis
    assert "$29.00" in page
    assert "market_scanner #" in page
    assert "Fetched 240 candles" in page
    assert "ZeroDivisionError: boom" in page
    assert f"full #{pipeline.pk}" in page
    assert "Partly failed" in page
    # Open breakers first.
    assert [b.service for b in response.context["breakers"]] == ["telegram", "discord"]
    assert "ETH RSI at 27.4" in page
    assert 'href="/admin/kpis/"' in page


def test_lists_only_the_newest_twenty_agent_runs(staff_client: Client) -> None:
    runs = [AgentRunFactory.create(agent_name=f"agent_{i}") for i in range(25)]

    response = staff_client.get(URL)

    shown = [run.pk for run in response.context["agent_runs"]]
    assert shown == [run.pk for run in reversed(runs)][:20]


def test_the_live_list_comes_from_a_static_script_told_the_websocket_path(staff_client: Client) -> None:
    page = staff_client.get(URL).content.decode()

    assert 'data-ws-path="/ws/dashboard/"' in page
    assert 'data-live-list="agent_run"' in page
    assert 'data-live-list="pipeline_run"' in page
    assert 'data-agent-run-url="/admin/agents/agentrun/0/change/"' in page
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.DOTALL)
    assert scripts == [(' src="/static/js/live.js" defer', ""), (' src="/static/js/dashboard.js" defer', "")]
    assert " style=" not in page
    script = finders.find("js/dashboard.js")
    assert script is not None
    source = Path(script).read_text(encoding="utf-8")
    for needle in ("data-ws-path", '"agent_run"', '"pipeline_run"', "prepend", "CoinLinkLive.connect"):
        assert needle in source
    live = finders.find("js/live.js")
    assert live is not None
    assert "new WebSocket" in Path(live).read_text(encoding="utf-8")
    assert "innerHTML" not in source  # run text is only ever set as text
    assert "http" not in source.replace("https:", "").replace("location.protocol", "")


def test_queries_do_not_grow_with_rows(staff_client: Client, django_assert_max_num_queries: Any) -> None:
    _rows(2)
    staff_client.get(URL)  # warm per-process caches
    with CaptureQueriesContext(connection) as few:
        staff_client.get(URL)

    _rows(30)
    with django_assert_max_num_queries(12) as many:
        response = staff_client.get(URL)

    assert response.status_code == 200
    assert len(response.context["agent_runs"]) == 20
    assert len(many) == len(few)


def test_staff_see_the_dashboard_in_the_navigation(client: Client, operator: User) -> None:
    assert 'href="/dashboard/"' not in client.get("/").content.decode()
    client.force_login(UserFactory.create())
    assert 'href="/dashboard/"' not in client.get("/").content.decode()

    client.force_login(operator)
    assert 'href="/dashboard/"' in client.get("/").content.decode()
    page = client.get(URL).content.decode()
    assert '<a href="/dashboard/" aria-current="page">Dashboard</a>' in page


# --- the admin's KPI page -----------------------------------------------------------------------------------


def test_the_admin_index_links_the_kpi_page_and_the_dashboard(staff_client: Client) -> None:
    page = staff_client.get("/admin/").content.decode()

    assert '<a href="/admin/kpis/">KPIs</a>' in page
    assert '<a href="/dashboard/">Live dashboard</a>' in page


def test_the_admin_kpi_page_shows_the_kpis_over_the_chosen_period(staff_client: Client) -> None:
    price = PlanPriceFactory.create(amount_minor=4900)
    SubscriptionFactory.create(plan=price.plan, price=price)
    ConversionAttemptFactory.create(sent_at=timezone.now() - dt.timedelta(days=20))

    week = staff_client.get("/admin/kpis/", {"period": "7d"})
    month = staff_client.get("/admin/kpis/")
    nonsense = staff_client.get("/admin/kpis/", {"period": "soon"})

    assert week.status_code == month.status_code == nonsense.status_code == 200
    assert week.context["report"].period_days == 7
    assert month.context["report"].period_days == nonsense.context["report"].period_days == 30
    assert ("Offers sent", "0") in {(k.label, k.value) for k in week.context["kpis"]}
    assert ("Offers sent", "1") in {(k.label, k.value) for k in month.context["kpis"]}
    assert "$49.00" in week.content.decode()


def test_the_admin_kpi_page_is_for_operators_only(client: Client) -> None:
    assert client.get("/admin/kpis/")["Location"] == "/admin/login/?next=/admin/kpis/"
    client.force_login(UserFactory.create())
    assert client.get("/admin/kpis/")["Location"] == "/admin/login/?next=/admin/kpis/"


def test_degraded_runs_say_so_and_why(staff_client: Client) -> None:
    pipeline = PipelineRunFactory.create(
        status=PipelineRun.Status.DEGRADED, degraded_reason="market_scanner: errors.exchange=3"
    )
    AgentRunFactory.create(
        agent_name="market_scanner",
        pipeline_run=pipeline,
        status=AgentRunStatus.SUCCEEDED,
        summary="40 candles; failed: exchange",
        degraded_reason="errors.exchange=3",
    )

    page = staff_client.get(URL).content.decode()

    assert page.count('<span class="badge run-status run-status--degraded">Succeeded, degraded</span>') == 2
    assert "Degraded: market_scanner: errors.exchange=3" in page
    assert "Degraded: errors.exchange=3" in page
