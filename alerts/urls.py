from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/new/", views.rule_new, name="alert_rule_new"),
    path("alerts/audit/", views.alert_audit, name="alert_audit"),
    path("alerts/<int:pk>/", views.rule_detail, name="alert_rule"),
    path("alerts/<int:pk>/edit/", views.rule_edit, name="alert_rule_edit"),
    path("alerts/<int:pk>/delete/", views.rule_delete, name="alert_rule_delete"),
    path("alerts/<int:pk>/mute/", views.rule_mute, name="alert_rule_mute"),
]
