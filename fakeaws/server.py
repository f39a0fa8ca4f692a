"""Serve FaithfulStepFunctions on loopback, in a thread (tests) or as a process (demo, bench)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import urllib.request
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import FaithfulStepFunctions

# moto logs every failing state of every execution as an ERROR with a stack of
# its internals; here failures are the point, not news.
logging.getLogger("moto").setLevel(logging.CRITICAL)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FakeAwsServer:
    """moto + FaithfulStepFunctions on 127.0.0.1, in a background thread."""

    def __init__(self, port: int = 0, execute: bool = True, host: str = "127.0.0.1") -> None:
        self.app = FaithfulStepFunctions()
        self.execute = execute
        self._server: BaseWSGIServer = make_server(
            host, port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAwsServer:
        # moto's Step Functions interpreter calls other services (Lambda,
        # DynamoDB) at localhost:$MOTO_PORT: that is us.
        os.environ["MOTO_PORT"] = str(self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.reset()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget every state machine and execution, call count, quota and fault."""
        self.post("/moto-api/reset", {})
        self.app.reset()
        if self.execute:
            self.post(
                "/moto-api/config",
                {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}},
            )

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            text = response.read()
        return json.loads(text) if text.strip() else None

    def __enter__(self) -> FakeAwsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fakeaws",
        description="A local Step Functions endpoint: moto in execute mode, faithful to AWS's "
        "paging, StopExecution and (with --quotas aws) its API quotas.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--no-execute", action="store_true", help="moto's canned executions")
    parser.add_argument("--quotas", choices=["aws", "none"], default="none")
    args = parser.parse_args(argv)
    server = FakeAwsServer(port=args.port, execute=not args.no_execute, host=args.host)
    server.start()
    if args.quotas == "aws":
        server.app.configure(quotas="aws")
    print(f"fakeaws: Step Functions endpoint on {server.url}", flush=True)
    try:
        # Woken now and then: Ctrl-C's KeyboardInterrupt is raised only when
        # the main thread runs, and a signal may land on a serving thread.
        forever = threading.Event()
        while not forever.wait(0.5):
            pass
    except KeyboardInterrupt:
        server.stop()
