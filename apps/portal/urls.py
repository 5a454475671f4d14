from __future__ import annotations

from django.conf import settings
from django.urls import path

from apps.portal import billing_views, member_views, moderation_views, offer_views, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("account/", views.account, name="account"),
    path("account/appeals/", moderation_views.appeal_create, name="appeal_create"),
    path("account/links/", member_views.links, name="links"),
    path("account/links/telegram/code/", member_views.links_telegram_code, name="links_telegram_code"),
    path("account/links/telegram/login/", member_views.links_telegram_login, name="links_telegram_login"),
    path("library/", member_views.library, name="library"),
    path("library/<slug:slug>/", member_views.library_item, name="library_item"),
    path("library/media/<int:pk>/", member_views.member_media, name="member_media"),
    path("plans/", billing_views.plans, name="plans"),
    path("plans/<slug:slug>/checkout/", billing_views.checkout_start, name="checkout_start"),
    path("billing/success/", billing_views.checkout_success, name="checkout_success"),
    path("billing/cancel/", billing_views.checkout_cancel, name="checkout_cancel"),
    path("account/billing-portal/", billing_views.billing_portal, name="billing_portal"),
    path("o/<uuid:token>/", offer_views.offer_click, name="offer_click"),
]

if not settings.PRODUCTION:
    # The local checkout twin stands in for Stripe in development; production does not even route to it.
    urlpatterns += [
        path(
            "billing/twin/checkout/<str:session_id>/",
            billing_views.billing_twin_checkout,
            name="billing_twin_checkout",
        ),
    ]
