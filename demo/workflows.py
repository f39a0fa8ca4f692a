"""The demo team's state machines, and the inputs their callers send.

Each workflow is a definition moto really runs (execute mode) plus a function
that makes one realistic input. What an execution does depends only on its
input: an order without items is rejected, a payment by legacy wallet goes to
a ledger table that does not exist and fails after visible retries, a slow
invoice runs past the state machine's time limit.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/demo-step-functions"
# The demo's second account (the payments team's), in another region: sfnui
# reads it by assuming READER_ROLE there, as it would a real one.
OTHER_ACCOUNT = "210987654321"
OTHER_REGION = "eu-west-1"
READER_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/sfnui-reader"

Input = dict[str, Any]


@dataclass(frozen=True)
class Workflow:
    name: str
    # Execution names: f"{prefix}-{yyyymmdd}-{hhmm}-{4 hex}"
    prefix: str
    definition: Callable[[str], dict[str, Any]]  # region -> definition
    make_input: Callable[[random.Random, dt.datetime], Input]
    # Mean seconds between two starts while the demo is busy (its first minutes).
    every: float
    # Turns an input into one that takes the unhappy path (fails, times out),
    # so that the first batch shows every outcome.
    unhappy: Callable[[Input], Input] | None = None
    # A canary: `definition` is published as version 1, this as version 2,
    # and callers start through the alias CANARY_ALIAS, which sends
    # CANARY_WEIGHT percent of the starts to version 2.
    canary: Callable[[str], dict[str, Any]] | None = None
    # A Distributed Map run to attach to each execution (fakeaws.map_runs
    # simulates it: moto cannot run one): input -> MapRuns.create's arguments.
    map_run: Callable[[Input], dict[str, Any]] | None = None


def _lambda(region: str, function: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{function}"


# --- order-pipeline: Choice, a Map over the items, a Parallel, Lambda tasks ---------------


def order_pipeline(region: str) -> dict[str, Any]:
    return {
        "Comment": "Takes a checkout: reserves every item, ships and bills in parallel.",
        "StartAt": "ValidateOrder",
        "States": {
            "ValidateOrder": {"Type": "Pass", "Next": "HasItems"},
            "HasItems": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.items[0]", "IsPresent": True, "Next": "ReserveItems"}],
                "Default": "RejectOrder",
            },
            "ReserveItems": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 4,
                "Iterator": {
                    "StartAt": "ReserveStock",
                    "States": {
                        "ReserveStock": {
                            "Type": "Task",
                            "Resource": _lambda(region, "reserve-stock"),
                            "Next": "HoldItem",
                        },
                        "HoldItem": {"Type": "Wait", "Seconds": 1, "End": True},
                    },
                },
                "ResultPath": "$.reservations",
                "Next": "ShipAndBill",
            },
            "ShipAndBill": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "CreateShipment",
                        "States": {
                            "CreateShipment": {
                                "Type": "Task",
                                "Resource": _lambda(region, "create-shipment"),
                                "End": True,
                            }
                        },
                    },
                    {
                        "StartAt": "BillCustomer",
                        "States": {
                            "BillCustomer": {
                                "Type": "Task",
                                "Resource": _lambda(region, "bill-customer"),
                                "End": True,
                            }
                        },
                    },
                ],
                "ResultPath": "$.fulfilment",
                "Next": "SettleOrder",
            },
            "SettleOrder": {"Type": "Wait", "Seconds": 2, "Next": "OrderComplete"},
            "OrderComplete": {"Type": "Succeed"},
            "RejectOrder": {
                "Type": "Fail",
                "Error": "Order.NoItems",
                "CausePath": "States.Format('order {} from {} has no items', $.orderId, $.channel)",
            },
        },
    }


# Customers' first names, for emails worth searching for (the list's search
# finds an execution by a word inside its input).
FIRST_NAMES = ("ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hugo", "ines", "jon")


def customer(number: int) -> dict[str, str]:
    """A customer's id and email, both from one number (no extra draw)."""
    return {
        "customerId": f"cus-{number}",
        "customerEmail": f"{FIRST_NAMES[number % len(FIRST_NAMES)]}.{number}@example.com",
    }


