"""What `manage.py seed` writes: a year of executions of twenty state machines
as a busy team would have them, and histories with the events AWS sends.

Everything comes from one `random.Random`, so that a seed and a clock give
the same rows every time. Rows are tuples in the column order of the
`*_COLUMNS` lists (the seeder COPYs them); payloads are JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from executions.event_types import DETAILS_KEY

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/StepFunctions-prod"
# AWS's limit for an input, an output or a state's payload.
MAX_PAYLOAD = 256 * 1024

EXECUTION_COLUMNS = (
    "id",
    "arn",
    "name",
    "state_machine_id",
    "status",
    "start_date",
    "stop_date",
    "input",
    "output",
    "error",
    "cause",
    "redrive_count",
    "redrive_date",
    "redrive_status",
    "redrive_status_reason",
    "map_run_arn",
    "state_machine_version_arn",
    "state_machine_alias_arn",
    "last_event_id",
    "history_complete",
    "needs_describe",
    "described_at",
    "synced_at",
    "sync_due_at",
    "sync_error",
    "sync_failures",
    "failed_state",
)
EVENT_COLUMNS = (
    "execution_id",
    "event_id",
    "previous_event_id",
    "timestamp",
    "type",
    "details_key",
    "details",
)


@dataclass(frozen=True)
class Step:
    """One state of a machine's happy path."""

    kind: str  # Task, Pass, Choice, Wait, Map
    name: str
    resource: str = ""  # a Task's resource type ("lambda", "dynamodb", ...)
    # Share of the execution's duration spent here (normalised per machine).
    weight: float = 1.0


@dataclass(frozen=True)
class Machine:
    name: str
    prefix: str  # of execution names
    share: float  # of all executions
    payload: str  # which input/output maker
    steps: tuple[Step, ...]
    # "stamped": order-20260314-1542-7f3a; "uuid": what the console and SDKs
    # default to; "scheduled": one run per tick of a schedule.
    naming: str = "stamped"
    region: str = "us-east-1"
    # Median and spread (lognormal sigma) of the duration, in seconds.
    median_seconds: float = 5.0
    sigma: float = 0.6
    failed: float = 0.03
    timed_out: float = 0.002
    aborted: float = 0.004
    errors: tuple[str, ...] = ("Lambda.ServiceException", "States.TaskFailed")
    versioned: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:states:{self.region}:{ACCOUNT}:stateMachine:{self.name}"


def _task(name: str, resource: str = "lambda", weight: float = 1.0) -> Step:
    return Step("Task", name, resource, weight)


