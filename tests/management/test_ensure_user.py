"""`manage.py ensure_user`: the sign-in bin/run prints."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def signs_in(username: str, password: str) -> bool:
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    return user is not None and user.check_password(password)


def ensure_user(*args: str) -> dict[str, str]:
    out = io.StringIO()
    call_command("ensure_user", *args, stdout=out)
    return dict(line.split(": ", 1) for line in out.getvalue().splitlines())


@pytest.fixture
def var_dir(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings.VAR_DIR = tmp_path
    monkeypatch.delenv("SFNUI_DEMO_USER", raising=False)
    monkeypatch.delenv("SFNUI_DEMO_PASSWORD", raising=False)
    return tmp_path


def test_it_creates_a_demo_user_who_may_stop_executions(var_dir: Path) -> None:
    printed = ensure_user()
    assert printed["user"] == "demo"
    assert signs_in("demo", printed["password"])
    user = get_user_model().objects.get(username="demo")
    assert user.has_perm("executions.stop_execution")
    # Every action the demo shows: redrive, start and re-run, a Map Run's limits.
    assert user.has_perm("executions.redrive_execution")
    assert user.has_perm("executions.start_execution")
    assert user.has_perm("executions.update_map_run")
    assert not user.is_staff
    kept = var_dir / "demo-password"
    assert kept.read_text().strip() == printed["password"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_a_second_run_prints_the_same_sign_in(var_dir: Path) -> None:
    first = ensure_user()
    assert ensure_user() == first
    assert get_user_model().objects.filter(username="demo").count() == 1


def test_it_puts_back_the_kept_password_if_it_was_changed(var_dir: Path) -> None:
    first = ensure_user()
    user = get_user_model().objects.get(username="demo")
    user.set_password("something-else-42")
    user.save()
    assert ensure_user() == first
    assert signs_in("demo", first["password"])


def test_the_environment_names_the_user_and_its_password(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFNUI_DEMO_USER", "oncall")
    monkeypatch.setenv("SFNUI_DEMO_PASSWORD", "correct-horse-battery")
    assert ensure_user() == {"user": "oncall", "password": "correct-horse-battery"}
    assert signs_in("oncall", "correct-horse-battery")
    assert not (var_dir / "demo-password").exists()
    assert ensure_user("--username", "other")["user"] == "other"


@pytest.mark.skipif(not apps.is_installed("axes"), reason="no sign-in rate limit installed")
def test_it_lifts_a_lockout_of_the_demo_user(var_dir: Path, client: Any, settings: Any) -> None:
    printed = ensure_user()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": "demo", "password": "mistyped"})
    locked = client.post("/accounts/login/", {"username": "demo", "password": printed["password"]})
    assert "_auth_user_id" not in client.session, locked.status_code

    ensure_user()
    signed_in = client.post(
        "/accounts/login/", {"username": "demo", "password": printed["password"]}
    )
    assert signed_in.status_code == 302
    assert "_auth_user_id" in client.session
