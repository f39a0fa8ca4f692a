"""Single sign-on (OpenID Connect) against a fake provider on loopback
(tests/support/oidc_provider.py): off by default, configured by settings alone,
creates the user, maps a group claim to the stop permission, leaves local
sign-in working, and turns every failure into a sentence, never a 500."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import clear_url_caches, reverse

from executions.web import oidc
from tests.support.factories import execution_row
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeProvider

pytestmark = pytest.mark.django_db

BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]


def _reload_urls() -> None:
    import sfnui.urls

    importlib.reload(sfnui.urls)
    clear_url_caches()


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def sso(settings: Any, provider: FakeProvider) -> Iterator[FakeProvider]:
    """The app configured as SFNUI_OIDC_* would (discovery for the endpoints)."""
    settings.SFNUI_OIDC_ENABLED = True
    settings.SFNUI_OIDC_ISSUER = provider.issuer
    settings.SFNUI_OIDC_STOP_GROUPS = ["oncall", "sre"]
    settings.SFNUI_OIDC_USERNAME_CLAIM = "preferred_username"
    settings.SFNUI_OIDC_GROUPS_CLAIM = "groups"
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    for name in oidc.DISCOVERED:
        setattr(settings, name, "")
    settings.OIDC_USE_PKCE = True
    settings.OIDC_TIMEOUT = 5.0
    settings.OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
    settings.AUTHENTICATION_BACKENDS = [*BACKENDS, "executions.web.oidc.SingleSignOnBackend"]
    provider.next_claims = {}
    provider.id_token_overrides = {}
    provider.sign_with_rogue_key = provider.deny = False
    provider.token_error = None
    oidc.forget_discovery()
    _reload_urls()
    yield provider
    settings.SFNUI_OIDC_ENABLED = False
    _reload_urls()
    oidc.forget_discovery()


def person(sub: str = "u-1", username: str = "alice", groups: Any = ("oncall",)) -> dict[str, Any]:
    return {
        "sub": sub,
        "preferred_username": username,
        "email": f"{username}@example.com",
        "groups": list(groups) if isinstance(groups, tuple | list) else groups,
    }


def sign_in(client: Client, provider: FakeProvider, claims: dict[str, Any], next: str = "") -> Any:
    """The browser's round trip: sfnui -> provider -> sfnui's callback."""
    provider.next_claims = claims
    start = client.get(reverse("oidc_authentication_init") + (f"?next={next}" if next else ""))
    assert start.status_code == 302, start.content
    authorize = start["Location"]
    assert authorize.startswith(provider.issuer + "/authorize?")
    at_provider = requests.get(authorize, allow_redirects=False, timeout=5)
    assert at_provider.status_code == 302
    back = urlsplit(at_provider.headers["Location"])
    assert back.path == reverse("oidc_authentication_callback")
    return client.get(f"{back.path}?{back.query}")


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def can_stop(username: str) -> bool:
    return bool(
        get_user_model().objects.get(username=username).has_perm("executions.stop_execution")
    )


# --- Off by default ----------------------------------------------------------------------------


def test_it_is_off_by_default(client: Client, settings: Any) -> None:
    assert settings.SFNUI_OIDC_ENABLED is False
    assert "executions.web.oidc.SingleSignOnBackend" not in settings.AUTHENTICATION_BACKENDS
    for path in ("/oidc/authenticate/", "/oidc/callback/?code=x&state=y"):
        assert client.get(path).status_code in (302, 404)  # signed out: to the login
    client.force_login(get_user_model().objects.create_user("viewer", password="viewer-pass-1"))
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    login = Client().get(reverse("login")).content.decode()
    assert "single sign-on" not in login


# --- Signing in --------------------------------------------------------------------------------


def test_signing_in_creates_the_user_with_the_stop_permission_of_their_group(
    client: Client, sso: FakeProvider
) -> None:
    login = client.get(reverse("login"))
    assert "Sign in with single sign-on" in login.content.decode()

    done = sign_in(client, sso, person(groups=("sre", "developers")), next="/audit/")

    assert done.status_code == 302
    assert done["Location"] == "/audit/"
    alice = get_user_model().objects.get(username="alice")
    assert client.session["_auth_user_id"] == str(alice.pk)
    assert alice.email == "alice@example.com"
    assert not alice.has_usable_password()
    assert can_stop("alice")
    assert client.get("/audit/").status_code == 200
    # The stop page opens for them.
    ex = execution_row(status="RUNNING")
    assert client.get(reverse("execution_stop", args=[ex.arn])).status_code == 200
    # What the provider saw: discovery, the JWKS, the token and userinfo calls.
    assert {"GET /realms/ops/.well-known/openid-configuration", "POST /realms/ops/token"} <= set(
        sso.requests
    )


def test_no_stop_group_no_stop_permission(client: Client, sso: FakeProvider) -> None:
    sign_in(client, sso, person(username="bob", groups=("developers",)))
    assert get_user_model().objects.filter(username="bob").exists()
    assert not can_stop("bob")
    ex = execution_row(status="RUNNING")
    assert client.get(reverse("execution_stop", args=[ex.arn])).status_code == 403


def test_the_group_claim_is_read_at_every_sign_in(sso: FakeProvider) -> None:
    sign_in(Client(), sso, person(username="carol", groups=("oncall",)))
    assert can_stop("carol")
    # Left the on-call group: the next sign-in takes the permission away.
    sign_in(Client(), sso, person(username="carol", groups=()))
    assert not can_stop("carol")
    # A provider that sends groups as one string.
    sign_in(Client(), sso, person(username="carol", groups="developers, sre"))
    assert can_stop("carol")


def test_without_stop_groups_the_permission_is_left_to_the_admin(
    sso: FakeProvider, settings: Any
) -> None:
    settings.SFNUI_OIDC_STOP_GROUPS = []
    sign_in(Client(), sso, person(username="dave", groups=("oncall",)))
    assert not can_stop("dave")


def test_local_sign_in_still_works(client: Client, sso: FakeProvider) -> None:
    get_user_model().objects.create_user("local", password="local-pass-123")
    response = client.post(reverse("login"), {"username": "local", "password": "local-pass-123"})
    assert response.status_code == 302
    assert client.session["_auth_user_id"]
    # And does not need the provider: it is never asked.
    assert "POST /realms/ops/token" not in sso.requests[-1:]


def test_a_local_account_is_never_taken_over(client: Client, sso: FakeProvider) -> None:
    admin = get_user_model().objects.create_superuser("admin", password="admin-pass-123")
    done = sign_in(client, sso, person(sub="attacker", username="admin", groups=("sre",)))
    assert done.status_code == 302
    assert done["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session
    assert "Single sign-on failed" in messages_of(done)[0]
    admin.refresh_from_db()
    assert admin.check_password("admin-pass-123")


# --- Failures: a sentence, never a 500 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("break_it", "why"),
    [
        (lambda p: setattr(p, "deny", True), "did not sign you in"),
        (lambda p: setattr(p, "sign_with_rogue_key", True), "could not be verified"),
        (lambda p: p.id_token_overrides.update(aud="another-client"), "could not be verified"),
        (
            lambda p: p.id_token_overrides.update(iss="https://evil.example"),
            "could not be verified",
        ),
        (lambda p: p.id_token_overrides.update(exp=1), "could not be verified"),
        (lambda p: p.id_token_overrides.update(nonce="replayed"), "could not be verified"),
        (lambda p: setattr(p, "token_error", 500), "could not be reached"),
    ],
    ids=["denied", "wrong-key", "wrong-audience", "wrong-issuer", "expired", "nonce", "token-500"],
)
def test_a_failed_sign_in_says_so_and_signs_nobody_in(
    client: Client, sso: FakeProvider, break_it: Any, why: str
) -> None:
    break_it(sso)
    done = sign_in(client, sso, person(username="eve"))
    assert done.status_code == 302
    assert done["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session
    (message,) = messages_of(done)
    assert why in message
    assert not get_user_model().objects.filter(username="eve").exists()


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "u-9", "email": "x@example.com"},  # no user name claim
        {"sub": "u-9", "preferred_username": "<script>alert(1)</script>"},
        {"sub": "u-9", "preferred_username": "x" * 151},
    ],
    ids=["missing", "hostile", "too-long"],
)
def test_an_unusable_user_name_signs_nobody_in(
    client: Client, sso: FakeProvider, claims: dict[str, Any]
) -> None:
    done = sign_in(client, sso, claims)
    assert done["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session
    assert get_user_model().objects.count() == 0


def test_a_replayed_or_forged_callback_is_refused(client: Client, sso: FakeProvider) -> None:
    sso.next_claims = person(username="frank")
    start = client.get(reverse("oidc_authentication_init"))
    at_provider = requests.get(start["Location"], allow_redirects=False, timeout=5)
    callback = urlsplit(at_provider.headers["Location"])
    url = f"{callback.path}?{callback.query}"
    # Another browser (no state in its session) cannot use the code.
    thief = Client()
    stolen = thief.get(url)
    assert stolen.status_code == 302
    assert "_auth_user_id" not in thief.session
    assert client.get(url).status_code == 302
    assert client.session["_auth_user_id"]
    client.logout()
    # The same callback again: state used up.
    again = client.get(url)
    assert again.status_code == 302
    assert again["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session
    # Made-up state and code.
    forged = Client().get(reverse("oidc_authentication_callback") + "?code=x&state=y")
    assert forged.status_code == 302


def test_a_provider_that_is_down_is_a_503_page_not_a_500(
    client: Client, sso: FakeProvider, settings: Any
) -> None:
    settings.SFNUI_OIDC_ISSUER = "http://127.0.0.1:9/realms/ops"
    oidc.forget_discovery()
    response = client.get(reverse("oidc_authentication_init"))
    assert response.status_code == 503
    assert "Single sign-on is unavailable" in response.content.decode()
    # Local sign-in is unaffected.
    get_user_model().objects.create_user("local", password="local-pass-123")
    assert (
        client.post(
            reverse("login"), {"username": "local", "password": "local-pass-123"}
        ).status_code
        == 302
    )


def test_discovery_must_name_the_issuer(client: Client, sso: FakeProvider, settings: Any) -> None:
    # A document served for another issuer (a misconfigured or hostile proxy).
    settings.SFNUI_OIDC_ISSUER = sso.issuer + "-other"
    oidc.forget_discovery()
    response = client.get(reverse("oidc_authentication_init"))
    assert response.status_code == 503
    assert "Single sign-on is unavailable" in response.content.decode()


def test_no_callback_or_sign_in_request_is_a_server_error(sso: FakeProvider) -> None:
    """Fuzzed query strings on both single sign-on URLs (tests/web/test_fuzz.py
    covers the URL map, where these are absent by default)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    keys = st.sampled_from(["code", "state", "error", "error_description", "next", "x"])
    value = st.one_of(
        st.text(max_size=40),
        st.sampled_from(["", "\x00", "//evil.example/", "javascript:alert(1)", "x" * 5000]),
    )

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        st.sampled_from(["oidc_authentication_init", "oidc_authentication_callback"]),
        st.lists(st.tuples(keys, value), max_size=4),
        st.sampled_from(["GET", "POST", "HEAD"]),
    )
    def run(name: str, query: list[tuple[str, str]], method: str) -> None:
        from urllib.parse import urlencode

        client = Client(raise_request_exception=True)
        response = client.generic(method, reverse(name) + "?" + urlencode(query))
        assert response.status_code < 500, (name, query)
        if response.status_code == 302:
            location = response["Location"]
            assert location.startswith((sso.issuer, "/")), location
            assert not location.startswith("//"), location
        assert "_auth_user_id" not in client.session

    run()