MACHINES: tuple[Machine, ...] = (
    Machine(
        "OrderPipeline",
        "order",
        0.17,
        "order",
        (
            _task("ValidateOrder"),
            _task("ReserveStock", "dynamodb"),
            _task("ChargeCard", weight=3),
            Step("Choice", "NeedsShipping"),
            _task("CreateShipment", "sqs"),
            _task("NotifyCustomer", "sns"),
        ),
        median_seconds=6,
        failed=0.025,
        errors=("Payment.Declined", "Lambda.ServiceException", "States.Timeout"),
        versioned=True,
    ),
    Machine(
        "PaymentCapture",
        "payment",
        0.13,
        "payment",
        (
            _task("Authorize", weight=2),
            _task("Capture", weight=2),
            _task("RecordLedger", "dynamodb"),
        ),
        median_seconds=3,
        failed=0.06,
        errors=("Payment.Declined", "Payment.ProviderUnavailable", "States.Timeout"),
    ),
    Machine(
        "ImageResize",
        "img",
        0.11,
        "image",
        (_task("ReadMetadata", "s3"), Step("Map", "ResizeEach", "lambda", 4), _task("Publish")),
        naming="uuid",
        median_seconds=2,
        failed=0.01,
        errors=("Image.UnsupportedFormat", "Lambda.TooManyRequestsException"),
    ),
    Machine(
        "FraudCheck",
        "fraud",
        0.09,
        "payment",
        (_task("ScoreTransaction", "sagemaker"), Step("Choice", "RiskLevel"), _task("Decide")),
        median_seconds=1.5,
        failed=0.01,
        errors=("SageMaker.ModelError", "States.TaskFailed"),
    ),
    Machine(
        "InvoiceGenerator",
        "invoice",
        0.08,
        "order",
        (_task("LoadAccount", "dynamodb"), _task("RenderPdf", weight=4), _task("StorePdf", "s3")),
        median_seconds=9,
        failed=0.015,
        errors=("Render.TemplateError", "Lambda.Unknown"),
    ),
    Machine(
        "InventorySync",
        "inventory-sync",
        0.06,
        "batch",
        (_task("FetchChanges"), Step("Map", "ApplyChanges", "dynamodb", 5), _task("Commit")),
        naming="scheduled",
        median_seconds=40,
        failed=0.02,
        errors=("Upstream.Unavailable", "DynamoDB.ProvisionedThroughputExceededException"),
    ),
    Machine(
        "ShipmentTracker",
        "shipment",
        0.05,
        "order",
        (_task("PollCarrier"), Step("Wait", "WaitForUpdate", weight=20), _task("UpdateStatus")),
        median_seconds=5 * 3600,
        sigma=1.0,
        failed=0.01,
        timed_out=0.01,
        errors=("Carrier.Unreachable",),
    ),
    Machine(
        "RefundProcessor",
        "refund",
        0.04,
        "payment",
        (_task("CheckEligibility"), _task("IssueRefund", weight=3), _task("NotifyCustomer", "sns")),
        median_seconds=4,
        failed=0.04,
        errors=("Refund.NotEligible", "Payment.ProviderUnavailable"),
    ),
    Machine(
        "SubscriptionRenewal",
        "renewal",
        0.04,
        "payment",
        (_task("LoadSubscription", "dynamodb"), _task("ChargeCard", weight=3), _task("Extend")),
        median_seconds=4,
        failed=0.05,
        errors=("Payment.Declined", "Payment.CardExpired"),
        region="eu-west-1",
    ),
    Machine(
        "EmailDigest",
        "digest",
        0.035,
        "batch",
        (_task("CollectEvents"), _task("RenderEmail"), _task("Send", "ses")),
        naming="scheduled",
        median_seconds=20,
        errors=("SES.Throttling",),
        region="eu-west-1",
    ),
    Machine(
        "UserOnboarding",
        "onboard",
        0.03,
        "user",
        (
            _task("CreateAccount", "dynamodb"),
            _task("SendWelcome", "ses"),
            Step("Wait", "WaitOneDay", weight=40),
            _task("SendTips", "ses"),
        ),
        median_seconds=86400,
        sigma=0.1,
        failed=0.005,
        aborted=0.02,
        errors=("SES.MessageRejected",),
    ),
    Machine(
        "KycVerification",
        "kyc",
        0.02,
        "user",
        (_task("CollectDocuments"), _task("HumanReview", "sqs", 30), _task("Record", "dynamodb")),
        median_seconds=6 * 3600,
        sigma=1.0,
        failed=0.02,
        timed_out=0.03,
        errors=("Kyc.Rejected", "States.HeartbeatTimeout"),
    ),
    Machine(
        "DataExport",
        "export",
        0.02,
        "batch",
        (_task("PlanExport"), Step("Map", "ExportPartition", "glue", 6), _task("Manifest", "s3")),
        naming="uuid",
        median_seconds=240,
        sigma=0.9,
        failed=0.04,
        errors=("Glue.ConcurrentRunsExceededException", "States.TaskFailed"),
    ),
    Machine(
        "CatalogImport",
        "catalog-import",
        0.015,
        "catalog",
        (_task("Validate"), Step("Map", "ImportBatch", "dynamodb", 5), _task("Reindex", "ecs", 2)),
        median_seconds=180,
        failed=0.06,
        errors=("Catalog.InvalidRow", "DynamoDB.ProvisionedThroughputExceededException"),
    ),
    Machine(
        "ApprovalWorkflow",
        "approval",
        0.012,
        "user",
        (_task("RequestApproval", "sqs"), _task("WaitForApprover", "sqs", 50), _task("Apply")),
        naming="uuid",
        median_seconds=1.5 * 86400,
        sigma=0.7,
        failed=0.01,
        timed_out=0.02,
        aborted=0.06,
        errors=("Approval.Rejected",),
    ),
    Machine(
        "ReportBuilder",
        "report",
        0.012,
        "batch",
        (_task("Query", "athena", 4), _task("Render"), _task("Deliver", "s3")),
        median_seconds=90,
        errors=("Athena.QueryFailed",),
        region="eu-west-1",
    ),
    Machine(
        "LogArchiver",
        "log-archive",
        0.01,
        "batch",
        (_task("ListObjects", "s3"), Step("Map", "CompressEach", "lambda", 4), _task("Cleanup")),
        naming="scheduled",
        median_seconds=600,
        errors=("S3.SlowDown",),
    ),
    Machine(
        "ChurnScoring",
        "churn",
        0.005,
        "batch",
        (_task("Extract", "glue", 3), _task("Score", "sagemaker", 4), _task("Publish")),
        naming="scheduled",
        median_seconds=1800,
        failed=0.05,
        errors=("SageMaker.ModelError", "Glue.JobRunFailed"),
    ),
    Machine(
        "NightlyEtl",
        "nightly-etl",
        0.002,
        "batch",
        (_task("Extract", "glue", 4), _task("Transform", "glue", 6), _task("Load", "redshift", 3)),
        naming="scheduled",
        median_seconds=5400,
        sigma=0.3,
        failed=0.08,
        timed_out=0.02,
        errors=("Glue.JobRunFailed", "Redshift.ConnectionError"),
    ),
    Machine(
        "MlTraining",
        "train",
        0.001,
        "batch",
        (_task("Prepare", "glue"), _task("Train", "sagemaker", 10), _task("Evaluate", "sagemaker")),
        median_seconds=4 * 3600,
        sigma=0.5,
        failed=0.08,
        timed_out=0.05,
        aborted=0.05,
        errors=("SageMaker.CapacityError", "Training.Diverged"),
    ),
)

