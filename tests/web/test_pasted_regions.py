"""ARNs of regions this dashboard does not read (issue 10, items 1 and 2).

A boto3 client costs about 8.5 MB and was kept per region forever, the region
taken from any pasted ARN: 400 made-up regions took two web workers to
1.8 GB. Now only a region AWS has (botocore's partition data) and this
dashboard reads gets a client; any other is answered at once, with no call.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from executions import aws

pytestmark = pytest.mark.django_db


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) / 1024


def test_200_arns_of_unknown_regions_build_no_client_and_cost_no_memory(
    operator_client: Client, settings: Any
) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing may be sent anyway
    # One of each page first: the code paths' own first-use costs (imports,
    # templates) are not what is measured.
    operator_client.get("/executions/arn:aws:states:aa-warm-1:123456789012:execution:a:b/")
    before = _rss_mb()
    clients_before = aws._client.cache_info().currsize
    with aws.count_calls() as calls:
        for i in range(200):
            letters = "".join(chr(ord("a") + int(d)) for d in f"{i:03d}")
            region = f"aa-made{letters}-{i % 9 + 1}"
            arn = f"arn:aws:states:{region}:123456789012:execution:a:b"
            page = operator_client.get(f"/executions/{arn}/")
            assert page.status_code == 404
            assert b"Not an account or region this dashboard reads" in page.content
            assert operator_client.get(f"/api/executions/{arn}/").status_code == 404
    assert sum(calls.values()) == 0
    assert aws._client.cache_info().currsize == clients_before
    # 8.5 MB a region before: 1.7 GB for these 200.
    assert _rss_mb() - before < 20


@pytest.mark.parametrize("length", [63, 64, 70, 200])
def test_a_region_of_any_length_is_a_404_never_a_500(operator_client: Client, length: int) -> None:
    region = ("a" * length)[: length - 2] + "-1"
    arn = f"arn:aws:states:{region}:123456789012:execution:a:b"
    for suffix in ("", "history/", "history.txt", "history.json", "stop/"):
        assert operator_client.get(f"/executions/{arn}/{suffix}").status_code in (400, 404), suffix
    assert operator_client.get(f"/api/executions/{arn}/").status_code in (400, 404)
