from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from apps.core import views as core_views

urlpatterns = [
    path("", include("apps.portal.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/", include("coinlink.api_urls")),
    path("billing/", include("apps.billing.urls")),
    path("bots/", include("apps.bots.urls")),
    path("dashboard/", include("apps.dashboard.urls")),
    path("health/", core_views.health, name="health"),
    path("metrics", core_views.metrics, name="metrics"),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.STATIC_URL, document_root=settings.STATIC_ROOT)
