"""A latency distribution for the fake endpoint: what a call to AWS waits on
the network and in AWS's front end, which loopback moto does not.

    POST /fakeaws/config {"faults": {"latency": {"p50": 0.030, "p95": 0.080}}}

Every Step Functions call then sleeps a draw from a lognormal distribution
with that median (p50) and 95th percentile (p95), in seconds, before it is
answered (on top of the fixed `latency_seconds` fault, if set). Optional
keys: "max" caps each draw (default 5 x p95, at most 30 s: a lognormal's
tail is long, and a bench should not wait on one draw of several seconds),
and "seed" (default 0) makes the sequence of draws repeatable. Off unless
configured; `{"latency": null}` (or faults without it) turns it off.

This is faked entirely: AWS publishes no latency figures. The numbers are
the caller's assumption (a bench states its own); the lognormal shape is
the usual model of service response times (a floor-less, right-skewed
spread whose median and tail can be set apart).
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

# The z-score of the 95th percentile of a standard normal distribution.
Z95 = 1.6448536269514722
# No draw may exceed this, whatever "max" says.
MAX_CAP_SECONDS = 30.0
DEFAULT_CAP_FACTOR = 5.0


class BadLatency(ValueError):
    """The latency configuration cannot be used (the message says why)."""


@dataclass
class Latency:
    p50: float
    p95: float
    cap: float
    seed: int = 0
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def mu(self) -> float:
        return math.log(self.p50)

    @property
    def sigma(self) -> float:
        # ln(p95) = mu + Z95 * sigma
        return math.log(self.p95 / self.p50) / Z95

    def draw(self) -> float:
        """Seconds to wait before answering one call."""
        with self._lock:
            value = self._random.lognormvariate(self.mu, self.sigma)
        return min(value, self.cap)

    @classmethod
    def from_config(cls, config: Any) -> Latency | None:
        """The distribution a /fakeaws/config "latency" value asks for (None:
        off). Raises BadLatency with what is wrong."""
        if config is None:
            return None
        if isinstance(config, Latency):
            return config
        if not isinstance(config, dict):
            raise BadLatency(
                'latency must be an object like {"p50": 0.030, "p95": 0.080} (seconds), or null'
            )
        unknown = sorted(set(config) - {"p50", "p95", "max", "seed"})
        if unknown:
            raise BadLatency(
                f"latency has unknown keys {unknown}: use p50, p95, and optionally max and seed"
            )
        p50 = _seconds(config, "p50")
        p95 = _seconds(config, "p95")
        if p50 is None or p95 is None:
            raise BadLatency("latency needs both p50 and p95, in seconds")
        if p50 <= 0:
            raise BadLatency(f"latency p50 must be above 0 s, not {p50:g}")
        if p95 < p50:
            raise BadLatency(f"latency p95 ({p95:g} s) cannot be below p50 ({p50:g} s)")
        cap = _seconds(config, "max")
        if cap is None:
            cap = min(DEFAULT_CAP_FACTOR * p95, MAX_CAP_SECONDS)
        if cap < p95 or cap > MAX_CAP_SECONDS:
            raise BadLatency(
                f"latency max must be between p95 ({p95:g} s) and {MAX_CAP_SECONDS:g} s, "
                f"not {cap:g}"
            )
        seed = config.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise BadLatency(f"latency seed must be an integer, not {seed!r}"[:200])
        return cls(p50=p50, p95=p95, cap=cap, seed=seed)


def _seconds(config: dict[str, Any], key: str) -> float | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadLatency(f"latency {key} must be a number of seconds, not {value!r}"[:200])
    if not math.isfinite(value) or value < 0:
        raise BadLatency(f"latency {key} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)
