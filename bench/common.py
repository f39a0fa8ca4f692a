"""Shared set-up for the benchmarks: a database (PostgreSQL unless told
otherwise), Django, the fake endpoint, and real Celery workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sfnui_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _on_server(url: str, statement: Callable[[str, Any], None]) -> None:
    """Run `statement(name, connection)` on the server's `postgres` database
    for the database `url` names (PostgreSQL only)."""
    parsed = urlparse(url)
    if not parsed.scheme.startswith("postgres"):
        return
    import psycopg

    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        statement(parsed.path.lstrip("/"), conn)


def ensure_database(url: str) -> None:
    def create(name: str, conn: Any) -> None:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')

    _on_server(url, create)


def drop_database(url: str) -> None:
    _on_server(
        url, lambda name, conn: conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


def setup_django(database_url: str | None = None, redis_url: str | None = None, **env: str) -> None:
    """Point Django at the benchmark database (created and migrated if needed)."""
    os.environ["DATABASE_URL"] = database_url or os.environ.get(
        "DATABASE_URL", DEFAULT_DATABASE_URL
    )
    if redis_url is not None:
        os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("SFNUI_VAR_DIR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sfnui.settings")
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def reset_cache_tables() -> None:
    """Empty every synced table (a benchmark starts from a cold cache)."""
    from django.core.cache import cache
    from django.db import connection

    from executions.models import (
        ApiBucket,
        Execution,
        ExecutionCount,
        ExecutionCountDelta,
        HistoryEvent,
        StateMachine,
        StopRequest,
        SyncRun,
    )

    # TRUNCATE fires no trigger: the executions' counts are emptied with them.
    models: tuple[type[Any], ...] = (HistoryEvent, StopRequest, Execution, SyncRun, StateMachine)
    models += (ApiBucket, ExecutionCount, ExecutionCountDelta)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            tables = [m._meta.db_table for m in models]
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for model in models:
                model.objects.all().delete()
    cache.clear()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p95": percentile(values, 0.95),
        "max": max(values) if values else float("nan"),
    }


@contextmanager
def workers(
    endpoint: str,
    *,
    concurrency: int = 2,
    beat: bool = True,
    log_dir: Path | None = None,
    **env: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (prefork, `concurrency` processes) with beat, on the
    benchmark's database and broker, syncing from `endpoint`."""
    log_dir = log_dir or ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "SFNUI_AWS_ENDPOINT_URL": endpoint,
        "SFNUI_REGIONS": "us-east-1",
        "DJANGO_DEBUG": "true",
        "SFNUI_LOG_LEVEL": "WARNING",
        **env,
    }
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "sfnui",
        "worker",
        "--loglevel=WARNING",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        args += ["--beat", "--schedule", str(log_dir / "beat-schedule")]
    log = (log_dir / "worker.log").open("wb")
    proc = subprocess.Popen(
        args, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def fakeaws_process(*args: str) -> Iterator[str]:
    """`python -m fakeaws` in its own process on a free loopback port (so that
    the endpoint does not share a GIL with what measures it); yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "fakeaws", "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "fakeaws: Step Functions endpoint on http://..."
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> float:
    """Seconds until predicate() is true; raises after timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not done after {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def report(name: str, result: dict[str, Any]) -> None:
    """Print a result and keep it under var/bench/results/<name>.json."""
    out = ROOT / "var" / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
