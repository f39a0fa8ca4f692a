from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("preferences/theme/", views.set_theme, name="set_theme"),
]