RESOURCES = {
    "lambda": "arn:aws:states:::lambda:invoke",
    "dynamodb": "arn:aws:states:::dynamodb:updateItem",
    "sqs": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
    "sns": "arn:aws:states:::sns:publish",
    "s3": "arn:aws:states:::aws-sdk:s3:getObject",
    "ses": "arn:aws:states:::aws-sdk:sesv2:sendEmail",
    "sagemaker": "arn:aws:states:::sagemaker:createTransformJob.sync",
    "glue": "arn:aws:states:::glue:startJobRun.sync",
    "athena": "arn:aws:states:::athena:startQueryExecution.sync",
    "ecs": "arn:aws:states:::ecs:runTask.sync",
    "redshift": "arn:aws:states:::aws-sdk:redshiftdata:executeStatement",
}
PEOPLE = ("alice", "bob", "chen", "dmitri", "oncall-sre", "priya")


def definition(machine: Machine) -> str:
    """Amazon States Language for the machine's happy path."""
    states: dict[str, Any] = {}
    names = [s.name for s in machine.steps]
    for i, step in enumerate(machine.steps):
        nxt: dict[str, Any] = {"Next": names[i + 1]} if i + 1 < len(names) else {"End": True}
        if step.kind == "Task":
            states[step.name] = {
                "Type": "Task",
                "Resource": RESOURCES.get(step.resource, RESOURCES["lambda"]),
                "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2}],
                **nxt,
            }
        elif step.kind == "Map":
            states[step.name] = {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "StartAt": "Process",
                    "States": {
                        "Process": {"Type": "Task", "Resource": RESOURCES["lambda"], "End": True}
                    },
                },
                **nxt,
            }
        elif step.kind == "Choice":
            target = names[i + 1] if i + 1 < len(names) else "Done"
            states[step.name] = {
                "Type": "Choice",
                "Choices": [{"Variable": "$.skip", "BooleanEquals": True, "Next": "Done"}],
                "Default": target,
            }
        elif step.kind == "Wait":
            states[step.name] = {"Type": "Wait", "SecondsPath": "$.waitSeconds", **nxt}
        else:
            states[step.name] = {"Type": step.kind, **nxt}
    states.setdefault("Done", {"Type": "Succeed"})
    return json.dumps(
        {"Comment": f"{machine.name} (seeded)", "StartAt": names[0], "States": states}
    )


# --- Payloads ---------------------------------------------------------------------


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _pick(rng: random.Random, choices: tuple[str, ...]) -> str:
    return choices[int(rng.random() * len(choices))]


def _items(rng: random.Random, n: int) -> str:
    # One draw per item, its bits shared out (rng.randrange costs ~1 µs).
    out = []
    for _ in range(n):
        x = rng.getrandbits(48)
        out.append(
            f'{{"sku":"SKU-{x % 100000:05d}","qty":{(x >> 17) % 5 + 1},'
            f'"price":{((x >> 20) % 49800 + 199) / 100}}}'
        )
    return ",".join(out)


def _item_count(rng: random.Random) -> int:
    # Most orders are small, a few are wholesale.
    r = rng.random()
    if r < 0.8:
        return 1 + int(r * 5)
    if r < 0.98:
        return 5 + int((r - 0.8) * 200)
    return 100 + int((r - 0.98) * 20000)


