"""PostgreSQL faults under load: the database restarted, a statement timeout
hit, the connection pool exhausted.

    .venv/bin/python -m bench.pg_faults
    .venv/bin/python -m bench.pg_faults --fault-seconds 10 --readers 6

A database and a role of its own (created, and dropped at the end), the fake
endpoint (`python -m fakeaws`, its own process), a real worker with beat and
gunicorn (1 process, 4 threads). The web server and the worker reach
PostgreSQL through a TCP proxy in this process (tests/support/tcp_proxy.py): the
machine's PostgreSQL serves others and is never restarted.

While executions start on AWS every half second, reader threads (each signed
in) request pages and the API in a loop, and a stopper posts the stop form of
a long-running execution every 1.5 s. The faults, one after the other, with
a quiet spell between them:

1. restart, proxy cut: every connection through the proxy closed, new ones
   refused, for --fault-seconds; then it listens again;
2. restart, backends ended: pg_terminate_backend on every connection of the
   role, every 0.2 s, for --fault-seconds;
3. statement timeout: another session holds the executions table ACCESS
   EXCLUSIVE (as a migration would) for --fault-seconds; the web process's
   SFNUI_DB_STATEMENT_TIMEOUT is 2 s here, the worker has none and waits;
4. pool exhausted: another client of the role opens 3 connections, the
   role's CONNECTION LIMIT is set to 3 and the app's connections are ended,
   for --fault-seconds.

Counted per phase: the answers' statuses (targets: 0 answers 500, every 503
says what happened); at the end, nothing lost (every execution on AWS is in
the cache with AWS's status; every stop either recorded in the audit with
AWS agreeing, or refused with a 503 and not sent); the sync resumes (seconds
from the last fault to a successful sync run, and to the cache equal to
AWS).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import psycopg

from bench.common import ROOT, fakeaws_process, report, setup_django, summary, workers

ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
NAME = "sfnui_bench_pgfaults"
REDIS = "redis://127.0.0.1:6379/14"
# What a 503 must say: unavailable.py's two, and busy.py's for a write that
# found a lock.
MESSAGES = (
    "The database is not answering",
    "The database did not answer in time",
    "The database is busy",
)
QUICK = {
    "StartAt": "Work",
    "States": {"Work": {"Type": "Wait", "Seconds": 2, "Next": "Done"}, "Done": {"Type": "Succeed"}},
}
LONG = {"StartAt": "Work", "States": {"Work": {"Type": "Wait", "Seconds": 3600, "End": True}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault-seconds", type=float, default=8.0)
    parser.add_argument("--quiet-seconds", type=float, default=6.0)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_PG_ADMIN", ADMIN))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", REDIS))
    parser.add_argument("--keep", action="store_true", help="keep the database and role")
    args = parser.parse_args()

    password = uuid.uuid4().hex
    admin = args.admin_url
    server = urlparse(admin)
    host, port = server.hostname or "127.0.0.1", server.port or 5432
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{NAME}"')
        conn.execute(f"CREATE ROLE \"{NAME}\" LOGIN PASSWORD '{password}'")
        conn.execute(f'CREATE DATABASE "{NAME}" OWNER "{NAME}"')
    direct = f"postgres://{NAME}:{password}@{host}:{port}/{NAME}"
    db_admin = server._replace(path=f"/{NAME}").geturl()
    var = ROOT / "var" / "bench" / "pg_faults"
    var.mkdir(parents=True, exist_ok=True)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    try:
        with fakeaws_process() as endpoint:
            env = {
                "SFNUI_AWS_ENDPOINT_URL": endpoint,
                "SFNUI_REGIONS": "us-east-1",
                "SFNUI_VAR_DIR": str(var),
                "SFNUI_SYNC_TICK": "1",
                "SFNUI_LIST_INTERVAL": "1",
                "SFNUI_LIST_IDLE_INTERVAL": "5",
                "SFNUI_RUNNING_MIN_INTERVAL": "1",
                "SFNUI_QUEUE": f"bench-{uuid.uuid4().hex[:6]}",
            }
            setup_django(direct, args.redis_url, **env)
            result = run(args, endpoint, env, direct, db_admin, (host, port))
        report("pg_faults", result)
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
                conn.execute(f'DROP ROLE IF EXISTS "{NAME}"')


class Phase:
    """The phase every request is counted in, set by the main thread."""

    def __init__(self) -> None:
        self.name = "start"
        self.log: list[tuple[str, float, float]] = []  # (name, start, end)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.name = name
        started = time.monotonic()
        print(f"{time.strftime('%H:%M:%S')} {name}", flush=True)
        try:
            yield
        finally:
            self.log.append((name, started, time.monotonic()))


def run(
    args: argparse.Namespace,
    endpoint: str,
    env: dict[str, str],
    direct: str,
    db_admin: str,
    target: tuple[str, int],
) -> dict[str, Any]:
    import boto3
    from django.contrib.auth import get_user_model

    from executions.models import Execution, StateMachine, StopRequest, SyncRun
    from tests.support.tcp_proxy import TcpProxy
    from tests.support.workers import Processes, WebServer

    get_user_model().objects.create_superuser("bench", "", "bench-pass-123")
    sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=endpoint)
    role_arn = "arn:aws:iam::123456789012:role/bench"
    quick = sfn.create_state_machine(name="quick", definition=json.dumps(QUICK), roleArn=role_arn)
    long = sfn.create_state_machine(name="long", definition=json.dumps(LONG), roleArn=role_arn)
    runaways = [
        sfn.start_execution(stateMachineArn=long["stateMachineArn"], name=f"long-{i}")[
            "executionArn"
        ]
        for i in range(60)
    ]

    proxy = TcpProxy(target)
    through_proxy = urlparse(direct)._replace(
        netloc=f"{NAME}:{urlparse(direct).password}@127.0.0.1:{proxy.port}"
    )
    app_env = {**env, "DATABASE_URL": through_proxy.geturl(), "REDIS_URL": args.redis_url}
    phase = Phase()
    stop = threading.Event()
    answers: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []

    with (
        workers(endpoint, concurrency=2, log_dir=Path(env["SFNUI_VAR_DIR"]), **app_env),
        Processes(Path(env["SFNUI_VAR_DIR"]), endpoint=endpoint) as processes,
    ):
        web = processes.web(**app_env, SFNUI_DB_STATEMENT_TIMEOUT="2")
        sessions = []
        for _ in range(args.readers + 1):
            session = WebServer(web.url, web.proc)
            session.sign_in("bench", "bench-pass-123")
            sessions.append(session)
        # Wait for the first sync to know the runaways (their pages and stop forms).
        _wait(lambda: Execution.objects.filter(arn__in=runaways).count() == len(runaways), 120)

        def starter() -> None:
            n = 0
            while not stop.is_set():
                sfn.start_execution(stateMachineArn=quick["stateMachineArn"], name=f"quick-{n}")
                n += 1
                stop.wait(0.5)

        def reader(session: WebServer, offset: int) -> None:
            paths = [
                "/executions/",
                f"/executions/{quote(runaways[offset], safe=':')}/",
                "/state-machines/",
                "/sync/",
                "/api/executions/",
                "/executions/?status=RUNNING",
            ]
            i = offset
            while not stop.is_set():
                path = paths[i % len(paths)]
                i += 1
                answers.append(_request(session, path, phase.name))
                time.sleep(0.05)

        def stopper(session: WebServer) -> None:
            for arn in runaways:
                if stop.wait(1.5):
                    return
                stops.append(_stop(session, arn, phase.name))

        threads = [
            threading.Thread(target=starter),
            threading.Thread(target=stopper, args=(sessions[-1],)),
        ]
        threads += [
            threading.Thread(target=reader, args=(s, i)) for i, s in enumerate(sessions[:-1])
        ]
        for t in threads:
            t.start()
        try:
            faults = [
                ("1. restart: proxy cut", lambda: _proxy_cut(proxy, args.fault_seconds)),
                (
                    "2. restart: backends terminated every 0.2 s",
                    lambda: _terminate_loop(db_admin, args.fault_seconds),
                ),
                (
                    "3. statement timeout: executions table locked",
                    lambda: _table_locked(db_admin, args.fault_seconds),
                ),
                (
                    "4. pool exhausted: role connection limit taken",
                    lambda: _pool_exhausted(db_admin, direct, args.fault_seconds),
                ),
            ]
            with phase("before"):
                time.sleep(args.quiet_seconds)
            for name, fault in faults:
                with phase(name):
                    fault()
                with phase(f"after {name.split('.')[0]}"):
                    time.sleep(args.quiet_seconds)
            last_fault_end = time.time()
            faults_over = time.monotonic()
            listings = _wait(
                lambda: list(StateMachine.objects.values("name", "list_interval", "list_error")),
                30,
                value=True,
            )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            proxy.restore()
        print(f"{time.strftime('%H:%M:%S')} waiting for the cache to equal AWS", flush=True)
        timeline: list[dict[str, Any]] = []

        def settled() -> bool:
            # What is still different, every 5 s: where the catching up waits.
            left = _differences(sfn, Execution)
            seconds = time.monotonic() - faults_over
            if not timeline or seconds - timeline[-1]["s"] >= 5 or not left:
                kinds = Counter(f"AWS {aws} / cache {cached}" for _, aws, cached in left)
                timeline.append({"s": round(seconds, 1), "differences": dict(kinds)})
            return not left

        caught_up = _wait(settled, 300)
        recovered = time.monotonic() - faults_over
        import datetime as dt

        since = dt.datetime.fromtimestamp(last_fault_end, tz=dt.UTC)
        first_ok = (
            SyncRun.objects.filter(ok=True, started_at__gte=since).order_by("started_at").first()
        )
    proxy.close()

    return {
        "phases": _phases(answers, phase.log),
        "answers 500 (or other 5xx than 503)": sum(
            1 for a in answers if a["status"] >= 500 and a["status"] != 503
        ),
        "answers 503 without the message": sum(
            1 for a in answers if a["status"] == 503 and not a["message"]
        ),
        "requests that got no answer (client timeout, connection error)": sum(
            1 for a in answers if a["status"] == 0
        ),
        "stops": _stops(stops, sfn, StopRequest),
        "nothing lost: executions on AWS, cache differences at the end": {
            "executions": len(_aws_statuses(sfn)),
            "differences": _differences(sfn, Execution)[:5],
        },
        "sync resumes: first successful sync run after the last fault (s)": (
            round(first_ok.started_at.timestamp() - last_fault_end, 1) if first_ok else None
        ),
        "sync resumes: cache equal to AWS, seconds after the faults": round(recovered, 1),
        "catching up (seconds after the faults: what still differed)": timeline,
        "state machines' listing intervals when the faults ended": [
            {**sm, "list_error": sm["list_error"][:200]} for sm in listings or []
        ],
        "cache equal to AWS within the wait": caught_up is not None,
        "sync runs failed (recorded) during the bench": SyncRun.objects.filter(ok=False).count(),
        "settings": {
            "web": "gunicorn 1 process x 4 threads, SFNUI_DB_STATEMENT_TIMEOUT=2",
            "worker": "prefork 2 + beat, no statement timeout",
            "readers": args.readers,
            "fault seconds": args.fault_seconds,
        },
    }


def _request(session: Any, path: str, phase: str) -> dict[str, Any]:
    try:
        r = session.get(path, timeout=30)
        status, text, seconds = r.status, r.text, r.seconds
    except OSError as exc:
        status, text, seconds = 0, str(exc), 30.0
    return {
        "phase": phase,
        "path": path,
        "status": status,
        "seconds": seconds,
        "message": status != 503 or any(m in text for m in MESSAGES),
    }


def _stop(session: Any, arn: str, phase: str) -> dict[str, Any]:
    """The stop form fetched and posted, as a person would."""
    import re

    path = f"/executions/{quote(arn, safe=':')}/stop/"
    out: dict[str, Any] = {"arn": arn, "phase": phase, "form": 0, "post": None}
    try:
        form = session.get(path, timeout=30)
        out["form"] = form.status
        out["form_message"] = form.status != 503 or any(m in form.text for m in MESSAGES)
        if form.status != 200:
            return out
        data = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
        data.update({"error": "Bench.PgFaults", "cause": f"stopped during {phase}"})
        posted = session.request(path, data, timeout=30)
        out["post"] = posted.status
        out["post_message"] = posted.status != 503 or any(m in posted.text for m in MESSAGES)
    except OSError as exc:
        out["error"] = str(exc)
    return out


def _stops(stops: list[dict[str, Any]], sfn: Any, StopRequest: Any) -> dict[str, Any]:
    """What became of each stop, from the answer, the audit and AWS. Lost: AWS
    stopped it and the audit has no row, or a row that says it was not sent."""
    from executions.actions.stop import IN_FLIGHT

    outcomes: Counter[str] = Counter()
    lost = []
    for s in stops:
        aws = sfn.describe_execution(executionArn=s["arn"])["status"]
        rows = list(
            StopRequest.objects.filter(execution__arn=s["arn"]).values("outcome", "aws_response")
        )
        said_503 = (s["form"] == 503 and s.get("form_message")) or (
            s["post"] == 503 and s.get("post_message")
        )
        stopped = [r for r in rows if r["outcome"] == "STOPPED"]
        open_ = [r for r in rows if r["outcome"] == "UNKNOWN" or r["aws_response"] == IN_FLIGHT]
        if s["post"] == 302 and stopped and aws == "ABORTED":
            outcomes["recorded: 302, audit STOPPED, AWS ABORTED"] += 1
        elif said_503 and aws != "ABORTED":
            outcomes["refused: a 503 that says so; not sent (AWS still RUNNING)"] += 1
        elif said_503 and stopped:
            outcomes["a 503 after it was sent: audit STOPPED, AWS ABORTED"] += 1
        elif said_503 and open_:
            outcomes["a 503 after it was sent: audit 'no outcome recorded, check its status'"] += 1
        else:
            key = f"lost: form {s['form']}, post {s['post']}, AWS {aws}, audit {rows or 'none'}"
            outcomes[key[:300]] += 1
            lost.append(s)
    return {"attempts": len(stops), "outcomes": dict(outcomes), "lost": lost[:3]}


def _phases(
    answers: list[dict[str, Any]], log: list[tuple[str, float, float]]
) -> list[dict[str, Any]]:
    out = []
    for name, started, ended in log:
        mine = [a for a in answers if a["phase"] == name]
        out.append(
            {
                "phase": name,
                "seconds": round(ended - started, 1),
                "requests": len(mine),
                "statuses": dict(sorted(Counter(str(a["status"]) for a in mine).items())),
                "503 with the message": sum(1 for a in mine if a["status"] == 503 and a["message"]),
                "latency s": {
                    k: round(v, 3) for k, v in summary([a["seconds"] for a in mine]).items()
                },
            }
        )
    return out


def _aws_statuses(sfn: Any) -> dict[str, str]:
    out = {}
    for sm in sfn.list_state_machines()["stateMachines"]:
        for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=sm["stateMachineArn"]
        ):
            out.update({e["executionArn"]: e["status"] for e in page["executions"]})
    return out


def _differences(sfn: Any, Execution: Any) -> list[tuple[str, str, str | None]]:
    aws = _aws_statuses(sfn)
    cached = dict(Execution.objects.values_list("arn", "status"))
    return [
        (arn, status, cached.get(arn)) for arn, status in aws.items() if cached.get(arn) != status
    ]


def _wait(predicate: Callable[[], Any], timeout: float, value: bool = False) -> Any:
    """Seconds until predicate() is true (or, with value, what it returned)."""
    from django.db import DatabaseError, connection

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if got := predicate():
                return got if value else time.monotonic() - started
        except DatabaseError:
            # This process's own connection was ended by a fault: a new one.
            connection.close()
        time.sleep(0.5)
    return None


# --- The faults ------------------------------------------------------------------------------


def _proxy_cut(proxy: Any, seconds: float) -> None:
    proxy.cut()
    time.sleep(seconds)
    proxy.restore()


def _terminate_all(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (NAME,)
    )


def _terminate_loop(db_admin: str, seconds: float) -> None:
    with psycopg.connect(db_admin, autocommit=True) as conn:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _terminate_all(conn)
            time.sleep(0.2)


def _table_locked(db_admin: str, seconds: float) -> None:
    with psycopg.connect(db_admin) as locker:
        locker.execute("SET LOCAL idle_in_transaction_session_timeout = '1min'")
        locker.execute("LOCK TABLE executions_execution IN ACCESS EXCLUSIVE MODE")
        time.sleep(seconds)
        locker.rollback()


def _pool_exhausted(db_admin: str, direct: str, seconds: float) -> None:
    """Another client of the role holds every connection it may have."""
    limit = 3
    holders = [psycopg.connect(direct) for _ in range(limit)]
    pids = [h.info.backend_pid for h in holders]
    with psycopg.connect(db_admin, autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{NAME}" CONNECTION LIMIT {limit}')
        try:
            # The app's connections end; the holders fill the limit.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = %s AND pid <> ALL(%s)",
                (NAME, pids),
            )
            time.sleep(seconds)
        finally:
            conn.execute(f'ALTER ROLE "{NAME}" CONNECTION LIMIT -1')
            for holder in holders:
                holder.close()


if __name__ == "__main__":
    main()
