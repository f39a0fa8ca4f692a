"""The demo: its state machines really run on the fake endpoint and end the
ways the README promises; its traffic keeps coming and survives failures."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from demo import WORKFLOWS, Traffic, Workflow
from demo import __main__ as demo_main
from demo.traffic import BUSY_SECONDS
from fakeaws import FakeAwsServer
from tests.support.helpers import wait_for

# conftest's autouse fixture clears the cache table: it needs the test database.
pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"order-pipeline", "payment-capture", "invoice-render", "nightly-batch", "catalog-reindex"}
EXECUTION_NAME = re.compile(r"^(order|payment|invoice|nightly|reindex)-\d{8}-\d{4}-[0-9a-f]{4}$")


def executions(sfn: Any, sm_arn: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=sm_arn):
        out.extend(page["executions"])
    return out


def events(sfn: Any, arn: str) -> list[dict[str, Any]]:
    return list(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])


def test_seeding_creates_the_teams_state_machines_once(sfn: Any) -> None:
    traffic = Traffic(sfn, rng=random.Random(1))
    arns = traffic.seed()
    assert set(arns) == NAMES
    listed = {
        sm["name"]: sm["stateMachineArn"] for sm in sfn.list_state_machines()["stateMachines"]
    }
    assert listed == arns
    # A second seeding (a restarted generator) reuses them.
    assert Traffic(sfn).seed() == arns
    assert len(sfn.list_state_machines()["stateMachines"]) == len(NAMES)


def test_the_first_batch_shows_every_outcome(sfn: Any) -> None:
    traffic = Traffic(sfn, rng=random.Random(7))
    sms = traffic.seed()
    started = traffic.first_batch()
    assert len(started) >= 15
    assert traffic.failed_calls == 0

    def settled() -> dict[str, Counter[str]]:
        by_sm = {
            name: Counter(e["status"] for e in executions(sfn, arn)) for name, arn in sms.items()
        }
        done = (
            by_sm["order-pipeline"]["SUCCEEDED"]
            and by_sm["order-pipeline"]["FAILED"]
            and by_sm["payment-capture"]["FAILED"]
            and by_sm["payment-capture"]["SUCCEEDED"]
            and by_sm["invoice-render"]["TIMED_OUT"]
        )
        return by_sm if done else {}

    # The invoice time limit is 10 s; everything else ends sooner.
    by_sm = wait_for(settled, timeout=40, interval=0.5)
    # The hour-long batch is still running: the one worth stopping.
    assert by_sm["nightly-batch"] == Counter({"RUNNING": 1})
    for arn in sms.values():
        for e in executions(sfn, arn):
            assert EXECUTION_NAME.match(e["name"]), e["name"]
            assert json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])


def test_failures_have_a_readable_error_and_cause_and_visible_retries(sfn: Any) -> None:
    traffic = Traffic(sfn, rng=random.Random(3))
    sms = traffic.seed()
    payment = next(wf for wf in WORKFLOWS if wf.name == "payment-capture")
    order = next(wf for wf in WORKFLOWS if wf.name == "order-pipeline")
    assert payment.unhappy
    assert order.unhappy
    failing_payment = traffic.start(
        payment, payment.unhappy(payment.make_input(traffic.rng, _now()))
    )
    empty_order = traffic.start(order, order.unhappy(order.make_input(traffic.rng, _now())))
    assert failing_payment
    assert empty_order
    wait_for(
        lambda: all(
            sfn.describe_execution(executionArn=a)["status"] == "FAILED"
            for a in (failing_payment, empty_order)
        ),
        timeout=30,
        interval=0.5,
    )
    d = sfn.describe_execution(executionArn=failing_payment)
    assert d["error"] == "Payment.CaptureFailed"
    assert re.match(
        r"payment pay-[0-9a-f]{6} of [\d.]+ [A-Z]{3} for order ord-\d+ was not captured: "
        r"the legacy wallet ledger answered DynamoDB.ResourceNotFoundException",
        d["cause"],
    ), d["cause"]
    history = events(sfn, failing_payment)
    # The first attempt and two retries, then the Catch.
    failed_tasks = [e for e in history if e["type"] == "TaskFailed"]
    assert len(failed_tasks) == 3
    assert {e["taskFailedEventDetails"]["resource"] for e in failed_tasks} == {"getItem"}
    assert history[-1]["type"] == "ExecutionFailed"

    d = sfn.describe_execution(executionArn=empty_order)
    assert d["error"] == "Order.NoItems"
    assert re.fullmatch(r"order ord-\d+ from [a-z-]+ has no items", d["cause"]), d["cause"]
    assert sms["order-pipeline"] == d["stateMachineArn"]


def test_a_happy_order_goes_through_the_map_the_parallel_and_the_lambdas(sfn: Any) -> None:
    traffic = Traffic(sfn, rng=random.Random(5))
    traffic.seed()
    order = next(wf for wf in WORKFLOWS if wf.name == "order-pipeline")
    payload = order.make_input(traffic.rng, _now())
    payload["items"] = payload["items"] or [{"sku": "SKU-1040", "quantity": 1, "unitPrice": 9.5}]
    arn = traffic.start(order, payload)
    assert arn
    wait_for(
        lambda: sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED",
        timeout=30,
        interval=0.5,
    )
    types = Counter(e["type"] for e in events(sfn, arn))
    assert types["MapIterationSucceeded"] == len(payload["items"])
    assert types["ParallelStateSucceeded"] == 1
    assert types["LambdaFunctionSucceeded"] + types["TaskSucceeded"] >= 2 + len(payload["items"])
    assert types["WaitStateExited"] >= 1


def test_it_survives_a_failing_call(sfn: Any, fake_aws: FakeAwsServer) -> None:
    traffic = Traffic(sfn, rng=random.Random(2))
    traffic.seed()
    order = traffic.workflows[0]
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["StartExecution"]}
    )
    assert traffic.start(order) is None
    assert traffic.failed_calls == 1
    # A broken input maker is survived the same way.
    broken = Workflow("order-pipeline", "order", order.definition, _broken_input, every=1.0)
    assert traffic.start(broken) is None
    assert traffic.failed_calls == 2

    fake_aws.app.configure(faults={})
    arn = traffic.start(order)
    assert arn
    assert sfn.describe_execution(executionArn=arn)["status"] in ("RUNNING", "SUCCEEDED")
    assert traffic.started == Counter({"order-pipeline": 1})
    assert traffic.summary() == "1 executions started (order-pipeline 1); 2 calls failed"


def test_the_loop_keeps_starting_through_failures_and_stops_when_told(
    sfn: Any, fake_aws: FakeAwsServer
) -> None:
    quick = [
        Workflow(wf.name, wf.prefix, wf.definition, wf.make_input, every=0.2, unhappy=wf.unhappy)
        for wf in WORKFLOWS
        if wf.name in ("order-pipeline", "invoice-render")
    ]
    traffic = Traffic(sfn, rng=random.Random(4), workflows=quick)
    traffic.seed()
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["StartExecution"]}
    )
    stop = threading.Event()
    loop = threading.Thread(target=traffic.run, args=(stop,))
    loop.start()
    try:
        wait_for(lambda: traffic.failed_calls >= 2, timeout=30)
        assert not traffic.started
        fake_aws.app.configure(faults={})
        wait_for(lambda: sum(traffic.started.values()) >= 6, timeout=20)
    finally:
        stop.set()
        loop.join(timeout=3)
    assert not loop.is_alive()
    assert set(traffic.started) == {"order-pipeline", "invoice-render"}


class CountingClient:
    """Counts StartExecution calls: to see the rate over simulated minutes
    without running hundreds of executions."""

    class meta:
        region_name = "us-east-1"

    def __init__(self) -> None:
        self.starts: Counter[str] = Counter()

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, str]:
        self.starts[stateMachineArn] += 1
        return {"executionArn": f"{stateMachineArn}:{name}"}


def test_the_rate_gives_a_few_hundred_executions_in_ten_minutes_then_calms_down() -> None:
    clock = [0.0]
    client = CountingClient()
    traffic = Traffic(client, rng=random.Random(9), clock=lambda: clock[0])  # type: ignore[arg-type]
    traffic.state_machines = {wf.name: wf.name for wf in WORKFLOWS}

    def simulate(seconds: float) -> int:
        before = sum(client.starts.values())
        end = clock[0] + seconds
        while clock[0] < end:
            clock[0] += min(traffic.step(), 1.0) or 0.01
        return sum(client.starts.values()) - before

    busy = simulate(BUSY_SECONDS)
    assert 250 <= busy <= 700, busy
    assert client.starts["nightly-batch"] >= 2
    calm = simulate(BUSY_SECONDS)
    assert busy / 6 < calm < busy / 2, (busy, calm)


def _demo_process(*args: str) -> subprocess.Popen[str]:
    """The demo as its own process (python ARGS), its output in one text pipe."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_python_m_demo_serves_until_sigterm(tmp_path: Path) -> None:
    proc = _demo_process("-m", "demo", "--port", "0", "--seed", "1")
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        url = None
        for line in proc.stdout:
            match = re.search(r"Step Functions endpoint on (http://\S+)", line)
            if match:
                url = match.group(1)
                break
            assert time.monotonic() < deadline, "no ready line"
        assert url, "the demo exited before it was ready"
        client = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=url)
        sms = {
            sm["name"]: sm["stateMachineArn"]
            for sm in client.list_state_machines()["stateMachines"]
        }
        assert set(sms) == NAMES
        # The first batch is there when the ready line is printed.
        assert executions(client, sms["order-pipeline"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "stopping:" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


HANGING_STOP = """
import sys, time
import fakeaws
fakeaws.FakeAwsServer.stop = lambda self: time.sleep(3600)  # the endpoint never shuts down
from demo.__main__ import main
sys.exit(main(["--port", "0", "--seed", "1", "--one-account"]))
"""


def test_a_demo_whose_shutdown_hangs_still_exits_soon_after_the_signal() -> None:
    # bin/run's own stop gives its children 20 s; the demo never needs them.
    proc = _demo_process("-c", HANGING_STOP)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Step Functions endpoint on" in line:
                break
        else:
            pytest.fail("the demo exited before it was ready")
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert proc.wait(timeout=30) == 0
        took = time.monotonic() - signalled
        assert "exiting now" in proc.stdout.read()
        assert took < demo_main.STOP_GRACE + 2.0 + 5.0, took
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _broken_input(rng: random.Random, now: Any) -> dict[str, Any]:
    raise ValueError("the input maker broke")


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def test_catalog_reindex_runs_a_map_run_whose_failures_stay_under_the_tolerance(
    sfn: Any, fake_aws: Any
) -> None:
    import time as _time

    from demo.workflows import WORKFLOWS as ALL
    from fakeaws.map_runs import MapRuns

    wf = next(w for w in ALL if w.name == "catalog-reindex")
    assert wf.map_run is not None
    assert wf.unhappy is not None
    traffic = Traffic(
        sfn, rng=random.Random(3), workflows=[wf], map_runs=fake_aws.app.map_runs.create
    )
    traffic.seed()
    arn = traffic.start(wf)
    assert arn is not None
    runs = sfn.list_map_runs(executionArn=arn)["mapRuns"]
    assert len(runs) == 1
    assert sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["toleratedFailurePercentage"] == 10
    # Played to the end: the usual input stays under 10 % failed, the unhappy one does not.
    outcomes = {}
    for name, payload in (("happy", wf.unhappy({})), ("unhappy", {"badProducts": 20})):
        sim = MapRuns()
        spec = wf.map_run({"products": 120, **payload})
        run = sim.create(
            "arn:aws:states:us-east-1:123456789012:execution:x:y", start=_time.time() - 3600, **spec
        )
        outcomes[name] = sim.describe_map_run(run.arn)["status"]
    assert outcomes == {"happy": "SUCCEEDED", "unhappy": "FAILED"}
