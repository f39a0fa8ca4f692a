"""/alerts/: reading (everyone signed in), writing, muting and deleting a rule
(alerts.change_alertrule, CSRF, an audit row each), bad input as a 400 that
says why, and ?tz= kept."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts import check
from alerts.models import AlertAudit, AlertRule
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def writer(django_user_model: Any) -> Any:
    person = django_user_model.objects.create_user(username="sre", password="sre-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="change_alertrule"))
    return person


@pytest.fixture
def writer_client(client: Client, writer: Any) -> Client:
    client.force_login(writer)
    return client


@pytest.fixture
def rule() -> AlertRule:
    sm = state_machine_row("nightly-batch")
    return AlertRule.objects.create(
        name="batch too long",
        kind=AlertRule.Kind.LONG_RUNNING,
        state_machine_arn=sm.arn,
        state_machine_name=sm.name,
        duration_seconds=3600,
        created_by="sre",
    )


def new_rule(client: Client, **data: Any) -> Any:
    return client.post(reverse("alert_rule_new"), data)


# --- Reading ---------------------------------------------------------------------------------


def test_the_page_lists_rules_what_fires_and_the_audit(
    viewer_client: Client, rule: AlertRule
) -> None:
    sm = state_machine_row("nightly-batch")
    ex = execution_row(sm, "b-1", "RUNNING", started=timezone.now() - dt.timedelta(hours=2))
    check.run()
    page = viewer_client.get(reverse("alert_list")).content.decode()
    assert "batch too long" in page
    assert "An execution of nightly-batch running longer than 1 h" in page
    assert "firing (1)" in page
    assert f'data-row-link="/executions/{ex.arn}/"' in page
    assert f'data-row-link="/alerts/{rule.pk}/"' in page
    assert "Fired" in page  # the audit's row
    assert "New rule" not in page  # a viewer may not write
    assert "No webhook" in page


def test_the_page_keeps_the_zone_in_its_times_and_links(
    viewer_client: Client, rule: AlertRule
) -> None:
    AlertAudit.objects.create(
        at=T0, kind=AlertAudit.Kind.CREATED, rule=rule, rule_name=rule.name, detail="x"
    )
    page = viewer_client.get(reverse("alert_list"), {"tz": "Europe/Berlin"}).content.decode()
    assert "2026-03-02 10:00:00 CET" in page
    assert f"/alerts/{rule.pk}/?tz=Europe%2FBerlin" in page
    assert viewer_client.get(reverse("alert_list"), {"tz": "Mars/Olympus"}).status_code == 400


def test_the_page_says_when_the_rules_are_not_being_checked(
    viewer_client: Client, rule: AlertRule
) -> None:
    with time_machine.travel(T0, tick=False):
        check.run()
    page = viewer_client.get(reverse("alert_list")).content.decode()
    assert "The rules are not being checked." in page
    check.run()
    page = viewer_client.get(reverse("alert_list")).content.decode()
    assert "The rules are not being checked." not in page
    assert "1 rule in" in page


def test_a_rule_page_shows_its_firings_and_its_audit(
    viewer_client: Client, rule: AlertRule
) -> None:
    page = viewer_client.get(reverse("alert_rule", args=[rule.pk]))
    assert page.status_code == 200
    assert "It has not fired." in page.content.decode()
    assert viewer_client.get(reverse("alert_rule", args=[rule.pk + 99])).status_code == 404


def test_signed_out_people_are_sent_to_sign_in(client: Client, rule: AlertRule) -> None:
    for url in (
        reverse("alert_list"),
        reverse("alert_rule", args=[rule.pk]),
        reverse("alert_audit"),
        reverse("alert_rule_new"),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert client.post(reverse("alert_rule_delete", args=[rule.pk])).status_code == 302
    assert AlertRule.objects.filter(pk=rule.pk).exists()


# --- Writing -------------------------------------------------------------------------------


def test_a_writer_creates_a_rule_and_it_is_audited(writer_client: Client) -> None:
    state_machine_row("payment-capture")
    response = new_rule(
        writer_client,
        name="payments failing",
        kind="FAILURES",
        state_machine="payment-capture",
        threshold="5",
        window="15m",
        error="Payment.ProviderDeclined",
        duration="2h",  # not a field of this kind: ignored
    )
    rule = AlertRule.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/alerts/{rule.pk}/"
    assert (rule.threshold, rule.window_seconds, rule.duration_seconds) == (5, 900, None)
    assert rule.state_machine_arn.endswith(":stateMachine:payment-capture")
    assert rule.base_url == "http://testserver"
    (row,) = AlertAudit.objects.all()
    assert (row.kind, row.username, row.rule_id) == ("CREATED", "sre", rule.pk)
    assert row.detail == (
        "5 or more failures of payment-capture with error Payment.ProviderDeclined in 15 m"
    )


def test_the_redirect_after_a_save_keeps_the_zone(writer_client: Client) -> None:
    response = writer_client.post(
        reverse("alert_rule_new") + "?tz=Asia/Tokyo",
        {"name": "any over 2h", "kind": "LONG_RUNNING", "duration": "2h"},
    )
    assert response.status_code == 302
    assert response["Location"].endswith("?tz=Asia%2FTokyo")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "LONG_RUNNING", "duration": "soon"}, "&#x27;soon&#x27; is not a duration"),
        ({"kind": "LONG_RUNNING", "duration": ""}, "needs this"),
        ({"kind": "LONG_RUNNING", "duration": "400d"}, "Between 10 s and 365 d"),
        ({"kind": "FAILURES", "threshold": "0", "window": "5m"}, "greater than or equal to 1"),
        ({"kind": "FAILURES", "threshold": "3", "window": "30s"}, "Between 1 m and 7 d"),
        ({"kind": "MAP_RUN_TOLERANCE", "percent": "150"}, "less than or equal to 100"),
        ({"kind": "NO_START", "duration": "6h"}, "needs this"),
        ({"kind": "LONG_RUNNING", "duration": "1h", "state_machine": "nope"}, "No state machine"),
        ({"kind": "SOMETIMES", "duration": "1h"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_a_400_that_says_why(
    writer_client: Client, data: dict[str, str], message: str
) -> None:
    response = new_rule(writer_client, name="r", **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert AlertRule.objects.count() == 0
    assert AlertAudit.objects.count() == 0


def test_a_name_shared_by_two_accounts_asks_for_the_arn(writer_client: Client) -> None:
    state_machine_row("refunds")
    state_machine_row("refunds", account="210987654321")
    response = new_rule(
        writer_client, name="r", kind="NO_START", state_machine="refunds", duration="1h"
    )
    assert response.status_code == 400
    assert "paste the ARN" in response.content.decode()


def test_a_writer_edits_a_rule_and_the_audit_says_what_changed(
    writer_client: Client, rule: AlertRule
) -> None:
    url = reverse("alert_rule_edit", args=[rule.pk])
    form = writer_client.get(url).content.decode()
    assert 'value="1h"' in form
    response = writer_client.post(
        url,
        {
            "name": "batch far too long",
            "kind": "LONG_RUNNING",
            "state_machine": rule.state_machine_arn,
            "duration": "3h",
        },
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.duration_seconds) == ("batch far too long", 10800)
    (row,) = AlertAudit.objects.all()
    assert row.kind == "CHANGED"
    assert "name 'batch too long' → 'batch far too long'" in row.detail
    assert "longer than 1 h → An execution of nightly-batch running longer than 3 h" in row.detail


def test_a_writer_mutes_for_a_while_or_until_a_time_and_unmutes(
    writer_client: Client, rule: AlertRule
) -> None:
    url = reverse("alert_rule_mute", args=[rule.pk])
    with time_machine.travel(T0, tick=False):
        response = writer_client.post(url, {"action": "mute", "for": "4h"})
        assert response.status_code == 302
        rule.refresh_from_db()
        assert rule.muted_until == T0 + dt.timedelta(hours=4)
        # A time without a zone is in the page's zone.
        writer_client.post(
            url + "?tz=Europe/Berlin", {"action": "mute", "until": "2026-03-02T12:00"}
        )
        rule.refresh_from_db()
        assert rule.muted_until == dt.datetime(2026, 3, 2, 11, 0, tzinfo=dt.UTC)
        page = writer_client.get(reverse("alert_rule", args=[rule.pk])).content.decode()
        assert "muted until 2026-03-02 11:00:00 UTC" in page
        writer_client.post(url, {"action": "unmute"})
        rule.refresh_from_db()
        assert rule.muted_until is None
    kinds = list(AlertAudit.objects.order_by("id").values_list("kind", "detail"))
    assert kinds == [
        ("MUTED", "until 2026-03-02 13:00:00 UTC"),
        ("MUTED", "until 2026-03-02 11:00:00 UTC"),
        ("UNMUTED", "posts resume"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "mute"}, "Say how long to mute"),
        ({"action": "mute", "until": "2020-01-01T00:00"}, "That time has passed"),
        ({"action": "mute", "until": "2099-01-01T00:00"}, "At most 30 days"),
        ({"action": "mute", "until": "tomorrow"}, "is not an ISO 8601 time"),
        ({"action": "mute", "for": "forever"}, "Select a valid choice"),
        ({"action": "silence"}, "Select a valid choice"),
    ],
)
def test_a_bad_mute_is_a_400_that_says_why(
    writer_client: Client, rule: AlertRule, data: dict[str, str], message: str
) -> None:
    response = writer_client.post(reverse("alert_rule_mute", args=[rule.pk]), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    rule.refresh_from_db()
    assert rule.muted_until is None


def test_a_writer_deletes_a_rule_and_its_audit_stays(
    writer_client: Client, rule: AlertRule
) -> None:
    pk = rule.pk
    response = writer_client.post(reverse("alert_rule_delete", args=[pk]))
    assert response.status_code == 302
    assert response["Location"] == "/alerts/"
    assert not AlertRule.objects.filter(pk=pk).exists()
    (row,) = AlertAudit.objects.all()
    assert (row.kind, row.rule_id, row.rule_name) == ("DELETED", None, "batch too long")
    page = writer_client.get(reverse("alert_audit")).content.decode()
    assert "batch too long" in page
    assert "(deleted)" in page


# --- Refused -----------------------------------------------------------------------------------


def test_a_viewer_may_not_write_mute_or_delete(viewer_client: Client, rule: AlertRule) -> None:
    for method, url, data in [
        ("get", reverse("alert_rule_new"), {}),
        (
            "post",
            reverse("alert_rule_new"),
            {"name": "x", "kind": "LONG_RUNNING", "duration": "1h"},
        ),
        ("get", reverse("alert_rule_edit", args=[rule.pk]), {}),
        ("post", reverse("alert_rule_mute", args=[rule.pk]), {"action": "mute", "for": "1h"}),
        ("post", reverse("alert_rule_delete", args=[rule.pk]), {}),
    ]:
        response = getattr(viewer_client, method)(url, data)
        assert response.status_code == 403, url
        assert "alerts.change_alertrule" in response.content.decode()
    rule.refresh_from_db()
    assert rule.muted_until is None
    assert AlertRule.objects.count() == 1
    assert AlertAudit.objects.count() == 0


def test_writes_need_a_csrf_token(writer: Any, rule: AlertRule) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(writer)
    assert client.post(reverse("alert_rule_delete", args=[rule.pk])).status_code == 403
    assert (
        client.post(
            reverse("alert_rule_mute", args=[rule.pk]), {"action": "mute", "for": "1h"}
        ).status_code
        == 403
    )
    assert AlertRule.objects.filter(pk=rule.pk, muted_until=None).exists()


def test_wrong_methods_are_refused(writer_client: Client, rule: AlertRule) -> None:
    assert writer_client.get(reverse("alert_rule_delete", args=[rule.pk])).status_code == 405
    assert writer_client.get(reverse("alert_rule_mute", args=[rule.pk])).status_code == 405
    assert writer_client.post(reverse("alert_list")).status_code == 405
    assert writer_client.post(reverse("alert_rule", args=[rule.pk])).status_code == 405
    assert writer_client.post(reverse("alert_rule_edit", args=[rule.pk + 99])).status_code == 404


def test_the_audit_pages_and_a_bad_page_of_it(viewer_client: Client, rule: AlertRule) -> None:
    for i in range(3):
        AlertAudit.objects.create(
            at=T0, kind=AlertAudit.Kind.FIRED, rule=rule, rule_name=rule.name, detail=f"row {i}"
        )
    newest = AlertAudit.objects.order_by("-id").first()
    assert newest is not None
    page = viewer_client.get(reverse("alert_audit"), {"before": newest.pk}).content.decode()
    assert "row 1" in page
    assert "row 2" not in page
    only = viewer_client.get(reverse("alert_audit"), {"rule": rule.pk + 1}).content.decode()
    assert "row 0" not in only
    assert viewer_client.get(reverse("alert_audit"), {"before": "x"}).status_code == 400


def test_the_stop_and_action_audits_link_to_the_alert_audit(operator_client: Client) -> None:
    for name in ("audit_log", "action_audit"):
        page = operator_client.get(reverse(name)).content.decode()
        assert f'href="{reverse("alert_audit")}"' in page


def test_the_demo_sign_in_may_write_rules() -> None:
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("ensure_user", "--username", "demo-alerts", stdout=StringIO())
    user = get_user_model().objects.get(username="demo-alerts")
    assert user.has_perm("alerts.change_alertrule")
