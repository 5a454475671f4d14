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
from apps.dashboard import selectors
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


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not (user.is_active and user.is_staff):
        raise PermissionDenied("The dashboard is for operators.")
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
