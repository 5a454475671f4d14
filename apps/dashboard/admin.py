"""The KPI page of the admin (``/admin/kpis/``), linked from the admin's index with the live dashboard.

The admin site has no model for it to hang from, so the default site learns one more URL and an index
template that lists the two reports above the apps."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

from apps.billing.kpis import DEFAULT_PERIOD_DAYS, kpi_report, parse_period
from apps.dashboard.views import kpi_cards

PERIOD_CHOICES = (7, 30, 90, 365)


def kpi_view(request: HttpRequest) -> HttpResponse:
    try:
        period_days = parse_period(request.GET.get("period", f"{DEFAULT_PERIOD_DAYS}d"))
    except ValueError:
        period_days = DEFAULT_PERIOD_DAYS
    report = kpi_report(period_days=period_days)
    context = {
        **admin.site.each_context(request),
        "title": "KPIs",
        "report": report,
        "kpis": kpi_cards(report),
        "periods": PERIOD_CHOICES,
    }
    return TemplateResponse(request, "admin/kpis.html", context)


_site_urls = admin.site.get_urls


def _urls_with_kpis() -> list[URLPattern | URLResolver]:
    # Ahead of the site's own patterns, whose catch-all would take "kpis/" for an app label.
    return [path("kpis/", admin.site.admin_view(kpi_view), name="kpis"), *_site_urls()]


admin.site.get_urls = _urls_with_kpis  # type: ignore[method-assign]
admin.site.index_template = "admin/coinlink_index.html"
