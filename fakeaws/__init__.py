"""A Step Functions endpoint for tests, benchmarks and the demo: moto, made faithful to AWS."""

from __future__ import annotations

from .app import AWS_QUOTAS, FaithfulStepFunctions
from .server import FakeAwsServer

__all__ = ["AWS_QUOTAS", "FaithfulStepFunctions", "FakeAwsServer"]