SKUS = ("SKU-1040", "SKU-2231", "SKU-3307", "SKU-4410", "SKU-5120", "SKU-7781", "SKU-9002")


def order_input(rng: random.Random, now: dt.datetime) -> Input:
    # About one order in 25 arrives empty (a broken client) and is rejected.
    count = 0 if rng.random() < 0.04 else rng.choice((1, 1, 2, 2, 3, 4, 6))
    return {
        "orderId": f"ord-{rng.randrange(10000, 99999)}",
        **customer(rng.randrange(1000, 9999)),
        "channel": rng.choice(("web", "web", "mobile", "partner-api")),
        "currency": rng.choice(("EUR", "EUR", "USD", "GBP")),
        "express": rng.random() < 0.2,
        "items": [
            {
                "sku": rng.choice(SKUS),
                "quantity": rng.randint(1, 3),
                "unitPrice": round(rng.uniform(4, 180), 2),
            }
            for _ in range(count)
        ],
        "placedAt": now.isoformat(timespec="seconds"),
    }


# --- payment-capture: a Lambda task, and a DynamoDB step that really fails ---------------

LEGACY_LEDGER_TABLE = "legacy-wallet-ledger"


def payment_capture(region: str) -> dict[str, Any]:
    return {
        "Comment": "Authorizes and captures a payment; legacy wallets go through the old ledger.",
        "StartAt": "AuthorizePayment",
        "States": {
            "AuthorizePayment": {
                "Type": "Task",
                "Resource": _lambda(region, "authorize-payment"),
                "ResultPath": "$.authorization",
                "Next": "ByMethod",
            },
            "ByMethod": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.method",
                        "StringEquals": "legacy-wallet",
                        "Next": "LookUpLegacyLedger",
                    }
                ],
                "Default": "CapturePayment",
            },
            # The table was retired with the old wallet service: every lookup
            # fails with DynamoDB.ResourceNotFoundException, is retried twice,
            # then caught.
            "LookUpLegacyLedger": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:getItem",
                "Parameters": {
                    "TableName": LEGACY_LEDGER_TABLE,
                    "Key": {"paymentId": {"S.$": "$.paymentId"}},
                },
                "ResultPath": "$.ledger",
                "Retry": [
                    {
                        "ErrorEquals": ["States.ALL"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 2.0,
                    }
                ],
                "Catch": [
                    {
                        "ErrorEquals": ["States.ALL"],
                        "ResultPath": "$.failure",
                        "Next": "NotCaptured",
                    }
                ],
                "Next": "CapturePayment",
            },
            "CapturePayment": {
                "Type": "Task",
                "Resource": _lambda(region, "capture-payment"),
                "ResultPath": "$.capture",
                "Next": "Captured",
            },
            "Captured": {"Type": "Succeed"},
            "NotCaptured": {
                "Type": "Fail",
                "Error": "Payment.CaptureFailed",
                "CausePath": "States.Format('payment {} of {} {} for order {} was not captured: "
                "the legacy wallet ledger answered {}', $.paymentId, $.amount, $.currency, "
                "$.orderId, $.failure.Error)",
            },
        },
    }


# The new payment provider, on 10 % of the traffic: it declines large amounts,
# so version 2 fails far more often than version 1 (a canary to roll back).
CANARY_ALIAS = "live"
CANARY_WEIGHT = 10
NEW_PROVIDER_LIMIT = 300


def payment_capture_v2(region: str) -> dict[str, Any]:
    definition = payment_capture(region)
    definition["Comment"] = "Captures through the new payment provider (canary)."
    states = definition["States"]
    states["ByMethod"]["Default"] = "NewProviderLimit"
    states["NewProviderLimit"] = {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.amount", "NumericGreaterThan": NEW_PROVIDER_LIMIT, "Next": "Declined"}
        ],
        "Default": "CapturePayment",
    }
    states["Declined"] = {
        "Type": "Fail",
        "Error": "Payment.ProviderDeclined",
        "CausePath": "States.Format('the new provider declined payment {} of {} {}', "
        "$.paymentId, $.amount, $.currency)",
    }
    return definition


