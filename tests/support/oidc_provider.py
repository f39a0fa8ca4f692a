"""A fake OpenID Connect provider for the single sign-on tests: a real HTTP
server on loopback serving discovery, authorize, token, userinfo and JWKS,
issuing ID tokens signed with a real RS256 key (joserfc, a library the app
does not use, so the app's verification is checked by an independent
implementation).

It checks what a real provider checks: client id and secret, the redirect
URI, single-use codes, PKCE (S256). The person who "signs in" at /authorize
is whoever the test puts in `next_claims`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "sfnui"
CLIENT_SECRET = "fake-client-secret-for-tests"


class FakeProvider:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"})
        # A second key the JWKS does not publish: tokens signed with it must fail.
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"})
        self.next_claims: dict[str, Any] = {}
        self.id_token_overrides: dict[str, Any] = {}
        self.sign_with_rogue_key = False
        self.deny = False
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.token_error: int | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = f"{self.url}/realms/ops"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- What a provider serves -----------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        assert query.get("client_id") == CLIENT_ID, query
        assert query.get("response_type") == "code", query
        assert "openid" in query.get("scope", "").split(), query
        assert query.get("code_challenge_method") == "S256", query
        redirect = query["redirect_uri"]
        if self.deny:
            params = {"error": "access_denied", "state": query.get("state", "")}
            return 302, {"Location": f"{redirect}?{urlencode(params)}"}, b""
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "redirect_uri": redirect,
            "nonce": query.get("nonce"),
            "challenge": query.get("code_challenge"),
            "claims": dict(self.next_claims),
        }
        params = {"code": code, "state": query["state"]}
        return 302, {"Location": f"{redirect}?{urlencode(params)}"}, b""

    def token(self, form: dict[str, str], headers: Any) -> tuple[int, dict[str, Any]]:
        if self.token_error:
            return self.token_error, {"error": "server_error"}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        if grant is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if challenge != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        claims = grant["claims"]
        now = int(time.time())
        id_claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": claims["sub"],
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **{k: v for k, v in claims.items() if k != "sub"},
            **self.id_token_overrides,
        }
        key = self.rogue_key if self.sign_with_rogue_key else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key-1"}, id_claims, key)
        access = secrets.token_urlsafe(24)
        self.access_tokens[access] = claims
        return 200, {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }

    def userinfo(self, headers: Any) -> tuple[int, dict[str, Any]]:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        claims = self.access_tokens.get(token)
        if claims is None:
            return 401, {"error": "invalid_token"}
        # Groups only in the ID token, as several providers do.
        return 200, {k: v for k, v in claims.items() if k != "groups"}

    def jwks(self) -> dict[str, Any]:
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "alg": "RS256", "use": "sig"}]}

    # --- HTTP ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if not isinstance(body, bytes):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                provider.requests.append(f"GET {parts.path}")
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                base = urlsplit(provider.issuer).path
                if parts.path.endswith("/.well-known/openid-configuration"):
                    # Under any path, always naming its own issuer.
                    self._send(200, provider.discovery())
                elif parts.path == f"{base}/authorize":
                    status, headers, body = provider.authorize(query)
                    self._send(status, body, headers)
                elif parts.path == f"{base}/userinfo":
                    self._send(*provider.userinfo(self.headers))
                elif parts.path == f"{base}/jwks":
                    self._send(200, provider.jwks())
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                provider.requests.append(f"POST {parts.path}")
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if parts.path == f"{urlsplit(provider.issuer).path}/token":
                    self._send(*provider.token(form, self.headers))
                else:
                    self._send(404, {"error": "not found"})

        return Handler
