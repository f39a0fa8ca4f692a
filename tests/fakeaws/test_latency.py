"""fakeaws: the latency distribution (fakeaws.latency) that a bench sets to
stand for the network between the dashboard and AWS."""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from fakeaws import FakeAwsServer
from fakeaws import app as fake_app
from fakeaws.latency import BadLatency, Latency

pytestmark = pytest.mark.django_db


def _post(server: FakeAwsServer, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
        server.url + path, data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


class _Clock:
    """The fake endpoint's `time` module, with sleeps recorded instead of slept."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def test_draws_have_the_configured_median_and_95th_percentile() -> None:
    latency = Latency.from_config({"p50": 0.030, "p95": 0.080})
    assert latency is not None
    draws = [latency.draw() for _ in range(20_000)]
    assert statistics.median(draws) == pytest.approx(0.030, rel=0.05)
    assert _quantile(draws, 0.95) == pytest.approx(0.080, rel=0.07)
    # Right-skewed as response times are: the mean is above the median.
    assert statistics.fmean(draws) > statistics.median(draws)
    assert min(draws) > 0


def test_draws_are_capped_and_seeded() -> None:
    capped = Latency.from_config({"p50": 0.030, "p95": 0.080, "max": 0.080})
    assert capped is not None
    draws = [capped.draw() for _ in range(5_000)]
    assert max(draws) == 0.080
    # 5 % of draws lie above the 95th percentile: all of those are cut to it.
    assert 0.03 < draws.count(0.080) / len(draws) < 0.07
    default = Latency.from_config({"p50": 0.030, "p95": 0.080})
    assert default is not None
    assert default.cap == pytest.approx(0.400)

    def sequence(seed: int) -> list[float]:
        latency = Latency.from_config({"p50": 0.01, "p95": 0.05, "seed": seed})
        assert latency is not None
        return [latency.draw() for _ in range(10)]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("fast", "must be an object"),
        ({"p50": 0.03}, "needs both p50 and p95"),
        ({"p50": 0, "p95": 0.08}, "p50 must be above 0"),
        ({"p50": 0.08, "p95": 0.03}, "cannot be below p50"),
        ({"p50": "30ms", "p95": 0.08}, "must be a number of seconds"),
        ({"p50": 0.03, "p95": float("inf")}, "finite"),
        ({"p50": 0.03, "p95": 0.08, "max": 0.05}, "max must be between"),
        ({"p50": 0.03, "p95": 0.08, "max": 60}, "max must be between"),
        ({"p50": 0.03, "p95": 0.08, "seed": "x"}, "seed must be an integer"),
        ({"median": 0.03, "p95": 0.08}, "unknown keys ['median']"),
    ],
)
def test_a_bad_configuration_is_refused_with_the_reason(config: Any, says: str) -> None:
    with pytest.raises(BadLatency) as raised:
        Latency.from_config(config)
    assert says in str(raised.value)


def test_it_is_off_by_default(fake_aws: FakeAwsServer, sfn: Any) -> None:
    assert fake_aws.app.faults.latency is None
    assert fake_aws.app.faults.latency_seconds == 0


def test_every_call_waits_a_draw_once_configured(
    fake_aws: FakeAwsServer, sfn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    slept = clock.slept
    monkeypatch.setattr(fake_app, "time", clock)
    sfn.list_state_machines()
    assert slept == []  # off: no wait at all

    status, _ = _post(
        fake_aws, "/fakeaws/config", {"faults": {"latency": {"p50": 0.03, "p95": 0.08}}}
    )
    assert status == 200
    for _ in range(400):
        sfn.list_state_machines()
    assert len(slept) == 400
    assert statistics.median(slept) == pytest.approx(0.030, rel=0.15)
    assert 0.05 < _quantile(slept, 0.95) < 0.12
    assert max(slept) <= 0.400
    # The endpoint tells how long it made its callers wait, all calls together.
    waited = _post(fake_aws, "/fakeaws/calls", {})[1]["latency_seconds"]
    assert waited == pytest.approx(sum(slept))

    # The fixed latency adds to the draw.
    fake_aws.app.configure(faults={"latency_seconds": 1.0, "latency": {"p50": 0.03, "p95": 0.03}})
    slept.clear()
    sfn.list_state_machines()
    assert slept == [pytest.approx(1.03)]

    # Faults without it: off again.
    assert _post(fake_aws, "/fakeaws/config", {"faults": {}})[0] == 200
    slept.clear()
    sfn.list_state_machines()
    assert slept == []


def test_a_bad_configuration_through_the_endpoint_is_a_400_and_changes_nothing(
    fake_aws: FakeAwsServer,
) -> None:
    assert (
        _post(fake_aws, "/fakeaws/config", {"faults": {"latency": {"p50": 0.03, "p95": 0.08}}})[0]
        == 200
    )
    before = fake_aws.app.faults.latency
    status, body = _post(
        fake_aws, "/fakeaws/config", {"faults": {"latency": {"p50": 0.08, "p95": 0.03}}}
    )
    assert status == 400
    assert body["message"] == "bad config: latency p95 (0.03 s) cannot be below p50 (0.08 s)"
    assert fake_aws.app.faults.latency is before

    status, body = _post(fake_aws, "/fakeaws/config", {"faults": {"latencyy": 1}})
    assert status == 400
    assert "latencyy" in body["message"]
    assert fake_aws.app.faults.latency is before
