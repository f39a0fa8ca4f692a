"""Single sign-on with OpenID Connect (mozilla-django-oidc), routed only when
SFNUI_OIDC_ISSUER is set (see sfnui/urls.py and settings).

What this adds to the library:

- endpoints not given in the environment come from the issuer's discovery
  document, fetched on first use (never at start-up, and never for a local
  password sign-in, so a provider that is down cannot stop anyone signing in
  locally);
- the ID token must come from the configured issuer and be meant for this
  client (`iss`, `aud`), besides the library's signature and nonce checks;
- a person is the user named by SFNUI_OIDC_USERNAME_CLAIM; a local account
  with a password is never taken over by a sign-on of the same name;
- membership of SFNUI_OIDC_STOP_GROUPS grants the permission to stop
  executions, and its absence removes it, at every sign-in;
- every failure (provider down, denied, stale link, bad token) is a sentence
  on the sign-in page, never a 500.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_GET
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from executions.actions import stop
from executions.web.errors import PageError

log = logging.getLogger(__name__)

# Settings the discovery document fills in when the environment does not.
DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
DISCOVERY_TTL = 3600.0


class ProviderUnavailable(Exception):
    """The identity provider did not answer, or not with what OIDC requires."""


_discovery: dict[str, tuple[float, dict[str, Any]]] = {}
_discovery_lock = threading.Lock()


def discovery() -> dict[str, Any]:
    """The issuer's /.well-known/openid-configuration, kept for an hour."""
    issuer: str = settings.SFNUI_OIDC_ISSUER
    now = time.monotonic()
    with _discovery_lock:
        cached = _discovery.get(issuer)
        if cached and now - cached[0] < DISCOVERY_TTL:
            return cached[1]
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"could not read {url} ({type(exc).__name__})") from exc
    if not isinstance(document, dict) or document.get("issuer", "").rstrip("/") != issuer:
        # OpenID Connect Discovery 1.0, section 4.3: the document must name
        # the issuer it was fetched for.
        raise ProviderUnavailable(f"{url} does not describe the issuer {issuer}")
    with _discovery_lock:
        _discovery[issuer] = (now, document)
    return document


def forget_discovery() -> None:
    with _discovery_lock:
        _discovery.clear()


