from __future__ import annotations

import pytest

from executions.arns import (
    NotAnArn,
    console_url,
    execution_console_url,
    find_execution_arn,
    parse_execution_arn,
    parse_state_machine_arn,
    state_machine_name,
)

STANDARD = "arn:aws:states:us-east-1:123456789012:execution:OrderPipeline:run-42"
CHILD = "arn:aws:states:eu-west-1:123456789012:execution:OrderPipeline/ItemMap:5f1c-77"
EXPRESS = "arn:aws:states:us-east-1:123456789012:express:Fast:run-1:abc-123"


def test_it_reads_a_standard_execution_arn() -> None:
    arn = parse_execution_arn(STANDARD)
    assert (arn.region, arn.account, arn.state_machine_name, arn.name) == (
        "us-east-1",
        "123456789012",
        "OrderPipeline",
        "run-42",
    )
    assert (
        arn.state_machine_arn == "arn:aws:states:us-east-1:123456789012:stateMachine:OrderPipeline"
    )


def test_it_reads_a_distributed_map_child_and_an_express_execution() -> None:
    child = parse_execution_arn(CHILD)
    assert (child.map_run_label, child.name, child.region) == ("ItemMap", "5f1c-77", "eu-west-1")
    assert parse_execution_arn(EXPRESS).express


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "arn:aws:states:us-east-1:123456789012:stateMachine:OrderPipeline",
        "arn:aws:states:us-east-1:12345:execution:a:b",
        "arn:aws:states:us-east-1:123456789012:execution:a:b c",
        "arn:aws:states:us-east-1:123456789012:execution:a:<script>",
        "arn:aws:states:us-east-1:123456789012:express:a:b",
        "arn:aws:lambda:us-east-1:123456789012:function:f",
        "arn:aws:states:us-east-1:123456789012:execution:" + "x" * 81 + ":b",
        "arn:aws:states:us-east-1:123456789012:execution:a:b\x00",
    ],
)
def test_it_refuses_what_is_not_an_execution_arn(value: str) -> None:
    with pytest.raises(NotAnArn):
        parse_execution_arn(value)


def test_it_finds_the_arn_in_a_console_url_plain_or_encoded() -> None:
    plain = (
        "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
        f"#/v2/executions/details/{STANDARD}"
    )
    encoded = plain.replace(STANDARD, STANDARD.replace(":", "%3A"))
    assert find_execution_arn(plain) == STANDARD
    assert find_execution_arn(encoded) == STANDARD
    assert find_execution_arn(f"  {STANDARD}  ") == STANDARD
    assert find_execution_arn("order-42") is None


def test_console_links_go_to_the_execution_in_its_region() -> None:
    assert execution_console_url(CHILD).startswith(
        "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/"
    )
    assert CHILD in execution_console_url(CHILD)


def test_one_console_link_for_both_kinds_and_none_for_anything_else() -> None:
    """The stop, detail and state machine pages each had their own try/except."""
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:A"
    assert console_url(CHILD) == execution_console_url(CHILD)
    assert console_url(machine).endswith(f"#/statemachines/view/{machine}")
    assert console_url("arn:aws:states:us-east-1:123456789012:stateMachine:A:prod") == ""
    assert console_url("orders") == ""


def test_state_machine_arns_refuse_qualifiers_and_executions() -> None:
    assert (
        parse_state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:A").name == "A"
    )
    with pytest.raises(NotAnArn):
        parse_state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:A:prod")
    with pytest.raises(NotAnArn):
        parse_state_machine_arn(STANDARD)


def test_a_state_machine_is_labelled_by_its_name_or_the_text_given() -> None:
    assert state_machine_name("arn:aws:states:us-east-1:123456789012:stateMachine:A") == "A"
    assert state_machine_name("orders") == "orders"
    assert state_machine_name("") == ""
