from __future__ import annotations

from django.urls import path

from apps.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("learning/", views.learning_page, name="learning"),
    path("learning/figures/", views.learning_fragment, name="learning-fragment"),
]
