from __future__ import annotations

from django.apps import AppConfig


class PreferencesConfig(AppConfig):
    name = "preferences"
    verbose_name = "Personal preferences"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from .themes import remember_on_sign_in

        user_logged_in.connect(remember_on_sign_in, dispatch_uid="preferences.theme")
