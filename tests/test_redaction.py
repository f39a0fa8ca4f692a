"""executions/redaction.py: the one way an error loses its credentials, used by
aws.py's errors, the pages' and /healthz's errors, the audit and the sync's
services check alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from executions import aws, probes
from executions.redaction import redact, safe_error
from executions.sync import freshness

MESSAGE = (
    'Could not connect to the endpoint URL: "https://ops:s3cr3t@proxy.internal:8443/" '
    "(key AKIAIOSFODNN7EXAMPLE) via redis://:pw@10.0.0.9:6379/0"
)


def test_redact_blanks_passwords_keys_and_where_the_endpoint_is() -> None:
    text = redact(MESSAGE)
    for secret in ("s3cr3t", "proxy.internal", "AKIAIOSFODNN7EXAMPLE", ":pw@"):
        assert secret not in text
    assert "endpoint URL: (not shown)" in text
    assert "redis://***@10.0.0.9:6379/0" in text
    assert "AKIAIOSF" in text  # still says which kind of key


def test_aws_errors_and_page_errors_are_redacted_alike() -> None:
    # safe_error (the /healthz and /sync/ errors) blanked URL passwords only;
    # now it hides an access key and the endpoint as aws.py's errors do.
    shown = safe_error(ConnectionError(MESSAGE + "\nTraceback: ..."))
    assert shown == f"ConnectionError: {aws.AwsError(MESSAGE).message}"
    assert "Traceback" not in shown
    assert safe_error(ValueError()) == "ValueError"


def test_the_configured_endpoint_is_not_shown(settings: Any) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = "http://10.0.3.7:4566/"
    assert safe_error(OSError("no route to http://10.0.3.7:4566/states")) == (
        "OSError: no route to (the configured endpoint)/states"
    )


@pytest.fixture
def _fresh_services() -> Iterator[None]:
    freshness.forget_services()
    yield
    freshness.forget_services()


@pytest.mark.usefixtures("_fresh_services")
def test_the_services_check_keeps_no_password(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync's broker and cache check had its own redaction (it cut the text
    up to the first @): now the same one."""
    url = "redis://:hunter2@10.0.0.9:6379/0"
    settings.CELERY_BROKER_URL = url

    class Down:
        def ping(self) -> None:
            raise ConnectionError(f"Error 111 connecting to {url}. Connection refused.")

    monkeypatch.setattr(probes, "_redis", lambda _url: Down())
    found = freshness.services()
    assert found.down[0] == "broker"
    assert "hunter2" not in found.error
    assert found.error == (
        "ConnectionError: Error 111 connecting to redis://***@10.0.0.9:6379/0. Connection refused."
    )
