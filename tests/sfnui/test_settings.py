"""sfnui/settings.py: runs out of the box, refuses the development key in production."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "sfnui.settings",
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "SFNUI_", "DATABASE_URL", "REDIS_URL"))
        },
    }


def settings_of(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'debug': s.DEBUG, 'db': s.DATABASES['default']['ENGINE'], "
        "'db_name': str(s.DATABASES['default']['NAME']), 'broker': s.CELERY_BROKER_URL, "
        "'cache': s.CACHES['default']['BACKEND'], 'regions': s.SFNUI_REGIONS, "
        "'endpoint': s.SFNUI_AWS_ENDPOINT_URL, 'hosts': s.ALLOWED_HOSTS}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **clean_env(),
            "SFNUI_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_defaults_need_nothing_installed(tmp_path: Path) -> None:
    import json

    done = settings_of(tmp_path, AWS_DEFAULT_REGION="")
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["db"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(tmp_path / "sfnui.sqlite3")
    assert values["broker"] == "filesystem://"
    assert values["cache"] == "django.core.cache.backends.db.DatabaseCache"
    assert values["regions"] == ["us-east-1"]
    assert values["endpoint"] is None
    assert (tmp_path / "broker" / "queue").is_dir()


def test_urls_switch_to_postgresql_and_redis(tmp_path: Path) -> None:
    import json

    done = settings_of(
        tmp_path,
        DATABASE_URL="postgres://sfnui:pw@db.internal:5432/sfnui",
        REDIS_URL="redis://cache.internal:6379/0",
        SFNUI_REGIONS="eu-west-1, us-east-1",
        SFNUI_AWS_ENDPOINT_URL="http://127.0.0.1:5000",
    )
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["db"] == "django.db.backends.postgresql"
    assert values["broker"] == "redis://cache.internal:6379/0"
    assert values["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert values["regions"] == ["eu-west-1", "us-east-1"]
    assert values["endpoint"] == "http://127.0.0.1:5000"


def test_production_refuses_the_development_secret_key(tmp_path: Path) -> None:
    done = settings_of(tmp_path, DJANGO_DEBUG="false")
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr


def test_production_starts_with_its_own_key(tmp_path: Path) -> None:
    import json

    done = settings_of(
        tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="sfnui.example.com",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hosts"] == ["sfnui.example.com"]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("abcde", "has 5 characters"),
        (secrets.token_urlsafe(50)[:49], "has 49 characters"),
        ("x" * 60, "has 1 different character"),
        ("abcd" * 20, "has 4 different characters"),
        ("django-insecure-" + secrets.token_urlsafe(50), "starts with django-insecure-"),
    ],
    ids=["5 long", "49 long", "1 different", "4 different", "development prefix"],
)
def test_production_refuses_a_weak_secret_key(tmp_path: Path, key: str, why: str) -> None:
    """Django's own rule (check --deploy's W009): at least 50 characters, at
    least 5 of them different, not Django's generated development key;
    refused at start, not only warned about."""
    done = settings_of(
        tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=key,
        DJANGO_ALLOWED_HOSTS="sfnui.example.com",
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert f"DJANGO_SECRET_KEY {why}" in done.stderr, done.stderr
    assert "at least 50 characters" in done.stderr
    assert key not in done.stderr  # a real key, even a weak one, stays out of the logs


def test_development_takes_any_key(tmp_path: Path) -> None:
    done = settings_of(tmp_path, DJANGO_DEBUG="true", DJANGO_SECRET_KEY="abcde")
    assert done.returncode == 0, done.stderr


def test_postgresql_connections_give_up_after_a_connect_timeout(tmp_path: Path) -> None:
    """libpq waits for ever for a server that does not answer; a page must not."""
    import json

    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.DATABASES['default'].get('OPTIONS', {}).get('connect_timeout'), "
        "s.SFNUI_DB_STATEMENT_TIMEOUT]))"
    )
    url = "postgres://sfnui:pw@db.internal:5432/sfnui"

    def options(**env: str) -> list[Any]:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**clean_env(), "SFNUI_VAR_DIR": str(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        result: list[Any] = json.loads(done.stdout)
        return result

    assert options(DATABASE_URL=url) == [5, 10.0]
    assert options(
        DATABASE_URL=url, SFNUI_DB_CONNECT_TIMEOUT="3", SFNUI_DB_STATEMENT_TIMEOUT="2.5"
    ) == [3, 2.5]
    assert options(DATABASE_URL=url + "?connect_timeout=2")[0] == 2
    assert options()[0] is None  # SQLite has no such option


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SFNUI_DB_STATEMENT_TIMEOUT", "soon"),
        ("SFNUI_DB_CONNECT_TIMEOUT", "5s"),
        ("DJANGO_DEBUG", "maybe"),
        ("SFNUI_AWS_READ_TIMEOUT", "soon"),
        ("SFNUI_API_SHARE", "2"),
        ("SFNUI_API_QUOTAS", "ListExecutions"),
        ("SFNUI_PREVIEW_LIMIT", "0"),
        ("SFNUI_LOOKUP_LIMIT", "-3"),
        ("SFNUI_LOOKUP_LIMIT", "many"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, name: str, value: str) -> None:
    done = settings_of(tmp_path, **{name: value})
    assert done.returncode != 0
    assert name in done.stderr
