"""`python manage.py ensure_user`: the sign-in that bin/run prints."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions.actions import grants

# Where a generated password is kept, so that the next run prints the same one.
PASSWORD_FILE = "demo-password"  # noqa: S105 (a file name)


class Command(BaseCommand):
    help = (
        "Make sure a sign-in exists that may view, stop, redrive and start executions, "
        "change Map Runs and write alert rules, and print its user "
        "name and password. The name comes from SFNUI_DEMO_USER (default: demo), the password "
        "from SFNUI_DEMO_PASSWORD, or is generated once and kept in the var directory."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username", default=os.environ.get("SFNUI_DEMO_USER") or "demo", help="user name"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        password = os.environ.get("SFNUI_DEMO_PASSWORD") or self._kept_password()
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created or not user.check_password(password):
            user.set_password(password)
        user.is_active = True
        user.save()
        # Every action of the dashboard: stop, redrive, start and re-run,
        # change a running Map Run (so the demo shows each of them).
        codenames = [p.split(".", 1)[1] for p in grants.ACTIONS]
        permissions = list(
            Permission.objects.filter(content_type__app_label="executions", codename__in=codenames)
        )
        missing = sorted(set(codenames) - {p.codename for p in permissions})
        if missing:
            raise CommandError(f"no permission executions.{missing[0]}: run migrate first")
        if apps.is_installed("alerts"):
            # And writing alert rules (/alerts/).
            permissions += list(
                Permission.objects.filter(
                    content_type__app_label="alerts", codename="change_alertrule"
                )
            )
        user.user_permissions.add(*permissions)
        if apps.is_installed("axes"):
            # The printed sign-in must work even after a few mistyped tries.
            from axes.utils import reset

            reset(username=username)
        self.stdout.write(f"user: {username}")
        self.stdout.write(f"password: {password}")

    def _kept_password(self) -> str:
        path = Path(settings.VAR_DIR) / PASSWORD_FILE
        if path.exists():
            kept = path.read_text().strip()
            if kept:
                return kept
        password = secrets.token_urlsafe(12)
        # Readable by this user only: it signs in someone who can stop executions.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return password
