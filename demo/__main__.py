"""`python -m demo`: the demo endpoint and its traffic, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import signal
import sys
import threading
import time
from types import FrameType

import boto3
from botocore.config import Config

from fakeaws import FakeAwsServer

from .traffic import Traffic
from .workflows import OTHER_ACCOUNT, OTHER_ACCOUNT_WORKFLOWS, OTHER_REGION, READER_ROLE

# Seconds the traffic threads get to finish a call in flight after Ctrl-C.
STOP_GRACE = 3.0

log = logging.getLogger("demo")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="A local Step Functions endpoint (moto in execute mode) with a team's "
        "state machines that keep producing executions: successes, failures, time-outs "
        "and hour-long runs worth stopping.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 (the default): a free port")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--seed", type=int, default=None, help="make the traffic repeatable")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--one-account",
        action="store_true",
        help=f"only the first account (not the second, {OTHER_ACCOUNT} in {OTHER_REGION})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    server = FakeAwsServer(port=args.port, host=args.host).start()
    # A redrive from the dashboard runs its unsuccessful step again (replayed,
    # see fakeaws.redrive) and ends by itself, as a real redrive would.
    server.app.configure(redrive={"replay": True, "replay_seconds": 8.0})
    try:
        config = Config(
            connect_timeout=2,
            read_timeout=10,
            retries={"mode": "standard", "total_max_attempts": 2},
        )
        # The endpoint checks no signature, but botocore will not send an
        # unsigned request.
        session = boto3.session.Session(
            aws_access_key_id="demo",
            aws_secret_access_key="demo",  # noqa: S106
        )
        client = session.client(
            "stepfunctions", endpoint_url=server.url, region_name=args.region, config=config
        )
        traffics = [
            Traffic(client, rng=random.Random(args.seed), map_runs=server.app.map_runs.create)
        ]
        if not args.one_account:
            # The second account: its own credentials, as a caller there would have.
            sts = session.client("sts", endpoint_url=server.url, region_name=OTHER_REGION)
            creds = sts.assume_role(RoleArn=READER_ROLE, RoleSessionName="demo-traffic")[
                "Credentials"
            ]
            other = session.client(
                "stepfunctions",
                endpoint_url=server.url,
                region_name=OTHER_REGION,
                config=config,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
            seed = None if args.seed is None else args.seed + 1
            traffics.append(
                Traffic(other, rng=random.Random(seed), workflows=OTHER_ACCOUNT_WORKFLOWS)
            )
        names = []
        for traffic in traffics:
            names.append(f"{traffic.region}: {', '.join(traffic.seed())}")
            traffic.first_batch()
        # bin/run waits for this line: the endpoint is up and has executions.
        print(f"demo: Step Functions endpoint on {server.url} ({'; '.join(names)})", flush=True)
        threads = [threading.Thread(target=t.run, args=(stop,), daemon=True) for t in traffics]
        for thread in threads:
            thread.start()
        # Woken now and then, so that the signal handler always gets to run.
        while not stop.wait(0.5):
            pass
        # Whatever still hangs after the grace (a call, the endpoint's own
        # shutdown), the process is gone soon after: a stop never waits long.
        watchdog = threading.Timer(STOP_GRACE + 2.0, _exit_now)
        watchdog.daemon = True
        watchdog.start()
        # A thread in the middle of a call to the endpoint gets a moment to
        # finish it; Ctrl-C never waits for more (they are daemons).
        deadline = time.monotonic() + STOP_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for traffic in traffics:
            log.info("stopping: %s", traffic.summary())
    finally:
        server.stop()
    return 0


def _exit_now() -> None:
    """Nothing here may wait: not logging (its lock may be held by a thread
    that hangs), not a write to a pipe nobody reads."""
    message = f"demo: still stopping {STOP_GRACE + 2.0:.0f} s after the signal: exiting now\n"
    with contextlib.suppress(OSError):
        fd = sys.stderr.fileno()
        os.set_blocking(fd, False)
        os.write(fd, message.encode())
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
