"""The benchmark's URLconf: every application URL, plus the baseline, a bare Django view that stores the
request body with one INSERT and answers 200 (what any webhook endpoint must at least do). It lives here, not
in the application."""

from __future__ import annotations

import time

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

BASELINE_TABLE = "bench_baseline_hits"


@csrf_exempt
@require_POST
def baseline_insert(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BASELINE_TABLE} (received_at, body) VALUES (%s, %s)",  # noqa: S608 - a constant
            [time.time(), request.body.decode()],
        )
    return JsonResponse({"received": True})


urlpatterns = [
    path("bench/baseline/", baseline_insert),
    path("", include("coinlink.urls")),
]
