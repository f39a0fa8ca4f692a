"""The list's rows rendered in Python (web/list_rows.py) are the HTML the
template's loop made, to the byte, for every kind of row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.template import engines
from django.test import RequestFactory
from django.utils import timezone

from executions.models import Execution
from executions.reads.search import Snippet
from executions.web import list_rows
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

# The loop as `templates/executions/_list_results.html` had it (the file holds it as it was).
TEMPLATE = (Path(__file__).parent / "data" / "list_rows.html").read_text()


class Choices:
    def __init__(self, several: bool) -> None:
        self.several = several


def rows() -> list[Execution]:
    now = timezone.now()
    sm = state_machine_row('orders "eu" & <more>', account="210987654321", region="eu-west-1")
    made = [
        execution_row(sm, "plain", "SUCCEEDED", now - dt.timedelta(hours=3)),
        execution_row(sm, "running-now", "RUNNING", now - dt.timedelta(seconds=75)),
        execution_row(
            sm,
            'it\'s <b>&"quoted"',
            "FAILED",
            now - dt.timedelta(days=2),
            error="Payment.Declined <" + "x" * 400,
            redrive_count=1,
        ),
        execution_row(
            sm, "twice", "PENDING_REDRIVE", now - dt.timedelta(minutes=9), redrive_count=2
        ),
        execution_row(
            sm, "timed", "TIMED_OUT", now - dt.timedelta(days=40), error="States.Timeout"
        ),
    ]
    rows = list(Execution.objects.select_related("state_machine").order_by("-start_date", "-id"))
    assert len(rows) == len(made)
    for i, ex in enumerate(rows):
        ex.filter_url = f"/executions/?state_machine={ex.state_machine.arn}&x=<{i}>"  # type: ignore[attr-defined]
        ex.place = ("prod & co", f"account {i}, region eu-west-1", f"/executions/?account={i}&a=b")  # type: ignore[attr-defined]
    rows[0].snippet = Snippet(  # type: ignore[attr-defined]
        "input", (("…", False), ('{"orderId": "', False), ("ord-<1>", True), ('" & more', False))
    )
    return rows


@pytest.mark.parametrize("zone", ["", "Europe/Berlin"])
@pytest.mark.parametrize(("polling", "can_stop"), [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("several", [True, False])
def test_the_rows_are_the_templates_to_the_byte(
    zone: str, polling: bool, can_stop: bool, several: bool
) -> None:
    request: Any = RequestFactory().get("/executions/", {"tz": zone} if zone else {})
    request.tz_name = zone or "UTC"
    page = rows()
    # The ages and running durations are read from the clock: the same instant for both.
    with time_machine.travel(timezone.now(), tick=False), timezone.override(zone or "UTC"):
        expected = (
            engines["django"]
            .from_string(TEMPLATE)
            .render(
                {
                    "page": type("P", (), {"rows": page}),
                    "polling": polling,
                    "can_stop": can_stop,
                    "place_choices": Choices(several),
                },
                request,
            )
        )
        got = list_rows.rows_html(page, request, pick=polling and can_stop, places=several)
    assert "      " + got + "\n" == expected
    assert ("Pick running-now to stop" in got) is (polling and can_stop)
    assert ("prod &amp; co" in got) is several
    assert "<mark>ord-&lt;1&gt;</mark>" in got
    assert "tz=Europe%2FBerlin" in got if zone else "tz=" not in got
