"""Pages and the sync against an AWS that accepts connections and never answers
(issue 10, item 5).

    .venv/bin/python -m bench.hanging_aws             # the settings' defaults
    .venv/bin/python -m bench.hanging_aws --machines 20

With the default timeouts (connect 3 s, read 10 s, 3 attempts) and nothing
else set, against an endpoint that reads every request whole and never
answers (a black hole: a dead load balancer, a firewall that drops answers):

(a) the detail page of an execution the cache has never seen (it looks it up
    with DescribeExecution): its wall time and status;
(b) a stop of a running execution whose StopExecution reaches AWS (which acts
    on it) and gets no answer, the live check before it answered: wall time,
    outcome recorded, what the page says;
(c) a stop while every call hangs (the live check before the stop too);
(d) `manage.py sync` with N state machines and N running executions in the
    cache (as after a good sync), all due: wall time and its last lines.

Everything runs in this process on SQLite in a temporary directory (the
Django test client, `call_command`), with the fake endpoint (`fakeaws`) behind
a proxy that withholds the answers. It only uses the pages and the command,
so it measures older code the same way (a git worktree of an older commit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
LONG_WAIT = {"StartAt": "S", "States": {"S": {"Type": "Wait", "Seconds": 3600, "End": True}}}


def setup(var_dir: str) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "SFNUI_AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "SFNUI_VAR_DIR": var_dir,
            "DJANGO_SETTINGS_MODULE": "sfnui.settings",
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SFNUI_REGIONS": "us-east-1",
            "SFNUI_LOG_LEVEL": "ERROR",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sfnui-bench-hang-") as var_dir:
        setup(var_dir)
        print(json.dumps(run(args.machines), indent=2))


def run(machines: int) -> dict[str, Any]:
    import boto3
    from django.conf import settings
    from django.contrib.auth.models import Permission, User
    from django.contrib.messages import get_messages
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from executions.models import Execution, StopRequest
    from fakeaws import FakeAwsServer
    from tests.support.aws_faults import Withholding, silent

    results: dict[str, Any] = {
        "settings": {
            name: getattr(settings, name, None)
            for name in (
                "SFNUI_AWS_CONNECT_TIMEOUT",
                "SFNUI_AWS_READ_TIMEOUT",
                "SFNUI_AWS_MAX_ATTEMPTS",
                "SFNUI_AWS_PAGE_DEADLINE",
                "SFNUI_AWS_CALL_DEADLINE",
                "SFNUI_SYNC_CYCLE_DEADLINE",
            )
        }
    }
    with FakeAwsServer() as fake:
        settings.SFNUI_AWS_ENDPOINT_URL = fake.url
        sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=fake.url)
        role = "arn:aws:iam::123456789012:role/bench"
        running = []
        for i in range(machines):
            sm = sfn.create_state_machine(
                name=f"machine-{i}", definition=json.dumps(LONG_WAIT), roleArn=role
            )["stateMachineArn"]
            running.append(sfn.start_execution(stateMachineArn=sm, name=f"run-{i}")["executionArn"])
        call_command("sync", stdout=StringIO(), stderr=StringIO())
        assert Execution.objects.filter(status="RUNNING").count() == machines

        person = User.objects.create_user("bench")
        person.user_permissions.add(Permission.objects.get(codename="stop_execution"))
        client = Client()
        client.force_login(person)

        def stop(arn: str, endpoint: Withholding) -> dict[str, Any]:
            # A client of its own: the page's messages are this stop's only.
            client = Client()
            client.force_login(person)
            url = reverse("execution_stop", args=[arn])
            data = {"error": "Bench", "cause": "bench", "request_token": str(uuid.uuid4())}
            response, seconds = timed(lambda: client.post(url, data))
            attempt = StopRequest.objects.order_by("-id").first()
            return {
                "seconds": round(seconds, 2),
                "status": response.status_code,
                "stop_requests_arrived": endpoint.arrived["StopExecution"],
                "outcome_recorded": attempt.outcome if attempt else None,
                "page_says": [str(m)[:300] for m in get_messages(response.wsgi_request)],
            }

        unknown = running[0].rsplit(":", 1)[0] + ":never-synced"
        with silent() as hole:
            settings.SFNUI_AWS_ENDPOINT_URL = hole.url
            response, seconds = timed(
                lambda: client.get(reverse("execution_detail", args=[unknown]))
            )
            results["a_unknown_arn_page"] = {
                "seconds": round(seconds, 2),
                "status": response.status_code,
                "requests_arrived": sum(hole.arrived.values()),
            }

        with Withholding(fake.url, {"StopExecution"}, deliver=True) as proxy:
            settings.SFNUI_AWS_ENDPOINT_URL = proxy.url
            results["b_stop_sent_no_answer"] = stop(running[1], proxy)
            after = sfn.describe_execution(executionArn=running[1])["status"]
            results["b_stop_sent_no_answer"]["aws_status_after"] = after

        with silent() as hole:
            settings.SFNUI_AWS_ENDPOINT_URL = hole.url
            results["c_stop_everything_hangs"] = stop(running[2], hole)
            hole.arrived.clear()

            Execution.objects.update(sync_due_at=timezone.now(), needs_describe=True)
            out, err = StringIO(), StringIO()
            started = time.monotonic()
            try:
                call_command("sync", stdout=out, stderr=err)
                ended = "exit 0"
            except Exception as exc:
                ended = f"{type(exc).__name__}: {exc}"
            results["d_manage_py_sync"] = {
                "seconds": round(time.monotonic() - started, 2),
                "state_machines": machines,
                "executions_due": machines,
                "ended": ended,
                "requests_arrived": sum(hole.arrived.values()),
                "last_lines": (out.getvalue() + err.getvalue()).strip().splitlines()[-4:],
            }
    return results


if __name__ == "__main__":
    main()
