"""The local demo: a Step Functions endpoint with a team's state machines that keep running.

`python -m demo` serves fakeaws (moto in execute mode, faithful to AWS) on
loopback and keeps starting executions of the state machines in
workflows.py, in two accounts (the second in another region, reached by
assuming a role as sfnui does); `bin/run` starts it when no AWS endpoint or credentials are
configured, and docker compose runs it under the `demo` profile.
"""

from __future__ import annotations

from .traffic import Traffic
from .workflows import (
    OTHER_ACCOUNT,
    OTHER_ACCOUNT_WORKFLOWS,
    OTHER_REGION,
    READER_ROLE,
    WORKFLOWS,
    Workflow,
)

__all__ = [
    "OTHER_ACCOUNT",
    "OTHER_ACCOUNT_WORKFLOWS",
    "OTHER_REGION",
    "READER_ROLE",
    "WORKFLOWS",
    "Traffic",
    "Workflow",
]
