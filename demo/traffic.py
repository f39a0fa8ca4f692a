"""Keeps the demo endpoint busy, as a team's callers would.

`Traffic` creates the state machines of workflows.py, starts a first batch
that shows every outcome (success, failure with error and cause, time-out,
an hour-long run), then keeps starting executions: briskly for the first ten
minutes (a few hundred executions), calmer afterwards. A failed call is
logged and skipped; nothing stops the loop but its stop event.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .workflows import CANARY_ALIAS, CANARY_WEIGHT, ROLE_ARN, WORKFLOWS, Input, Workflow

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

log = logging.getLogger("demo")

# Starts per workflow in the first batch: about 20 seconds' worth of traffic.
FIRST_BATCH_SECONDS = 20.0
# Brisk for this long, then CALM_FACTOR times slower.
BUSY_SECONDS = 600.0
CALM_FACTOR = 4.0
# How often the loop says how many executions it started.
REPORT_EVERY = 60.0


class Traffic:
    def __init__(
        self,
        client: SFNClient,
        *,
        rng: random.Random | None = None,
        workflows: Sequence[Workflow] = WORKFLOWS,
        clock: Callable[[], float] = time.monotonic,
        busy_seconds: float = BUSY_SECONDS,
        map_runs: Callable[..., object] | None = None,
    ) -> None:
        self.client = client
        # Starts the Map Run of a workflow that has one (fakeaws's MapRuns.create).
        self.map_runs = map_runs
        self.region = client.meta.region_name
        self.rng = rng or random.Random()
        self.workflows = tuple(workflows)
        self.clock = clock
        self.busy_seconds = busy_seconds
        self.state_machines: dict[str, str] = {}
        # What callers start, when not the state machine: its canary alias.
        self.start_arns: dict[str, str] = {}
        self.started: Counter[str] = Counter()
        self.failed_calls = 0
        self._names: set[str] = set()
        self._began = clock()
        self._due: dict[str, float] = {}
        self._reported = self._began

    # --- Setting up ------------------------------------------------------------------

    def seed(self) -> dict[str, str]:
        """Create the state machines that do not exist yet; returns name -> ARN."""
        existing: dict[str, str] = {}
        for page in self.client.get_paginator("list_state_machines").paginate():
            for sm in page["stateMachines"]:
                existing[sm["name"]] = sm["stateMachineArn"]
        for wf in self.workflows:
            arn = existing.get(wf.name)
            if arn is None:
                arn = self.client.create_state_machine(
                    name=wf.name,
                    definition=json.dumps(wf.definition(self.region)),
                    roleArn=ROLE_ARN,
                    tags=[{"key": "team", "value": "checkout"}],
                )["stateMachineArn"]
                log.info("created the state machine %s", arn)
            self.state_machines[wf.name] = arn
            if wf.canary is not None:
                self.start_arns[wf.name] = self._canary(wf, arn)
        return dict(self.state_machines)

    def _canary(self, wf: Workflow, arn: str) -> str:
        """Versions 1 and 2 of `wf` and its alias (made once); the alias's ARN."""
        assert wf.canary is not None
        alias_arn = f"{arn}:{CANARY_ALIAS}"
        aliases = self.client.list_state_machine_aliases(stateMachineArn=arn)
        if any(a["stateMachineAliasArn"] == alias_arn for a in aliases["stateMachineAliases"]):
            return alias_arn
        published = []
        for definition, description in (
            (wf.definition, "the current payment provider"),
            (wf.canary, "the new payment provider"),
        ):
            self.client.update_state_machine(
                stateMachineArn=arn, definition=json.dumps(definition(self.region))
            )
            published.append(
                self.client.publish_state_machine_version(
                    stateMachineArn=arn, description=description
                )["stateMachineVersionArn"]
            )
        self.client.create_state_machine_alias(
            name=CANARY_ALIAS,
            description=f"what callers start: {CANARY_WEIGHT} % on the new provider",
            routingConfiguration=[
                {"stateMachineVersionArn": published[0], "weight": 100 - CANARY_WEIGHT},
                {"stateMachineVersionArn": published[1], "weight": CANARY_WEIGHT},
            ],
        )
        log.info("published %s and the alias %s", ", ".join(published), alias_arn)
        return alias_arn

    def first_batch(self) -> list[str]:
        """Start about FIRST_BATCH_SECONDS of traffic at once, including one
        unhappy run per workflow that has one, so the list is not empty and
        shows every outcome from the first seconds."""
        arns = []
        for wf in self.workflows:
            count = max(1, round(FIRST_BATCH_SECONDS / wf.every))
            payloads = [self._input(wf) for _ in range(count)]
            if wf.unhappy is not None:
                payloads[-1] = wf.unhappy(payloads[-1])
            for payload in payloads:
                arn = self.start(wf, payload)
                if arn:
                    arns.append(arn)
        return arns

    # --- Traffic ---------------------------------------------------------------------

    def start(self, wf: Workflow, payload: Input | None = None) -> str | None:
        """Start one execution of `wf`; None (and a log line) when that fails."""
        try:
            sm_arn = self.state_machines.get(wf.name) or self.seed()[wf.name]
            payload = payload if payload is not None else self._input(wf)
            arn = self.client.start_execution(
                stateMachineArn=self.start_arns.get(wf.name, sm_arn),
                name=self._name(wf),
                input=json.dumps(payload),
            )["executionArn"]
            if wf.map_run is not None and self.map_runs is not None:
                self.map_runs(arn, **wf.map_run(payload))
        except Exception as exc:
            # Whatever the endpoint or the network did, the demo goes on.
            self.failed_calls += 1
            log.warning("could not start a %s execution: %s", wf.name, exc)
            return None
        self.started[wf.name] += 1
        log.debug("started %s", arn)
        return arn

    def step(self) -> float:
        """Start what is due; returns the seconds until something is due again."""
        now = self.clock()
        for wf in self.workflows:
            due = self._due.setdefault(wf.name, now + self._gap(wf, now))
            if due <= now:
                self.start(wf)
                self._due[wf.name] = now + self._gap(wf, now)
        if now - self._reported >= REPORT_EVERY:
            self._reported = now
            log.info("%s", self.summary())
        return max(0.0, min(self._due.values()) - now)

    def run(self, stop: threading.Event) -> None:
        """Start executions until `stop` is set."""
        while not stop.is_set():
            try:
                wait = self.step()
            except Exception:
                log.exception("the demo traffic loop failed; going on")
                wait = 1.0
            stop.wait(min(wait, 1.0))

    def summary(self) -> str:
        per = ", ".join(f"{name} {n}" for name, n in sorted(self.started.items()))
        failed = f"; {self.failed_calls} calls failed" if self.failed_calls else ""
        return f"{sum(self.started.values())} executions started ({per}){failed}"

    # --- Details ---------------------------------------------------------------------

    def _gap(self, wf: Workflow, now: float) -> float:
        mean = wf.every if now - self._began < self.busy_seconds else wf.every * CALM_FACTOR
        return mean * self.rng.uniform(0.5, 1.5)

    def _input(self, wf: Workflow) -> Input:
        return wf.make_input(self.rng, dt.datetime.now(dt.UTC))

    def _name(self, wf: Workflow) -> str:
        """`order-20261126-1542-7f3a`: what a caller that names its runs would send."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
        while True:
            name = f"{wf.prefix}-{stamp}-{self.rng.randrange(16**4):04x}"
            if name not in self._names:
                self._names.add(name)
                return name
