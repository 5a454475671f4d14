"""Views shared by the whole site: the health report and the Prometheus metrics for monitoring."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from apps.core import metrics as metrics_export
from apps.core.health import overall_status, run_checks


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """Open to monitors without login; it reveals only which dependency is down, never where it lives.

    503 only without the database, because then no page can work; with the database up the site still
    serves requests, so a load balancer should keep routing to it and the body says ``degraded``.
    """
    results = run_checks()
    status = overall_status(results)
    return JsonResponse(
        {"status": status, "checks": {name: result.as_dict() for name, result in results.items()}},
        status=503 if status == "failing" else 200,
    )


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of every process's counters and the shared state (``apps.core.metrics``), for a
    scraper with ``METRICS_TOKEN`` or from ``METRICS_ALLOWED_IPS``; 403 for anyone else."""
    if not metrics_export.scrape_allowed(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        authorization=request.headers.get("Authorization", ""),
        token=settings.METRICS_TOKEN,
        allowed=settings.METRICS_ALLOWED_IPS,
    ):
        return HttpResponse(
            "metrics need a token or an allowed address\n", status=403, content_type="text/plain"
        )
    body, content_type = metrics_export.exposition()
    return HttpResponse(body, content_type=content_type)