def payment_input(rng: random.Random, now: dt.datetime) -> Input:
    payment = f"pay-{rng.randrange(16**6):06x}"
    order = rng.randrange(10000, 99999)
    return {
        "paymentId": payment,
        "orderId": f"ord-{order}",
        # The payer, as the order's customer would be (the demo does not link them).
        "payerEmail": customer(1000 + order % 9000)["customerEmail"],
        "amount": round(rng.uniform(5, 600), 2),
        "currency": rng.choice(("EUR", "EUR", "USD", "GBP")),
        # About one payment in seven is by legacy wallet, and fails.
        "method": rng.choices(("card", "sepa", "legacy-wallet"), weights=(70, 16, 14))[0],
        "requestedAt": now.isoformat(timespec="seconds"),
    }


# --- invoice-render: a short Wait, and a time limit that slow renders exceed --------------

INVOICE_TIME_LIMIT = 10


def invoice_render(region: str) -> dict[str, Any]:
    return {
        "Comment": "Renders an invoice PDF; gives up (TIMED_OUT) after 10 seconds.",
        "TimeoutSeconds": INVOICE_TIME_LIMIT,
        "StartAt": "LoadInvoice",
        "States": {
            "LoadInvoice": {"Type": "Pass", "Next": "RenderPdf"},
            "RenderPdf": {"Type": "Wait", "SecondsPath": "$.renderSeconds", "Next": "StorePdf"},
            "StorePdf": {
                "Type": "Task",
                "Resource": _lambda(region, "store-invoice"),
                "ResultPath": "$.stored",
                "End": True,
            },
        },
    }


def invoice_input(rng: random.Random, now: dt.datetime) -> Input:
    pages = rng.randint(1, 12)
    # One invoice in 20 is a huge one whose rendering runs past the time limit.
    slow = rng.random() < 0.05
    return {
        "invoiceId": f"INV-{now:%Y}-{rng.randrange(100000, 999999)}",
        **customer(rng.randrange(1000, 9999)),
        "pages": 400 if slow else pages,
        "renderSeconds": 45 if slow else rng.randint(2, 5),
    }


# --- nightly-batch: waits for an hour; the runaway worth stopping -------------------------

BATCH_WAIT_SECONDS = 3600


def nightly_batch(region: str) -> dict[str, Any]:
    return {
        "Comment": "Exports the day's tables, waits for the warehouse load, then reconciles.",
        "StartAt": "PrepareExport",
        "States": {
            "PrepareExport": {"Type": "Pass", "Next": "ExportTables"},
            "ExportTables": {
                "Type": "Map",
                "ItemsPath": "$.tables",
                "Iterator": {
                    "StartAt": "ExportTable",
                    "States": {
                        "ExportTable": {
                            "Type": "Task",
                            "Resource": _lambda(region, "export-table"),
                            "End": True,
                        }
                    },
                },
                "ResultPath": "$.exports",
                "Next": "WaitForWarehouseLoad",
            },
            "WaitForWarehouseLoad": {
                "Type": "Wait",
                "Seconds": BATCH_WAIT_SECONDS,
                "Next": "Reconcile",
            },
            "Reconcile": {
                "Type": "Task",
                "Resource": _lambda(region, "reconcile-ledger"),
                "End": True,
            },
        },
    }


def batch_input(rng: random.Random, now: dt.datetime) -> Input:
    return {
        "runDate": f"{now:%Y-%m-%d}",
        "tables": ["orders", "payments", "invoices", "refunds"],
        "partitions": rng.choice((24, 48, 96)),
        "triggeredBy": "schedule",
    }


# --- catalog-reindex: a distributed Map over the catalogue, some items failing ----------

