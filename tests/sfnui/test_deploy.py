"""Production deployment: `check --deploy` is clean with production settings,
every answer carries the security headers (a CSP without inline scripts or
eval), cookies are secure behind HTTPS, sign-in is rate-limited, and no page
shows a secret, a credential or a stack trace."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from executions import aws
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "sfnui.example.com",
    "SFNUI_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "SFNUI_SSL_REDIRECT": "true",
    "SFNUI_HSTS_SECONDS": "31536000",
    "SFNUI_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SFNUI_HSTS_PRELOAD": "true",
}


def run(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "SFNUI_", "DATABASE_URL", "REDIS_URL"))
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "SFNUI_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(tmp_path: Path, *names: str, **env: str) -> dict[str, Any]:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}, default=str))"
    )
    done = run(tmp_path, ["-c", code], DJANGO_SETTINGS_MODULE="sfnui.settings", **env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- manage.py check --deploy ---------------------------------------------------------------


def test_check_deploy_reports_nothing_with_production_settings(tmp_path: Path) -> None:
    done = run(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout, done.stdout


def readme_production_settings() -> dict[str, str]:
    """The production settings as README.md's "Security" section lists them
    (its ```sh block of NAME=value lines), with a secret key filled in."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "README.md's Security section has no ```sh block of production settings"
    lines = (line.split(" #", 1)[0].strip() for line in block.group(1).splitlines())
    env = dict(line.split("=", 1) for line in lines if re.fullmatch(r"[A-Z_]+=\S+", line))
    assert env.get("DJANGO_DEBUG") == "false", env
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return env


def test_check_deploy_reports_nothing_with_the_readmes_settings(tmp_path: Path) -> None:
    """What the README tells people to set is what passes: no W005 (HSTS
    without subdomains) or W021 (no preload) left for them to puzzle over."""
    env = readme_production_settings()
    done = run(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], **env)
    output = done.stdout + done.stderr
    assert "security.W005" not in output, output
    assert "security.W021" not in output, output
    assert done.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in done.stdout, output


def test_check_deploy_stays_clean_with_single_sign_on(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        ["manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        **PRODUCTION,
        SFNUI_OIDC_ISSUER="https://login.example.com/realms/ops",
        SFNUI_OIDC_CLIENT_ID="sfnui",
        SFNUI_OIDC_CLIENT_SECRET=secrets.token_urlsafe(32),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout, done.stdout


def test_check_deploy_names_what_a_plain_http_install_lacks(tmp_path: Path) -> None:
    """Without the HTTPS settings the check speaks up (so the clean run above
    is the settings' doing, not a check that says nothing)."""
    env = {k: v for k, v in PRODUCTION.items() if k.startswith("DJANGO_")}
    done = run(tmp_path, ["manage.py", "check", "--deploy"], **env, SFNUI_SECURE_COOKIES="false")
    output = done.stdout + done.stderr
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in output, output


def test_production_refuses_single_sign_on_over_plain_http(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        ["manage.py", "check"],
        **PRODUCTION,
        SFNUI_OIDC_ISSUER="http://login.example.com/realms/ops",
        SFNUI_OIDC_CLIENT_ID="sfnui",
        SFNUI_OIDC_CLIENT_SECRET="x",
    )
    assert done.returncode != 0
    assert "SFNUI_OIDC_ISSUER must be an https:// URL" in done.stderr


def test_production_refuses_a_missing_or_development_key(tmp_path: Path) -> None:
    for key in ("", "django-insecure-sfnui-development-key-do-not-use-in-production"):
        done = run(
            tmp_path,
            ["manage.py", "check"],
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY=key,
            DJANGO_ALLOWED_HOSTS="sfnui.example.com",
        )
        assert done.returncode != 0
        assert "DJANGO_SECRET_KEY" in done.stderr


def test_the_dockerfiles_build_time_key_is_accepted_in_production(tmp_path: Path) -> None:
    """collectstatic runs in the image build with DEBUG off and a throwaway key:
    the key must pass the same rule as a real one, or the build fails."""
    found = re.search(r"DJANGO_SECRET_KEY=(\S+)", (ROOT / "Dockerfile").read_text())
    assert found, "the Dockerfile no longer sets a build-time DJANGO_SECRET_KEY"
    key = found.group(1)
    assert settings_of(tmp_path, "DEBUG", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=key) == {
        "DEBUG": False
    }


# --- What the settings become -----------------------------------------------------------------


def test_cookies_are_secure_unless_debug_or_told_otherwise(tmp_path: Path) -> None:
    names = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY")
    production = {k: PRODUCTION[k] for k in ("DJANGO_DEBUG", "DJANGO_SECRET_KEY")}
    assert settings_of(tmp_path, *names, **production) == dict.fromkeys(names, True)
    plain = settings_of(tmp_path, *names, **production, SFNUI_SECURE_COOKIES="false")
    assert plain == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SESSION_COOKIE_HTTPONLY": True,
    }
    development = settings_of(tmp_path, *names)
    assert development["SESSION_COOKIE_SECURE"] is False


def test_https_settings_come_from_the_environment(tmp_path: Path) -> None:
    names = (
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SFNUI_OIDC_ENABLED",
        "CSRF_TRUSTED_ORIGINS",
    )
    assert settings_of(
        tmp_path, *names, **PRODUCTION, SFNUI_BASE_URL="https://sfnui.example.com/x"
    ) == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SFNUI_OIDC_ENABLED": False,
        "CSRF_TRUSTED_ORIGINS": ["https://sfnui.example.com"],
    }
    defaults = settings_of(tmp_path, *names)
    assert defaults["SECURE_PROXY_SSL_HEADER"] is None
    assert defaults["SECURE_SSL_REDIRECT"] is False
    assert defaults["SECURE_HSTS_SECONDS"] == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SFNUI_HSTS_SECONDS", "a year"),
        ("SFNUI_SSL_REDIRECT", "sometimes"),
        ("SFNUI_LOGIN_FAILURE_LIMIT", "many"),
        ("SFNUI_OIDC_ISSUER", "https://login.example.com"),  # without client id and secret
    ],
)
def test_bad_security_settings_are_named(tmp_path: Path, name: str, value: str) -> None:
    done = run(tmp_path, ["manage.py", "check"], **{name: value})
    assert done.returncode != 0
    assert name in done.stderr or "SFNUI_OIDC_CLIENT_ID" in done.stderr


