"""Endpoints that misbehave the ways a network to AWS does, for the tests of
what a request that got no answer means (aws.NoAnswer) and of the deadlines.

- `refused_url()`: nothing listens; every attempt fails before sending.
- `Silent`: accepts connections, reads each request whole, never answers.
- `Withholding`: a proxy in front of the fake endpoint that passes every call
  through, except the operations named: those it reads whole and, with
  `deliver=True`, passes on to the fake (AWS acts on it), then never answers;
  `then_withhold` names more operations to withhold after the first one was.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Withholding:
    """`with Withholding(upstream, {"StopExecution"}) as proxy:` then point the
    app at `proxy.url`. `proxy.arrived` counts the withheld requests that
    arrived whole."""

    def __init__(
        self,
        upstream: str | None,
        withhold: set[str],
        *,
        deliver: bool = False,
        then_withhold: frozenset[str] = frozenset(),
    ) -> None:
        self.upstream = upstream
        self.withhold = set(withhold)
        # Withheld as well once a first request has been withheld.
        self.then_withhold = then_withhold
        self.deliver = deliver
        self.arrived: Counter[str] = Counter()
        self.released = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rsplit(".", 1)[-1]
                if owner.upstream is None or operation in owner.withhold or not target:
                    with owner._lock:
                        owner.arrived[operation] += 1
                        owner.withhold |= owner.then_withhold
                    if owner.deliver and owner.upstream is not None:
                        owner._forward(self.command, self.path, dict(self.headers), body)
                    # Hold the connection open, answering nothing, until the test ends.
                    owner.released.wait(120)
                    self.close_connection = True
                    return
                status, headers, answer = owner._forward(
                    self.command, self.path, dict(self.headers), body
                )
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self.upstream is not None
        parts = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def __enter__(self) -> Withholding:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def silent() -> Withholding:
    """An endpoint that reads every request whole and never answers."""
    return Withholding(None, set())