REINDEX_WAIT_SECONDS = 900
REINDEX_TOLERATED_PERCENTAGE = 10.0


def catalog_reindex(region: str) -> dict[str, Any]:
    # moto runs a "DISTRIBUTED" Map inline (no child executions, no failure
    # tolerance), so the Map Run of ReindexProducts is fakeaws's simulation,
    # started beside the execution by the demo; the step itself waits for it.
    return {
        "Comment": "Reindexes every product of the catalogue in a distributed Map "
        "(10% of items may fail); ReindexProducts' Map Run is simulated by fakeaws.",
        "StartAt": "ListProducts",
        "States": {
            "ListProducts": {"Type": "Pass", "Next": "ReindexProducts"},
            "ReindexProducts": {
                "Type": "Wait",
                "Comment": "Stands in for the distributed Map (see fakeaws/map_runs.py).",
                "Seconds": REINDEX_WAIT_SECONDS,
                "Next": "TooManyFailures",
            },
            "TooManyFailures": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.badProducts", "NumericGreaterThan": 12, "Next": "MapRunFailed"}
                ],
                "Default": "Summarize",
            },
            "MapRunFailed": {
                "Type": "Fail",
                "Error": "States.ExceedToleratedFailureThreshold",
                "Cause": "More than 10% of the products failed to reindex",
            },
            "Summarize": {"Type": "Pass", "End": True},
        },
    }


def reindex_input(rng: random.Random, now: dt.datetime) -> Input:
    return {
        "catalog": rng.choice(("eu", "us", "apac")),
        "products": 120,
        # One run in six fails more than the 10% tolerated.
        "badProducts": rng.choice((0, 2, 4, 6, 8, 20)),
        "requestedAt": now.isoformat(),
    }


def reindex_map_run(payload: Input) -> dict[str, Any]:
    """120 items of 2 to 9 s, 12 at a time; `badProducts` of them fail (more
    than 12, 10% of the items, fail the Map Run)."""
    count = int(payload.get("products", 120))
    bad = min(int(payload.get("badProducts", 0)), count)
    step = max(1, count // max(bad, 1))
    return {
        "label": "ReindexProducts",
        "items": [
            {
                "input": {"sku": f"SKU-{i:05d}", "catalog": payload.get("catalog", "eu")},
                "seconds": 2 + (i * 7) % 8,
                "fail": bad > 0 and i % step == step - 1 and i // step < bad,
                "error": "Catalog.IndexRejected",
                "cause": f"SKU-{i:05d}: the search index rejected the document",
            }
            for i in range(count)
        ],
        "max_concurrency": 12,
        "tolerated_failure_percentage": REINDEX_TOLERATED_PERCENTAGE,
    }


WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "order-pipeline",
        "order",
        order_pipeline,
        order_input,
        every=2.5,
        unhappy=lambda i: {**i, "items": []},
    ),
    Workflow(
        "payment-capture",
        "payment",
        payment_capture,
        payment_input,
        every=4.0,
        unhappy=lambda i: {**i, "method": "legacy-wallet"},
        canary=payment_capture_v2,
    ),
    Workflow(
        "invoice-render",
        "invoice",
        invoice_render,
        invoice_input,
        every=6.0,
        unhappy=lambda i: {**i, "pages": 400, "renderSeconds": 45},
    ),
    Workflow("nightly-batch", "nightly", nightly_batch, batch_input, every=180.0),
    Workflow(
        "catalog-reindex",
        "reindex",
        catalog_reindex,
        reindex_input,
        every=150.0,
        # The first batch's run: items fail, under the tolerance.
        unhappy=lambda i: {**i, "badProducts": 6},
        map_run=reindex_map_run,
    ),
)

# The second account runs the payments team's own copies, less often.
OTHER_ACCOUNT_WORKFLOWS: tuple[Workflow, ...] = (
    replace(WORKFLOWS[1], name="refund-capture", prefix="refund", every=8.0, canary=None),
    replace(WORKFLOWS[2], name="statement-render", prefix="statement", every=12.0),
)
