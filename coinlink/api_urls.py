"""The REST API: version 1 under ``/api/v1/``, its OpenAPI schema and two renderings of it."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.routers import DefaultRouter
from rest_framework.views import APIView

from apps.accounts.api import MeView
from apps.billing.api import KpiView
from apps.content.api import ExclusiveContentViewSet, PublishedContentViewSet
from apps.core.api import ApiDocsPermission
from apps.experiments.api import ABTestViewSet
from apps.learning.api import StrategyChangeViewSet
from apps.market.api import InsightViewSet

app_name = "api"


class ApiRouter(DefaultRouter):
    """A router whose root also links the endpoints that are single resources rather than collections."""

    def __init__(self, *, singletons: dict[str, str], **kwargs: Any) -> None:
        self.singletons = singletons
        super().__init__(**kwargs)

    def get_api_root_view(self, api_urls: Any = None) -> Any:
        list_name = self.routes[0].name
        api_root_dict = {prefix: list_name.format(basename=basename) for prefix, _, basename in self.registry}
        api_root_dict.update(self.singletons)
        return self.APIRootView.as_view(api_root_dict=api_root_dict)


class ApiNotFoundView(APIView):
    """Whatever under /api/ matches no route: a 404 in the API's JSON error format, not Django's HTML page, so
    that a client (or a path parameter the routes cannot match, such as an id with a dot) always gets JSON."""

    permission_classes = [AllowAny]
    schema = None  # not an operation of the API

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and throttles as for any API request
        raise NotFound()


router = ApiRouter(singletons={"me": "me", "kpis": "kpis"})
router.register("insights", InsightViewSet, basename="insight")
router.register("published-content", PublishedContentViewSet, basename="published-content")
router.register("exclusive", ExclusiveContentViewSet, basename="exclusive-content")
router.register("experiments", ABTestViewSet, basename="experiment")
router.register("strategy-changes", StrategyChangeViewSet, basename="strategy-change")

v1_urlpatterns: list[URLPattern | URLResolver] = [
    path("me/", MeView.as_view(), name="me"),
    path("kpis/", KpiView.as_view(), name="kpis"),
    *router.urls,
]

urlpatterns = [
    path("v1/", include(v1_urlpatterns)),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[ApiDocsPermission]), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[ApiDocsPermission]),
        name="docs",
    ),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="api:schema", permission_classes=[ApiDocsPermission]),
        name="redoc",
    ),
    # Only paths ending in a slash, so that APPEND_SLASH still redirects /api/v1/me to /api/v1/me/.
    re_path(r"^.*/$", ApiNotFoundView.as_view()),
]