def make_input(kind: str, rng: random.Random, n: int) -> str:
    x = rng.getrandbits(64)
    if kind == "order":
        return (
            f'{{"orderId":"ORD-{n:09d}","customerId":"C{x % 10**7:07d}",'
            f'"currency":"USD","items":[{_items(rng, _item_count(rng))}],'
            f'"shipping":{{"method":"{("ground", "express", "pickup")[(x >> 24) % 3]}",'
            f'"country":"{("US", "US", "US", "CA", "GB", "DE")[(x >> 26) % 6]}",'
            f'"postcode":"{(x >> 30) % 90000 + 10000}"}},"skip":false}}'
        )
    if kind == "payment":
        return (
            f'{{"paymentId":"pay_{x:016x}","orderId":"ORD-{n:09d}",'
            f'"amount":{(x >> 8) % 250000 / 100 + 1},"currency":"USD",'
            f'"card":{{"brand":"{("visa", "mastercard", "amex")[(x >> 28) % 3]}",'
            f'"last4":"{(x >> 32) % 10000:04d}"}},"idempotencyKey":"{_hex(rng, 32)}"}}'
        )
    if kind == "image":
        return (
            f'{{"bucket":"media-uploads-prod","key":"uploads/{x:016x}.jpg",'
            f'"sizes":[64,256,1024,2048],"contentType":"image/jpeg",'
            f'"bytes":{(x >> 20) % 12_000_000 + 20_000}}}'
        )
    if kind == "user":
        return (
            f'{{"userId":"usr_{x % 2**48:012x}","email":"user{n}@example.com",'
            f'"plan":"{("free", "team", "enterprise")[(x >> 50) % 3]}",'
            f'"locale":"{("en-US", "en-GB", "de-DE", "fr-FR")[(x >> 52) % 4]}",'
            '"waitSeconds":86400}'
        )
    if kind == "catalog":
        # A file to import and a sample of its rows.
        rows = 20 + x % 200
        return (
            f'{{"source":"s3://catalog-drops/{x:016x}.csv","rows":{rows * 37},"sample":['
            + ",".join(
                f'{{"sku":"SKU-{(x + i * 7919) % 100000:05d}","title":"Item {i} of the drop",'
                f'"price":{(x + i * 104729) % 49800 / 100 + 1.99:.2f}}}'
                for i in range(rows)
            )
            + "]}"
        )
    # batch jobs: a date and a list of partitions
    return (
        f'{{"runDate":"{n % 28 + 1:02d}","jobId":"{x:016x}","partitions":['
        + ",".join(f'"p={i:04d}"' for i in range(1 + x % 60))
        + '],"items":[1,2,3],"dryRun":false}'
    )


def make_output(kind: str, rng: random.Random, n: int) -> str:
    x = rng.getrandbits(64)
    if kind == "order":
        return (
            f'{{"orderId":"ORD-{n:09d}","status":"SHIPPED","trackingNumber":"1Z{x:016x}",'
            f'"charged":{x % 250000 / 100 + 1}}}'
        )
    if kind == "payment":
        return f'{{"status":"CAPTURED","transactionId":"txn_{x:016x}","ledgerEntry":{x >> 34}}}'
    if kind == "image":
        return (
            '{"variants":['
            + ",".join(f'{{"size":{s},"key":"resized/{s}/{x:016x}.jpg"}}' for s in (64, 256, 1024))
            + "]}"
        )
    if kind == "user":
        return f'{{"userId":"usr_{x % 2**48:012x}","status":"DONE"}}'
    return (
        '{"files":['
        + ",".join(f'"s3://exports/{x:016x}/part-{i:05d}.parquet"' for i in range(1 + x % 40))
        + f'],"rows":{x >> 37}}}'
    )


