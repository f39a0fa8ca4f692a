"""The local demo: a Step Functions endpoint with a team's state machines that keep running.

`python -m demo` serves fakeaws (moto in execute mode, faithful to AWS) on
loopback and keeps starting executions of the state machines in
workflows.py; `bin/run` starts it when no AWS endpoint or credentials are
configured, and docker compose runs it under the `demo` profile.
"""

from __future__ import annotations

from .traffic import Traffic
from .workflows import WORKFLOWS, Workflow

__all__ = ["WORKFLOWS", "Traffic", "Workflow"]
