"""The operator's live dashboard: KPIs, agent and pipeline runs, circuit breakers and the latest insights,
with runs streamed in over ``/ws/dashboard/``. Views gather what the selectors return and render it."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from apps.billing.kpis import KpiReport, kpi_report
from apps.core.models import format_money
from apps.dashboard import charts, learning, selectors
from apps.dashboard.routing import websocket_urlpatterns

WS_PATH = "/" + next(str(p.pattern) for p in websocket_urlpatterns if p.name == "ws-dashboard")


@dataclass(frozen=True)
class KpiCard:
    label: str
    value: str
    note: str = ""


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def kpi_cards(report: KpiReport) -> list[KpiCard]:
    """The KPIs as people read them: money formatted, rates as percentages, each with what it counts."""
    days = f"last {report.period_days} days"
    mrr = [
        KpiCard(
            f"MRR ({currency.upper()})", format_money(amount, currency), "active and in-grace subscriptions"
        )
        for currency, amount in report.mrr_minor.items()
    ] or [KpiCard("MRR", "none", "no paying subscriptions")]
    churn, funnel = report.churn, report.funnel
    return [
        *mrr,
        KpiCard("Active members", f"{report.active_members:,}", "people with a paying subscription"),
        KpiCard("Trials", f"{report.trials:,}", "people trialing"),
        KpiCard(
            "Churn",
            f"{churn.rate:.1%}" if churn.rate is not None else "n/a",
            f"{churn.ended} of {churn.subscriptions_at_start} paying subscriptions ended, {days}",
        ),
        KpiCard("Offers sent", f"{funnel.offers_sent:,}", days),
        KpiCard(
            "Offers clicked", f"{funnel.clicked:,}", f"{_percent(funnel.clicked, funnel.offers_sent)} of sent"
        ),
        KpiCard(
            "Offers converted",
            f"{funnel.converted:,}",
            f"{_percent(funnel.converted, funnel.offers_sent)} of sent",
        ),
    ]


def _refuse_non_operators(request: HttpRequest) -> HttpResponse | None:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not (user.is_active and user.is_staff):
        raise PermissionDenied("The dashboard is for operators.")
    return None


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    if (refused := _refuse_non_operators(request)) is not None:
        return refused
    report = kpi_report()
    context = {
        "report": report,
        "kpis": kpi_cards(report),
        "agent_runs": selectors.agent_run_list_recent(),
        "pipeline_runs": selectors.pipeline_run_list_recent(),
        "breakers": selectors.circuit_breaker_list(),
        "insights": selectors.insight_list_latest(),
        "drafts_waiting": selectors.draft_waiting_count(),
        "drafts_waiting_url": reverse("admin:content_contentdraft_changelist")
        + "?status__exact=pending_review",
        "ws_path": WS_PATH,
        "max_agent_runs": selectors.RECENT_AGENT_RUNS,
        "max_pipeline_runs": selectors.RECENT_PIPELINE_RUNS,
    }
    return render(request, "dashboard/index.html", context)


# The phase 4 agents: when one of them finishes, the learning page fetches its figures again.
LEARNING_AGENTS = ("ab_testing", "strategy_tuning", "performance_analytics", "feedback_loop")


def _learning_context() -> dict[str, object]:
    tests = learning.ab_test_views()
    for view in tests:
        view.exposure_chart = charts.line_chart(
            view.exposures, label=f"Cumulative exposures of {view.test.name} by variant", y_min=0
        )
        view.effect_charts = [
            (metric, charts.interval_chart(rows, label=f"Effect on {metric} with its interval"))
            for metric, rows in view.intervals.items()
        ]
    bandit = [
        (
            platform,
            charts.line_chart(
                series,
                label=f"Bandit weights of the leading {platform} arms",
                value_format=charts.share,
                y_min=0,
            ),
        )
        for platform, series in learning.bandit_series().items()
    ]
    return {
        "tests": tests,
        "bandit": bandit,
        "changes": learning.strategy_change_list_recent(),
        "control": learning.learning_control(),
        "alerts": learning.alert_list_recent(),
        "performance": learning.agent_performance_latest(),
    }


@require_safe
def learning_page(request: HttpRequest) -> HttpResponse:
    """Self-learning: experiments with their effects and exposure, the bandit's weights, the strategy
    changes, the agents' performance and alerts; refreshed live when a phase 4 agent finishes."""
    if (refused := _refuse_non_operators(request)) is not None:
        return refused
    context = {
        **_learning_context(),
        "ws_path": WS_PATH,
        "learning_agents": " ".join(LEARNING_AGENTS),
        "fragment_url": reverse("dashboard:learning-fragment"),
    }
    return render(request, "dashboard/learning.html", context)


@require_safe
def learning_fragment(request: HttpRequest) -> HttpResponse:
    """The learning page's figures alone, which its script swaps in when they change."""
    if (refused := _refuse_non_operators(request)) is not None:
        return refused
    return render(request, "dashboard/_learning_figures.html", _learning_context())
