"""The REST API: version 1 under ``/api/v1/``, its OpenAPI schema and two renderings of it."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.accounts.api import MeView
from apps.billing.api import KpiView
from apps.content.api import ExclusiveContentViewSet, PublishedContentViewSet
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


router = ApiRouter(singletons={"me": "me", "kpis": "kpis"})
router.register("insights", InsightViewSet, basename="insight")
router.register("published-content", PublishedContentViewSet, basename="published-content")
router.register("exclusive", ExclusiveContentViewSet, basename="exclusive-content")

v1_urlpatterns: list[URLPattern | URLResolver] = [
    path("me/", MeView.as_view(), name="me"),
    path("kpis/", KpiView.as_view(), name="kpis"),
    *router.urls,
]

urlpatterns = [
    path("v1/", include(v1_urlpatterns)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]