def oidc_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, with endpoints from discovery."""
    if attr in DISCOVERED and not getattr(settings, attr, ""):
        value = discovery().get(DISCOVERED[attr])
        if not value:
            raise ProviderUnavailable(f"the discovery document has no {DISCOVERED[attr]}")
        return value
    return import_from_settings(attr, *default)


def _groups(claims: dict[str, Any]) -> set[str]:
    value = claims.get(settings.SFNUI_OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return {g.strip() for g in value.replace(",", " ").split() if g.strip()}
    if isinstance(value, list | tuple):
        return {str(g).strip() for g in value if str(g).strip()}
    return set()


class SingleSignOnBackend(OIDCAuthenticationBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads every endpoint here; Django builds each backend
        # for every sign-in, the local ones too: resolve them lazily instead.
        self.UserModel = get_user_model()

    get_settings = staticmethod(oidc_setting)

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:
        return str(oidc_setting("OIDC_OP_TOKEN_ENDPOINT"))

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:
        return str(oidc_setting("OIDC_OP_USER_ENDPOINT"))

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:
        return str(oidc_setting("OIDC_OP_JWKS_ENDPOINT"))

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:
        return str(settings.OIDC_RP_CLIENT_ID)

    @property
    def OIDC_RP_CLIENT_SECRET(self) -> str:
        return str(settings.OIDC_RP_CLIENT_SECRET)

    @property
    def OIDC_RP_SIGN_ALGO(self) -> str:
        return str(settings.OIDC_RP_SIGN_ALGO)

    @property
    def OIDC_RP_IDP_SIGN_KEY(self) -> None:
        return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = super().verify_token(token, **kwargs)
        except jwt.PyJWTError as exc:  # expired, not yet valid, malformed ...
            raise SuspiciousOperation(f"ID token rejected: {exc}") from exc
        if "nonce" in kwargs:  # the ID token (not a signed userinfo answer)
            issuer = str(payload.get("iss", "")).rstrip("/")
            if issuer != settings.SFNUI_OIDC_ISSUER:
                raise SuspiciousOperation(f"ID token from another issuer: {issuer!r}")
            audience = payload.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if settings.OIDC_RP_CLIENT_ID not in audiences:
                raise SuspiciousOperation("ID token meant for another client")
            if "exp" not in payload or not payload.get("sub"):
                raise SuspiciousOperation("ID token without exp or sub")
        return payload

    def get_userinfo(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        info: dict[str, Any] = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") is not None and info.get("sub") != payload.get("sub"):
            # OpenID Connect Core 1.0, 5.3.2: userinfo is about the token's subject.
            raise SuspiciousOperation("userinfo is about another subject than the ID token")
        # Groups are often only in the ID token (Entra ID, Okta): use both.
        return {**payload, **info}

    def _username(self, claims: dict[str, Any]) -> str:
        return str(claims.get(settings.SFNUI_OIDC_USERNAME_CLAIM) or "").strip()

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        username = self._username(claims)
        if not username or len(username) > 150:
            log.warning("single sign-on: no usable %s claim", settings.SFNUI_OIDC_USERNAME_CLAIM)
            return False
        try:
            UnicodeUsernameValidator()(username)
        except ValidationError:
            log.warning("single sign-on: %r is not a valid user name", username)
            return False
        return True

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return self.UserModel.objects.filter(username=self._username(claims))

    def get_username(self, claims: dict[str, Any]) -> str:
        return self._username(claims)

    def create_user(self, claims: dict[str, Any]) -> AbstractBaseUser:
        user = self.UserModel.objects.create_user(
            self._username(claims), email=str(claims.get("email") or "")
        )
        user.set_unusable_password()
        user.save(update_fields=["password"])
        log.info("single sign-on: created user %s", user.get_username())
        self._grant(user, claims)
        return user

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        if user.has_usable_password():
            raise SuspiciousOperation(
                f"{user.get_username()} is a local account with a password: "
                "single sign-on does not sign it in"
            )
        email = str(claims.get("email") or "")
        if email and email != user.email:
            user.email = email
            user.save(update_fields=["email"])
        self._grant(user, claims)
        return user

    def _grant(self, user: Any, claims: dict[str, Any]) -> None:
        stop_groups = set(settings.SFNUI_OIDC_STOP_GROUPS)
        if not stop_groups:
            return
        app_label, codename = stop.PERMISSION.split(".")
        permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        if _groups(claims) & stop_groups:
            user.user_permissions.add(permission)
        else:
            user.user_permissions.remove(permission)
        # has_perm caches per user object.
        for cache in ("_perm_cache", "_user_perm_cache"):
            user.__dict__.pop(cache, None)


class _RequestView(OIDCAuthenticationRequestView):
    get_settings = staticmethod(oidc_setting)


class _CallbackView(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(oidc_setting)

    def login_failure(self) -> HttpResponse:
        return _failed(self.request, "The identity provider did not sign you in.")


def _failed(request: HttpRequest, why: str) -> HttpResponse:
    messages.error(
        request, f"Single sign-on failed: {why} Try again, or sign in with a local account."
    )
    return HttpResponseRedirect(settings.LOGIN_URL)


def _unreachable(exc: Exception) -> PageError:
    log.warning("single sign-on: provider unavailable: %s", exc)
    return PageError(
        503,
        "Single sign-on is unavailable",
        "The identity provider could not be reached or answered unexpectedly. "
        "Try again in a moment, or sign in with a local account.",
    )


@login_not_required
@require_GET
def sign_in(request: HttpRequest) -> HttpResponse:
    """Off to the identity provider (authorization code flow with PKCE)."""
    try:
        response: HttpResponse = _RequestView.as_view()(request)
    except (ProviderUnavailable, requests.RequestException) as exc:
        raise _unreachable(exc) from None
    return response


@login_not_required
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Back from the identity provider: code for tokens, tokens for a user."""
    try:
        response: HttpResponse = _CallbackView.as_view()(request)
    except SuspiciousOperation as exc:
        log.warning("single sign-on: rejected callback: %s", exc)
        return _failed(
            request,
            "the answer could not be verified (the sign-in link may be stale or used already).",
        )
    except (ProviderUnavailable, requests.RequestException) as exc:
        log.warning("single sign-on: provider unavailable: %s", exc)
        return _failed(request, "the identity provider could not be reached.")
    return response
