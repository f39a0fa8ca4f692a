"""API calls of a scripted sync scenario against the minimum it needs.

    .venv/bin/python -m bench.sync_calls            # PostgreSQL (DATABASE_URL or sfnui_bench)

Three `manage.py sync` cycles against the fake endpoint (moto in execute mode):

1. cold cache: 40 finished `orders`, 4 failed `flaky`, 5 running `ticker`s;
2. then 10 new orders finish, 2 tickers are stopped, 1 flaky one is redriven,
   the 3 other tickers keep adding events, everything else is settled;
3. then the redriven execution succeeds; nothing else changes but the 3
   tickers' histories.

The minimum a cycle needs, and why (computed below from what the fake holds):
- ListStateMachines: 1 (discovery; the command discovers on every cycle);
- DescribeStateMachine: 1 per state machine never described (cycle 1 only);
- ListExecutions: 1 per state machine (one page of up to 1000 holds every new
  execution and every status change here); no ListExecutions(RUNNING) is
  needed while the newest-first page covers the running ones;
- DescribeExecution: 1 per execution that is new, ended, or was redriven;
- GetExecutionHistory: ceil(events / 1000) per new execution; 1 per execution
  whose history grew (running, ended, redriven); 0 for settled ones.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from io import StringIO
from typing import Any

from bench.common import report, reset_cache_tables, setup_django


def main() -> None:
    setup_django()
    import boto3
    from django.conf import settings
    from django.core.management import call_command

    from executions import aws
    from executions.models import Execution
    from fakeaws import FakeAwsServer
    from tests.support.helpers import FAIL, PASS, ticking

    reset_cache_tables()
    settings.SFNUI_REGIONS = ["us-east-1"]
    settings.SFNUI_API_QUOTAS = {op: (1e6, 1e6) for op in settings.SFNUI_API_QUOTAS}
    # Re-read running executions on every cycle: that is what the minimum counts.
    settings.SFNUI_RUNNING_MIN_INTERVAL = 0
    settings.SFNUI_RUNNING_MAX_INTERVAL = 0

    with FakeAwsServer() as fake:
        settings.SFNUI_AWS_ENDPOINT_URL = fake.url
        sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=fake.url)
        role = "arn:aws:iam::123456789012:role/bench"

        def machine(name: str, definition: dict[str, Any]) -> str:
            return str(
                sfn.create_state_machine(
                    name=name, definition=json.dumps(definition), roleArn=role
                )["stateMachineArn"]
            )

        def start(sm: str, name: str) -> str:
            return str(
                sfn.start_execution(stateMachineArn=sm, name=name, input="{}")["executionArn"]
            )

        def status(arn: str) -> str:
            return str(sfn.describe_execution(executionArn=arn)["status"])

        def events(arn: str) -> int:
            n, kwargs = 0, {"executionArn": arn, "maxResults": 1000}
            while True:
                page = sfn.get_execution_history(**kwargs)
                n += len(page["events"])
                if "nextToken" not in page:
                    return n
                kwargs["nextToken"] = page["nextToken"]

        def wait_closed(arns: list[str]) -> None:
            while any(status(a) == "RUNNING" for a in arns):
                time.sleep(0.3)

        def cycle() -> tuple[Counter[str], dict[str, dict[str, int]]]:
            before = fake.post("/fakeaws/calls", {})["by_execution"]
            with aws.count_calls() as calls:
                call_command("sync", stdout=StringIO(), stderr=StringIO())
            after = fake.post("/fakeaws/calls", {})["by_execution"]
            per_execution = {
                arn: {op: n - before.get(arn, {}).get(op, 0) for op, n in ops.items()}
                for arn, ops in after.items()
            }
            return calls, per_execution

        orders = machine("orders", PASS)
        flaky = machine("flaky", FAIL)
        ticker = machine("ticker", ticking(600))
        done = [start(orders, f"order-{i:03d}") for i in range(40)]
        failed = [start(flaky, f"flaky-{i}") for i in range(4)]
        tickers = [start(ticker, f"tick-{i}") for i in range(5)]
        wait_closed(done + failed)
        time.sleep(2)

        results: list[dict[str, Any]] = []

        # --- cycle 1: cold cache
        calls, _ = cycle()
        first_syncs = done + failed + tickers
        minimum = Counter(
            ListStateMachines=1,
            DescribeStateMachine=3,
            ListExecutions=3,
            DescribeExecution=len(first_syncs),
            GetExecutionHistory=sum(math.ceil(events(a) / 1000) for a in first_syncs),
        )
        results.append(_compare("1: cold cache", calls, minimum))

        # --- between 1 and 2
        new = [start(orders, f"order-new-{i:02d}") for i in range(10)]
        wait_closed(new)
        stopped = tickers[:2]
        for arn in stopped:
            sfn.stop_execution(executionArn=arn, error="Bench", cause="stopped by the benchmark")
        sfn.redrive_execution(executionArn=failed[0])
        time.sleep(2)  # the running tickers add events
        settled = [a for a in done + failed[1:]]
        calls, per_execution = cycle()
        still_running = tickers[2:]
        minimum = Counter(
            ListStateMachines=1,
            ListExecutions=3,
            DescribeExecution=len(new) + len(stopped) + 1,
            GetExecutionHistory=sum(math.ceil(events(a) / 1000) for a in new)
            + len(stopped)
            + len(still_running)
            + 1,
        )
        row = _compare("2: new, ended, redriven, growing", calls, minimum)
        row["calls for settled executions"] = _settled_calls(per_execution, settled)
        results.append(row)

        # --- cycle 3: the redrive succeeds, the running histories grow
        fake.app.finish(
            failed[0],
            "SUCCEEDED",
            [
                {"type": "PassStateEntered", "stateEnteredEventDetails": {"name": "Check"}},
                {"type": "PassStateExited", "stateExitedEventDetails": {"name": "Check"}},
                {"type": "ExecutionSucceeded", "executionSucceededEventDetails": {"output": "{}"}},
            ],
            output="{}",
        )
        time.sleep(2)
        settled = done + failed[1:] + new + stopped
        calls, per_execution = cycle()
        minimum = Counter(
            ListStateMachines=1,
            ListExecutions=3,
            DescribeExecution=1,
            GetExecutionHistory=len(still_running) + 1,
        )
        row = _compare("3: the redrive ends, running histories grow", calls, minimum)
        row["calls for settled executions"] = _settled_calls(per_execution, settled)
        results.append(row)

        total_actual = sum(sum(r["actual"].values()) for r in results)
        total_minimum = sum(sum(r["minimum"].values()) for r in results)
        assert Execution.objects.count() == len(done + failed + tickers + new)
        report(
            "sync_calls",
            {
                "cycles": results,
                "total actual": total_actual,
                "total minimum": total_minimum,
                "ratio": round(total_actual / total_minimum, 3),
            },
        )


def _compare(name: str, actual: Counter[str], minimum: Counter[str]) -> dict[str, Any]:
    return {
        "cycle": name,
        "actual": dict(sorted(actual.items())),
        "minimum": dict(sorted(minimum.items())),
        "ratio": round(sum(actual.values()) / sum(minimum.values()), 3),
    }


def _settled_calls(per_execution: dict[str, dict[str, int]], settled: list[str]) -> int:
    return sum(sum(per_execution.get(arn, {}).values()) for arn in settled)


if __name__ == "__main__":
    main()