def padded(payload: str, size: int) -> str:
    """`payload` (a JSON object) grown to about `size` bytes with a realistic
    list of records, never past AWS's limit."""
    size = min(size, MAX_PAYLOAD - 64)
    record = '{"line":"SKU-00042;Widget, blue;19.99;in stock"},'
    room = size - len(payload) - 20
    if room <= len(record):
        return payload
    rows = (record * (room // len(record)))[:-1]
    return f'{payload[:-1]},"records":[{rows}]}}'


def make_cause(error: str, rng: random.Random, state: str) -> str:
    if error.startswith("States."):
        if error == "States.Timeout":
            return f"The state '{state}' timed out after {rng.choice((30, 60, 300))} seconds."
        return (
            f"An error occurred while executing the state '{state}' (entered at the event "
            f"id #{rng.randint(2, 20)}). The JSONPath '$.amount' specified for the field "
            "'Amount.$' could not be found in the input '{\"orderId\":\"ORD-1\"}'"
        )
    frames = [
        f'  File "/var/task/{name}.py", line {rng.randint(10, 400)}, in {func}\n'
        for name, func in (("app", "handler"), ("service", "process"), ("client", "call"))
    ]
    trace = json.dumps(frames[: rng.randint(1, 3)] * rng.randint(1, 12))
    message = {
        "Payment.Declined": "The card was declined (insufficient_funds)",
        "Payment.CardExpired": "The card expired",
        "Payment.ProviderUnavailable": "Provider returned 503 Service Unavailable",
        "Lambda.ServiceException": "Lambda is unable to process the request",
    }.get(error, f"{error.split('.')[-1]} while processing {state}")
    return (
        f'{{"errorMessage":"{message}","errorType":"{error.split(".")[-1]}",'
        f'"requestId":"{uuid.UUID(int=rng.getrandbits(128))}","stackTrace":{trace}}}'
    )


# --- Executions -------------------------------------------------------------------


@dataclass
class Seeded:
    """What the history generator needs of an execution the row stream made."""

    id: int
    machine: Machine
    status: str
    start: dt.datetime
    stop: dt.datetime | None
    input: str
    output: str | None
    error: str | None
    cause: str | None


@dataclass
class Plan:
    executions: int
    with_history: int
    now: dt.datetime
    seed: int = 1
    days: int = 365
    # At least about this many running executions (0: as many as the durations
    # give, ~370 in 1,000,000). The running set follows today's traffic, not
    # the size of the cache: a 10,000-execution cache may run as many.
    running: int = 0
    # Filled by the row stream.
    histories: list[Seeded] = field(default_factory=list)
    # Executions stopped from the dashboard: (id, when, error, cause).
    stops: list[tuple[int, dt.datetime, str, str]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)


def start_times(plan: Plan, rng: random.Random) -> list[float]:
    """Seconds before `now`, oldest first: traffic grows over the year, is
    busier on weekdays and in (European and American) office hours."""
    span = plan.days * 86400.0
    out: list[float] = []
    now_ts = plan.now.timestamp()
    while len(out) < plan.executions:
        age = rng.random() * span
        ts = now_ts - age
        hour = (ts // 3600) % 24
        weekday = (ts // 86400 + 4) % 7  # 1970-01-01 was a Thursday
        keep = (0.5 + 0.5 * (1 - age / span)) * (1.0 if 7 <= hour <= 22 else 0.45)
        keep *= 0.6 if weekday >= 5 else 1.0
        if rng.random() < keep:
            out.append(age)
    out.sort(reverse=True)
    return out


def _machine_picker(rng: random.Random) -> Iterator[Machine]:
    total = sum(m.share for m in MACHINES)
    cumulative: list[float] = []
    acc = 0.0
    for m in MACHINES:
        acc += m.share / total
        cumulative.append(acc)
    while True:
        r = rng.random()
        for m, c in zip(MACHINES, cumulative, strict=True):
            if r <= c:
                yield m
                break
        else:
            yield MACHINES[-1]


class _Names:
    """Execution names, unique per state machine (rows come oldest first, so
    only names of the same second need remembering)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.recent: dict[str, tuple[str, set[str]]] = {}

    def make(self, machine: Machine, start: dt.datetime) -> str:
        if machine.naming == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if machine.naming == "scheduled":
            name = f"{machine.prefix}-{start:%Y%m%dT%H%M%S}Z"
        else:
            name = f"{machine.prefix}-{start:%Y%m%d-%H%M}-{_hex(self.rng, 4)}"
        key = name[: name.rfind("-")] if machine.naming == "stamped" else name
        last_key, used = self.recent.get(machine.name, ("", set()))
        if last_key != key:
            used = set()
            self.recent[machine.name] = (key, used)
        base, n = name, 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        return name


def execution_rows(
    plan: Plan, machine_ids: dict[str, int], rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    """The executions, oldest first, ids 1..N in that order (as a sync that ran
    all year would have inserted them)."""
    now = plan.now
    machines = _machine_picker(rng)
    names = _Names(rng)
    history_share = plan.with_history / max(plan.executions, 1)
    counts: dict[str, int] = {}
    # Forced running ones come from the newest executions.
    window = min(plan.executions, 3 * plan.running)
    force_from = plan.executions - window
    force_share = plan.running / window if window else 0.0
    for pk, age in enumerate(start_times(plan, rng), start=1):
        m = next(machines)
        start = now - dt.timedelta(milliseconds=int(age * 1000))  # AWS keeps ms
        duration = m.median_seconds * math.exp(rng.gauss(0, m.sigma))
        r = rng.random()
        error = cause = output = None
        failed_state = ""
        redrive_count = 0
        redrive_date = None
        if duration >= age or (pk > force_from and rng.random() < force_share):
            status, stop = "RUNNING", None
        elif r < m.failed:
            status = "FAILED"
            error = rng.choice(m.errors)
            failed_state = rng.choice(m.steps).name
            cause = make_cause(error, rng, failed_state)
        elif r < m.failed + m.timed_out:
            status, error = "TIMED_OUT", "States.Timeout"
            failed_state = max(m.steps, key=lambda step: step.weight).name
            cause = f"The execution timed out after {int(duration)} seconds."
        elif r < m.failed + m.timed_out + m.aborted:
            status = "ABORTED"
            if rng.random() < 0.3:
                error, cause = "Stopped.Manually", f"stuck, see INC-{rng.randint(1000, 9999)}"
        else:
            status = "SUCCEEDED"
        if status != "RUNNING":
            stop = start + dt.timedelta(seconds=duration)
            if status == "SUCCEEDED" and rng.random() < 0.002:
                # Failed once, redriven, then succeeded.
                redrive_count = rng.choice((1, 1, 1, 2))
                redrive_date = start + dt.timedelta(seconds=duration * 0.6)
        counts[status] = counts.get(status, 0) + 1
        if status == "ABORTED" and error and cause and stop is not None:
            plan.stops.append((pk, stop - dt.timedelta(seconds=0.4), error, cause))
        name = names.make(m, start)
        payload = make_input(m.payload, rng, pk)
        roll = rng.random()
        if roll < 0.00005:
            payload = padded(payload, MAX_PAYLOAD)
        elif roll < 0.003:
            payload = padded(payload, rng.randint(20_000, 120_000))
        if status == "SUCCEEDED":
            output = make_output(m.payload, rng, pk)
        if status in ("RUNNING", "SUCCEEDED"):
            redrive_status = "NOT_REDRIVABLE"
            reason = f"Execution is {status} and cannot be redriven"
        elif age < 14 * 86400:
            redrive_status, reason = "REDRIVABLE", ""
        else:
            redrive_status = "NOT_REDRIVABLE"
            reason = "Execution history is older than 14 days and cannot be redriven"
        with_history = status == "RUNNING" or rng.random() < history_share
        if with_history:
            plan.histories.append(Seeded(pk, m, status, start, stop, payload, output, error, cause))
        synced = now - dt.timedelta(seconds=rng.uniform(1, 60))
        described = stop or start
        yield (
            pk,
            f"arn:aws:states:{m.region}:{ACCOUNT}:execution:{m.name}:{name}",
            name,
            machine_ids[m.name],
            status,
            start,
            stop,
            payload,
            output,
            error,
            cause,
            redrive_count,
            redrive_date,
            redrive_status,
            reason,
            "",
            f"{m.arn}:{1 + int((plan.days * 86400 - age) // (30 * 86400))}" if m.versioned else "",
            "",
            0,  # last_event_id: set when its history is written
            False,
            False,
            described,
            synced if status == "RUNNING" else described + dt.timedelta(seconds=2),
            synced + dt.timedelta(seconds=30) if status == "RUNNING" else None,
            "",
            0,
            failed_state,
        )
    plan.statuses = counts


# --- Histories --------------------------------------------------------------------


class _Events:
    """Builds one execution's events as COPY rows."""

    def __init__(self, execution_id: int, start: dt.datetime) -> None:
        self.execution_id = execution_id
        self.start = start
        self.rows: list[tuple[Any, ...]] = []
        self.last = 0

    def add(self, event_type: str, at: float, details: dict[str, Any] | None = None) -> int:
        event_id = len(self.rows) + 1
        self.rows.append(
            (
                self.execution_id,
                event_id,
                self.last,
                self.start + dt.timedelta(seconds=at),
                event_type,
                DETAILS_KEY[event_type] if details is not None else "",
                json.dumps(details) if details is not None else None,
            )
        )
        self.last = event_id
        return event_id


def _task_events(
    ev: _Events,
    step: Step,
    at: float,
    span: float,
    data: str,
    rng: random.Random,
    fail: tuple[str, str] | None = None,
    stop_midway: bool = False,
) -> None:
    """A Task state: entered, scheduled, started, (retried,) succeeded or failed, exited."""
    resource = RESOURCES.get(step.resource, RESOURCES["lambda"]).split(":::")[-1]
    kind, _, action = resource.partition(":")
    task = {"resourceType": kind, "resource": action or "invoke"}
    ev.add(
        "TaskStateEntered",
        at,
        {"name": step.name, "input": data, "inputDetails": {"truncated": False}},
    )
    ev.add(
        "TaskScheduled",
        at + span * 0.01,
        {
            **task,
            "region": "us-east-1",
            "parameters": json.dumps({"FunctionName": step.name, "Payload": {"ref": "$"}}),
            "timeoutInSeconds": 300,
        },
    )
    ev.add("TaskStarted", at + span * 0.02, dict(task))
    if stop_midway:
        return
    if fail is None and rng.random() < 0.04:
        # A transient failure, retried by the state's Retry.
        ev.add(
            "TaskFailed",
            at + span * 0.3,
            {**task, "error": "Lambda.TooManyRequestsException", "cause": "Rate exceeded"},
        )
        ev.add("TaskScheduled", at + span * 0.35, {**task, "region": "us-east-1"})
        ev.add("TaskStarted", at + span * 0.36, dict(task))
    if fail is not None:
        ev.add("TaskFailed", at + span * 0.98, {**task, "error": fail[0], "cause": fail[1]})
        return
    out = f'{{"step":"{step.name}","ok":true,"ref":"{_hex(rng, 12)}"}}'
    ev.add(
        "TaskSucceeded",
        at + span * 0.97,
        {**task, "output": out, "outputDetails": {"truncated": False}},
    )
    ev.add(
        "TaskStateExited",
        at + span * 0.99,
        {"name": step.name, "output": out, "outputDetails": {"truncated": False}},
    )


def _simple_state(ev: _Events, step: Step, at: float, span: float, data: str, open_: bool) -> None:
    ev.add(
        f"{step.kind}StateEntered",
        at,
        {"name": step.name, "input": data, "inputDetails": {"truncated": False}},
    )
    if not open_:
        ev.add(
            f"{step.kind}StateExited",
            at + span * 0.99,
            {"name": step.name, "output": data, "outputDetails": {"truncated": False}},
        )


def _map_state(
    ev: _Events, step: Step, at: float, span: float, data: str, rng: random.Random, open_: bool
) -> None:
    n = rng.randint(2, 4)
    ev.add(
        "MapStateEntered",
        at,
        {"name": step.name, "input": data, "inputDetails": {"truncated": False}},
    )
    started = ev.add("MapStateStarted", at + span * 0.01, {"length": n})
    inner = Step("Task", "Process", step.resource)
    for i in range(n):
        begin = at + span * (0.02 + 0.9 * i / n)
        ev.last = started
        ev.add("MapIterationStarted", begin, {"name": step.name, "index": i})
        last_open = open_ and i == n - 1
        _task_events(ev, inner, begin, span * 0.9 / n, f'{{"item":{i}}}', rng, None, last_open)
        if last_open:
            return
        ev.add("MapIterationSucceeded", begin + span * 0.9 / n, {"name": step.name, "index": i})
    ev.add("MapStateSucceeded", at + span * 0.98)
    ev.add(
        "MapStateExited",
        at + span * 0.99,
        {"name": step.name, "output": "[]", "outputDetails": {"truncated": False}},
    )


def history_rows(ex: Seeded, now: dt.datetime, rng: random.Random) -> list[tuple[Any, ...]]:
    """One execution's events, as AWS records them for its path and end."""
    m = ex.machine
    end = ((ex.stop or now) - ex.start).total_seconds()
    ev = _Events(ex.id, ex.start)
    ev.add(
        "ExecutionStarted",
        0,
        {
            "input": ex.input,
            "inputDetails": {"truncated": False},
            "roleArn": ROLE,
        },
    )
    total = sum(s.weight for s in m.steps)
    # Where an execution that did not succeed is (or stopped): a failure in a
    # Task or Map; anything else most likely in its longest state.
    if ex.status == "SUCCEEDED":
        cut = len(m.steps)
    elif ex.status == "FAILED":
        cut = rng.choice([i for i, s in enumerate(m.steps) if s.kind in ("Task", "Map")])
    else:
        cut = rng.choices(range(len(m.steps)), weights=[s.weight for s in m.steps])[0]
    at = end * 0.001
    data = ex.input if len(ex.input) < 4096 else '{"ref":"large input, see ExecutionStarted"}'
    for i, step in enumerate(m.steps):
        span = end * 0.99 * step.weight / total
        if i == cut:
            fail = (
                (ex.error or "States.TaskFailed", ex.cause or "") if ex.status == "FAILED" else None
            )
            if step.kind in ("Task", "Map") and fail is not None:
                _task_events(ev, Step("Task", step.name, step.resource), at, span, data, rng, fail)
            elif step.kind == "Map":
                _map_state(ev, step, at, span, data, rng, open_=True)
            elif step.kind == "Task":
                _task_events(ev, step, at, span, data, rng, None, stop_midway=True)
            else:
                _simple_state(ev, step, at, span, data, open_=True)
            break
        if step.kind == "Task":
            _task_events(ev, step, at, span, data, rng)
        elif step.kind == "Map":
            _map_state(ev, step, at, span, data, rng, open_=False)
        else:
            _simple_state(ev, step, at, span, data, open_=False)
        at += span
    if ex.status == "SUCCEEDED":
        ev.add(
            "ExecutionSucceeded",
            end,
            {"output": ex.output or "{}", "outputDetails": {"truncated": False}},
        )
    elif ex.status == "FAILED":
        ev.add("ExecutionFailed", end, {"error": ex.error, "cause": ex.cause})
    elif ex.status == "TIMED_OUT":
        ev.add("ExecutionTimedOut", end, {"error": ex.error, "cause": ex.cause})
    elif ex.status == "ABORTED":
        details = {"error": ex.error, "cause": ex.cause} if ex.error else {}
        ev.add("ExecutionAborted", end, details)
    return ev.rows


def big_history_rows(
    execution_id: int, start: dt.datetime, rng: random.Random, total: int = 25_000
) -> tuple[list[tuple[Any, ...]], float]:
    """A 25,000-event execution (AWS's maximum): a Map of 3,000 iterations
    whose Task sometimes fails and is retried, then a Wait/Pass/Choice loop.
    Every 500th state event carries a payload of 16 KiB up to 256 KiB.
    Returns the rows and the duration in seconds."""
    ev = _Events(execution_id, start)
    small = '{"order":1}'
    sizes = [16 * 1024 * 2**k for k in range(5)]  # 16 KiB .. 256 KiB

    def payload() -> str:
        if (len(ev.rows) + 1) % 500 == 0:
            return padded('{"batch":"reprocess"}', sizes[(len(ev.rows) // 500) % len(sizes)])
        return small

    def state(kind: str, name: str, at: float) -> None:
        ev.add(f"{kind}StateEntered", at, {"name": name, "input": payload()})
        ev.add(f"{kind}StateExited", at + 0.001, {"name": name, "output": payload()})

    ev.add(
        "ExecutionStarted",
        0,
        {"input": padded('{"batch":"reprocess"}', MAX_PAYLOAD), "roleArn": ROLE},
    )
    state("Pass", "Init", 0.01)
    ev.add("MapStateEntered", 0.03, {"name": "Fanout", "input": payload()})
    map_started = ev.add("MapStateStarted", 0.04, {"length": 3000})
    task = {"resourceType": "lambda", "resource": "invoke"}
    end_of_map = 0.0
    for i in range(3000):
        begin = 0.05 + (i // 40) * 2.0 + (i % 40) * 0.01
        ev.last = map_started
        ev.add("MapIterationStarted", begin, {"name": "Fanout", "index": i})
        ev.add("TaskStateEntered", begin + 0.001, {"name": "Work", "input": payload()})
        ev.add("TaskScheduled", begin + 0.002, {**task, "region": "us-east-1"})
        ev.add("TaskStarted", begin + 0.003, task)
        if i % 97 == 13:
            ev.add("TaskFailed", begin + 0.5, {**task, "error": "Lambda.TooManyRequestsException"})
            ev.add("TaskScheduled", begin + 0.6, {**task, "region": "us-east-1"})
            ev.add("TaskStarted", begin + 0.61, task)
        if i % 1000 == 999:
            ev.add("TaskFailed", begin + 1.5, {**task, "error": "Work.Failed", "cause": "rejected"})
            ev.add("TaskStateExited", begin + 1.501, {"name": "Work", "output": small})
            ev.add("MapIterationFailed", begin + 1.502, {"name": "Fanout", "index": i})
        else:
            ev.add("TaskSucceeded", begin + 1.5, {**task, "output": payload()})
            ev.add("TaskStateExited", begin + 1.501, {"name": "Work", "output": small})
            ev.add("MapIterationSucceeded", begin + 1.502, {"name": "Fanout", "index": i})
        end_of_map = max(end_of_map, begin + 1.502)
    ev.add("MapStateSucceeded", end_of_map)
    ev.add("MapStateExited", end_of_map + 0.001, {"name": "Fanout", "output": small})
    at = end_of_map + 0.01
    while len(ev.rows) + 6 <= total - 3:
        state("Wait", "Tick", at)
        state("Pass", "Count", at + 1.001)
        state("Choice", "More", at + 1.003)
        at += 1.01
    while len(ev.rows) + 2 <= total - 3:
        state("Pass", "Pad", at)
    state("Succeed", "Done", at)
    ev.add("ExecutionSucceeded", at + 0.002, {"output": '{"reprocessed":3000,"failed":3}'})
    return ev.rows, at + 0.002


# --- The audit and the sync's own records -------------------------------------------

STOP_COLUMNS = (
    "execution_id",
    "user_id",
    "username",
    "requested_at",
    "error",
    "cause",
    "status_before",
    "outcome",
    "aws_response",
    "request_token",
    "batch_id",
)
SYNC_RUN_COLUMNS = (
    "kind",
    "account",
    "region",
    "state_machine_id",
    "started_at",
    "finished_at",
    "api_calls",
    "rows_written",
    "ok",
    "throttled",
    "error",
    "missed_events",
    "missed_example",
)


def stop_rows(plan: Plan, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for pk, at, error, cause in plan.stops:
        yield (
            pk,
            None,
            rng.choice(PEOPLE),
            at,
            error,
            cause,
            "RUNNING",
            "STOPPED",
            json.dumps({"stopDate": at.isoformat()}),
            uuid.UUID(int=rng.getrandbits(128), version=4),
            None,
        )


def sync_run_rows(
    plan: Plan, machine_ids: dict[str, int], rng: random.Random, hours: int = 24
) -> Iterator[tuple[Any, ...]]:
    """The last day of sync work, oldest first: a listing per state machine a
    minute, a batch of executions every 20 s, discovery every 5 minutes; a
    few throttled runs."""
    now = plan.now
    regions = sorted({m.region for m in MACHINES})
    for tick in range(hours * 180, 0, -1):
        at = now - dt.timedelta(seconds=tick * 20)
        if tick % 15 == 0:
            for region in regions:
                yield _run("discover", region, None, at, {"ListStateMachines": 1}, 0, rng)
        if tick % 3 == 0:
            for m in MACHINES:
                yield _run("list", m.region, machine_ids[m.name], at, {"ListExecutions": 1}, 2, rng)
        calls = {"DescribeExecution": 20, "GetExecutionHistory": 22}
        yield _run("executions", "us-east-1", None, at, calls, 400, rng)


def _run(
    kind: str,
    region: str,
    machine_id: int | None,
    at: dt.datetime,
    calls: dict[str, int],
    rows: int,
    rng: random.Random,
) -> tuple[Any, ...]:
    throttled = rng.random() < 0.002
    return (
        kind,
        "default",
        region,
        machine_id,
        at,
        at + dt.timedelta(seconds=rng.uniform(0.05, 2.0)),
        json.dumps(calls),
        0 if throttled else rng.randint(0, rows),
        not throttled,
        throttled,
        "ThrottlingException: Rate exceeded" if throttled else "",
        0,
        "",
    )