# --- Headers on every answer ------------------------------------------------------------------


def _csp(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


@pytest.fixture
def pages(fake_aws: Any) -> list[str]:
    sm = state_machine_row("order-pipeline")
    ex = execution_row(sm, name="etl-1", status="RUNNING")
    return [
        reverse("execution_list"),
        reverse("execution_detail", args=[ex.arn]),
        reverse("execution_history", args=[ex.arn]),
        reverse("execution_history_text", args=[ex.arn]),
        reverse("execution_history_json", args=[ex.arn]),
        reverse("execution_stop", args=[ex.arn]),
        reverse("state_machine_list"),
        reverse("sync_health"),
        reverse("audit_log"),
        reverse("api_execution_list"),
        reverse("healthz"),
        reverse("admin:index"),
        "/executions/not-an-arn/",  # an error page
        "/no/such/page/",
    ]


def test_every_answer_carries_the_security_headers(
    admin_client: Client, client: Client, pages: list[str]
) -> None:
    answers = [admin_client.get(p) for p in pages]
    answers += [client.get(reverse("login")), client.get(reverse("execution_list"))]
    for response in answers:
        where = f"{response.wsgi_request.path}: {response.status_code}"
        assert response["X-Frame-Options"] == "DENY", where
        assert response["X-Content-Type-Options"] == "nosniff", where
        assert response["Referrer-Policy"] == "same-origin", where
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", where
        csp = _csp(response)
        assert csp["default-src"] == ["'none'"], where
        assert csp["script-src"] == ["'self'"], where
        assert csp["style-src"] == ["'self'"], where
        assert csp["frame-ancestors"] == ["'none'"], where
        assert csp["base-uri"] == ["'none'"], where
        assert csp["object-src"] == ["'none'"], where
        assert csp["form-action"] == ["'self'"], where
        header = response["Content-Security-Policy"]
        assert "unsafe-inline" not in header, where
        assert "unsafe-eval" not in header, where


def test_no_page_has_an_inline_script_or_event_handler(
    admin_client: Client, client: Client, pages: list[str]
) -> None:
    """The CSP would block them; the pages must not need them."""
    import re

    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    handler = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
    style_attribute = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
    for response in [client.get(reverse("login"))] + [admin_client.get(p) for p in pages]:
        if response.streaming or not response["Content-Type"].startswith("text/html"):
            continue
        html = response.content.decode()
        where = response.wsgi_request.path
        if where.startswith("/admin/"):
            continue  # Django's admin, checked in Chromium (tests/e2e)
        assert not inline_script.search(html), where
        assert not handler.search(html), where
        assert not style_attribute.search(html), where
        assert 'name="htmx-config"' in html, where
        assert '"allowEval": false' in html, where
        assert '"includeIndicatorStyles": false' in html, where


def test_https_behind_a_proxy(settings: Any, user: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    client = Client()  # built after the settings: SecurityMiddleware reads them once
    client.force_login(user)
    plain = client.get(reverse("execution_list"))
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")
    proxied = client.get(reverse("execution_list"), headers={"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    # The load balancer's health check stays on plain HTTP.
    assert client.get(reverse("healthz")).status_code in (200, 503)


def test_session_and_csrf_cookies_are_secure_and_http_only(
    settings: Any, client: Client, user: Any
) -> None:
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    page = client.get(reverse("login"), secure=True)
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"]
    response = client.post(
        reverse("login"),
        {
            "username": "viewer",
            "password": "viewer-pass-123",
            "csrfmiddlewaretoken": csrf.value,
        },
        secure=True,
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"]
    assert session["httponly"]
    assert session["samesite"] == "Lax"


# --- Sign-in rate limit -----------------------------------------------------------------------


def _login(client: Client, username: str, password: str) -> Any:
    return client.post(reverse("login"), {"username": username, "password": password})


def test_sign_in_is_rate_limited_per_user_and_address(client: Client, user: Any) -> None:
    for _ in range(4):
        refused = _login(client, "viewer", "wrong")
        assert refused.status_code == 200
        assert "did not match" in refused.content.decode()
    # The fifth failure locks: even the right password is refused, and the
    # page says why and for how long.
    assert _login(client, "viewer", "wrong").status_code == 429
    locked = _login(client, "viewer", "viewer-pass-123")
    assert locked.status_code == 429
    html = locked.content.decode()
    assert "Too many failed sign-ins" in html
    assert "15 minutes" in html
    assert locked["Retry-After"] == "900"
    assert "_auth_user_id" not in client.session
    # Someone else at the same address is not locked out.
    other = Client()
    other_user = type(user).objects.create_user("pat", password="pat-pass-123")
    assert _login(other, "pat", "pat-pass-123").status_code == 302
    assert other.session["_auth_user_id"] == str(other_user.pk)
    # Nor is the same person from another address.
    elsewhere = Client(REMOTE_ADDR="10.9.8.7")
    assert _login(elsewhere, "viewer", "viewer-pass-123").status_code == 302
    # The API's Basic auth counts too, and says so in JSON.
    import base64

    basic = "Basic " + base64.b64encode(b"viewer:viewer-pass-123").decode()
    api = client.get(reverse("api_execution_list"), headers={"Authorization": basic})
    assert api.status_code == 429
    assert "Too many failed sign-ins" in api.json()["message"]
    # After the cool-off, the right password works again.
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=16)):
        assert _login(client, "viewer", "viewer-pass-123").status_code == 302


def test_a_success_resets_the_count(client: Client, user: Any) -> None:
    for _ in range(4):
        _login(client, "viewer", "wrong")
    assert _login(client, "viewer", "viewer-pass-123").status_code == 302
    client.logout()
    for _ in range(4):
        assert _login(client, "viewer", "wrong").status_code == 200
    assert _login(client, "viewer", "viewer-pass-123").status_code == 302


def test_behind_proxies_the_client_address_is_the_forwarded_one(settings: Any, user: Any) -> None:
    settings.SFNUI_PROXY_COUNT = 1
    attacker = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6")
    for _ in range(5):
        _login(attacker, "viewer", "wrong")
    assert _login(attacker, "viewer", "viewer-pass-123").status_code == 429
    # Writing another address on the left changes nothing: the proxy's is read.
    spoofed = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 6.6.6.6")
    assert _login(spoofed, "viewer", "viewer-pass-123").status_code == 429
    # The person, through the same proxy from their own address, signs in.
    person = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.10")
    assert _login(person, "viewer", "viewer-pass-123").status_code == 302


# --- Nothing secret in a page -----------------------------------------------------------------


def test_an_unexpected_error_is_a_plain_500_page(
    settings: Any, viewer_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.DEBUG is False
    secret = "postgres://sfnui:hunter2@db.internal/sfnui"

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"could not connect to {secret} with {settings.SECRET_KEY}")

    monkeypatch.setattr("executions.reads.queries.page", explode)
    viewer_client.raise_request_exception = False
    response = viewer_client.get(reverse("execution_list"))
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html
    for leak in (
        "hunter2",
        "Traceback",
        "RuntimeError",
        settings.SECRET_KEY,
        "queries.py",
        "style=",
    ):
        assert leak not in html, leak
    assert response["Content-Security-Policy"]


def test_aws_error_messages_never_show_credentials() -> None:
    error = aws.Unavailable(
        'AWS is unreachable: Could not connect to the endpoint URL: "https://ops:s3cr3t@'
        'proxy.internal:8443/" (key AKIAIOSFODNN7EXAMPLE)',
        "EndpointConnectionError",
    )
    assert "s3cr3t" not in error.message
    assert "AKIAIOSFODNN7EXAMPLE" not in error.message
    # Nor where the endpoint is (item 9 of issue 10): the log keeps that.
    assert "proxy.internal" not in error.message
    assert "endpoint URL: (not shown)" in error.message
    assert "AKIA" in error.message  # still says which kind of key


def test_an_unreachable_endpoint_with_credentials_is_shown_without_them(
    settings: Any, operator_client: Client
) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = "http://ops:s3cr3t@127.0.0.1:9"
    arn = "arn:aws:states:us-east-1:123456789012:execution:nightly:never-synced"
    page = operator_client.get(reverse("execution_detail", args=[arn]))
    assert page.status_code == 503
    assert "s3cr3t" not in page.content.decode()
    ex = execution_row(state_machine_row("nightly"), name="etl-9", status="RUNNING")
    operator_client.post(
        reverse("execution_stop", args=[ex.arn]),
        {"error": "E", "cause": "c", "request_token": "5b0b7f6e-7a30-4a8d-9d43-2a4b8c6d0e11"},
    )
    audit = operator_client.get(reverse("audit_log")).content.decode()
    assert "etl-9" in audit
    assert "s3cr3t" not in audit
