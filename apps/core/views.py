"""Views shared by the whole site: the health report for monitoring."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

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
