from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView

urlpatterns: list[URLPattern | URLResolver] = [
    path("", RedirectView.as_view(url="/executions/", permanent=False)),
    path("", include("executions.urls")),
    path("", include("alerts.urls")),
    path("", include("preferences.urls")),
    path("admin/", admin.site.urls),
    # Sign-in and out, and a local account's password change; no password
    # reset by email (this dashboard sends none): an administrator resets it.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
]

if settings.SFNUI_OIDC_ENABLED:
    # Single sign-on: only routed when configured (SFNUI_OIDC_ISSUER).
    from executions.web import oidc

    urlpatterns += [
        path("oidc/authenticate/", oidc.sign_in, name="oidc_authentication_init"),
        path("oidc/callback/", oidc.callback, name="oidc_authentication_callback"),
    ]

# The site's own error pages, safe with a request Django refused (errors.py).
handler400 = "executions.views.errors.bad_request"
handler403 = "executions.views.errors.permission_denied"
handler404 = "executions.views.errors.page_not_found"
handler500 = "executions.views.errors.server_error"
