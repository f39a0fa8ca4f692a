"""State machine versions and aliases, and the definition an execution ran,
as AWS's Step Functions API reference describes them, where moto 5.2 falls short.

What moto 5.2 does itself (passed through untouched): CreateStateMachineAlias,
DescribeStateMachineAlias, ListStateMachineAliases, UpdateStateMachineAlias,
DeleteStateMachineAlias, DescribeStateMachine of a version ARN, and
UpdateStateMachine(publish=True).

What is faked here (moto has none of it, or gets it wrong):

- PublishStateMachineVersion: a version of the current revision, idempotent
  (the current revision already published answers with that version),
  `revisionId` refused with ConflictException when it is not the current one,
  at most 1,000 versions (ServiceQuotaExceededException), a description of at
  most 256 characters;
- ListStateMachineVersions: newest first, paged by `maxResults` / `nextToken`;
- DeleteStateMachineVersion: refused with ConflictException while an alias
  routes to the version; deleting an unknown version succeeds;
- StartExecution of a version ARN (moto answers 500) or an alias ARN (moto
  says the state machine does not exist): the execution runs the version's
  definition, an alias picks its version by the routing weights (the app's
  seeded random), and the execution belongs to the state machine as on AWS:
  ListExecutions of the state machine lists it, with `stateMachineVersionArn`
  and `stateMachineAliasArn`, and so does DescribeExecution;
- ListExecutions of a version or alias ARN: the executions started through it;
- DescribeStateMachineForExecution: the definition the execution ran (moto
  answers with today's, and knows nothing of executions of versions); its
  `revisionId`, like PublishStateMachineVersion's, is derived from the
  definition and role (AWS's is an opaque id that changes with them).

Not faked: the `mapRunArn` and `label` of DescribeStateMachineForExecution for a
Map Run's child, version ARNs in EventBridge status-change events.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import FaithfulStepFunctions, StartResponse

MAX_VERSIONS = 1000
DESCRIPTION_MAX = 256


class Versions:
    """What the fake knows of versions and aliases beyond moto: which version
    and alias started each execution."""

    def __init__(self, app: FaithfulStepFunctions) -> None:
        self.app = app
        self.lock = threading.Lock()
        # Held around every start: a version's start runs moto's start of the
        # state machine with the version's definition in place for a moment.
        self.start_lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # execution ARN -> (version ARN, alias ARN or "").
            self.started: dict[str, tuple[str, str]] = {}

    # --- Versions ------------------------------------------------------------------

    def publish(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        arn = str(params.get("stateMachineArn") or "")
        found = _machine(arn)
        if isinstance(found, tuple):
            return _error(start_response, *found)
        description = params.get("description")
        if description is not None and len(str(description)) > DESCRIPTION_MAX:
            return _error(
                start_response,
                "ValidationException",
                "1 validation error detected: Value at 'description' failed to satisfy "
                f"constraint: Member must have length less than or equal to {DESCRIPTION_MAX}",
            )
        with self.start_lock:
            current = revision_id(found.definition, found.roleArn)
            wanted = params.get("revisionId")
            if wanted and wanted != current:
                return _error(
                    start_response,
                    "ConflictException",
                    f"Failed to publish the State Machine version for revision {wanted}. "
                    f"The current State Machine revision is {current}.",
                )
            latest = found.latest_version
            if (
                latest is not None
                and latest.version in found.versions
                and revision_id(latest.definition, latest.roleArn) == current
            ):
                return _respond(start_response, 200, _version_item(latest))
            if len(found.versions) >= MAX_VERSIONS:
                return _error(
                    start_response,
                    "ServiceQuotaExceededException",
                    f"Maximum number of versions ({MAX_VERSIONS}) reached for state machine.",
                )
            found.publish(description=description)
            published = found.latest_version
        return _respond(start_response, 200, _version_item(published))

    def list_versions(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        arn = str(params.get("stateMachineArn") or "")
        found = _machine(arn)
        if isinstance(found, tuple):
            return _error(start_response, *found)
        items = [
            _version_item(v) for v in sorted(found.versions.values(), key=lambda v: -v.version)
        ]
        size = int(params.get("maxResults") or 100)
        return self.app._page(
            start_response, "stateMachineVersions", items, size, params.get("nextToken"), {"v": arn}
        )

    def delete_version(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        arn = str(params.get("stateMachineVersionArn") or "")
        base, _, number = arn.rpartition(":")
        if not number.isdigit():
            return _error(start_response, "InvalidArn", f"Invalid Arn: '{arn}'")
        found = _machine(base)
        if isinstance(found, tuple):
            # AWS: deleting what is not there is not an error.
            return _respond(start_response, 200, {})
        for alias in found.aliases.values():
            if any(r.get("stateMachineVersionArn") == arn for r in alias.routing_configuration):
                return _error(
                    start_response,
                    "ConflictException",
                    f"Version to be deleted must not be referenced by an alias. "
                    f"Current list of aliases referencing this version: [{alias.name}]",
                )
        found.versions.pop(int(number), None)
        return _respond(start_response, 200, {})

    # --- Executions of versions and aliases ---------------------------------------------

    def start(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes] | None:
        """StartExecution of a version or alias ARN; None for anything else."""
        arn = str(params.get("stateMachineArn") or "")
        parts = arn.split(":")
        if len(parts) != 8 or parts[5] != "stateMachine":
            return None
        base = ":".join(parts[:7])
        found = _machine(base)
        if isinstance(found, tuple):
            return _error(start_response, *found)
        alias_arn = ""
        if parts[7].isdigit():
            version = found.versions.get(int(parts[7]))
            if version is None:
                return _error(
                    start_response,
                    "StateMachineDoesNotExist",
                    f"State Machine Does Not Exist: '{arn}'",
                )
        else:
            alias = found.aliases.get(parts[7])
            if alias is None:
                return _error(
                    start_response,
                    "ResourceNotFound",
                    f"State Machine Alias Does Not Exist: '{arn}'",
                )
            alias_arn = arn
            version = self._route(found, alias.routing_configuration)
            if version is None:
                return _error(
                    start_response,
                    "StateMachineDoesNotExist",
                    f"No version of alias '{arn}' exists any more",
                )
        backend = _backend(base)
        name = params.get("name") or str(uuid.uuid4())
        with self.start_lock:
            today = (found.definition, found.roleArn)
            found.definition, found.roleArn = version.definition, version.roleArn
            try:
                execution = backend.start_execution(base, name, params.get("input") or "{}")
            except Exception as exc:
                code = getattr(exc, "error_type", None)
                if code is None:
                    raise
                return _error(start_response, str(code), str(getattr(exc, "message", exc)))
            finally:
                found.definition, found.roleArn = today
        execution_arn = str(execution.exec_arn)
        with self.lock:
            self.started.setdefault(execution_arn, (version.arn, alias_arn))
        self.app._started(execution_arn)
        return _respond(
            start_response,
            200,
            {"executionArn": execution_arn, "startDate": execution.start_date.timestamp()},
        )

    def _route(self, machine: Any, routing: list[dict[str, Any]]) -> Any:
        """The version an alias start runs: by weight, as AWS routes it."""
        draw = self.app.random.uniform(0, 100)
        chosen = None
        for route in routing:
            number = str(route.get("stateMachineVersionArn", "")).rpartition(":")[2]
            version = machine.versions.get(int(number)) if number.isdigit() else None
            if version is None:
                continue
            chosen = version
            draw -= float(route.get("weight", 0))
            if draw < 0:
                break
        return chosen

    def annotate(self, item: dict[str, Any]) -> dict[str, Any]:
        """An execution as DescribeExecution or ListExecutions gives it, with
        the version and alias that started it."""
        with self.lock:
            found = self.started.get(str(item.get("executionArn", "")))
        if found is None:
            return item
        out = {**item, "stateMachineVersionArn": found[0]}
        if found[1]:
            out["stateMachineAliasArn"] = found[1]
        return out

    def qualified(self, arn: Any) -> bool:
        parts = str(arn or "").split(":")
        return len(parts) == 8 and parts[5] == "stateMachine"

    def list_executions(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """ListExecutions of a version or alias ARN: the state machine's
        executions started through it (AWS: "lists executions started with
        that version or alias")."""
        from .app import _timed_out_stop

        arn = str(params.get("stateMachineArn"))
        base, _, qualifier = arn.rpartition(":")
        found = _machine(base)
        if isinstance(found, tuple):
            return _error(start_response, *found)
        if qualifier.isdigit():
            key, known = 0, int(qualifier) in found.versions
        else:
            key, known = 1, qualifier in found.aliases
        if not known:
            return _error(
                start_response, "StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'"
            )
        with self.lock:
            mine = {a for a, started in self.started.items() if started[key] == arn}
        query: dict[str, Any] = {"stateMachineArn": base, "maxResults": 1000}
        items: list[dict[str, Any]] = []
        while True:
            status, data = self.app._moto(environ, "ListExecutions", query)
            if status != 200:
                return _respond(start_response, status, data)
            items.extend(i for i in data.get("executions", []) if i.get("executionArn") in mine)
            if not data.get("nextToken"):
                break
            query["nextToken"] = data["nextToken"]
        wanted = params.get("statusFilter")
        out = []
        for item in items:
            item = self.annotate(_timed_out_stop(self.app._overlay_execution(item)))
            if not wanted or item.get("status") == wanted:
                out.append(item)
        size = int(params.get("maxResults") or 100)
        scope = {k: v for k, v in params.items() if k not in ("nextToken", "maxResults")}
        return self.app._page(
            start_response, "executions", out, size, params.get("nextToken"), scope
        )

    # --- The definition an execution ran --------------------------------------------

    def describe_for_execution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        from .app import _find_execution

        arn = str(params.get("executionArn") or "")
        parts = arn.split(":")
        if len(parts) != 8 or parts[0] != "arn" or parts[5] != "execution":
            return _error(start_response, "InvalidArn", f"Invalid Arn: '{arn}'")
        execution = _find_execution(arn)
        ran = getattr(execution, "state_machine", None)
        if execution is None or ran is None:
            return _error(
                start_response, "ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'"
            )
        # moto's execution keeps a copy of the state machine as it started.
        base = ":".join([*parts[:5], "stateMachine", parts[6]])
        out: dict[str, Any] = {
            "stateMachineArn": base,
            "name": ran.name,
            "definition": ran.definition,
            "roleArn": ran.roleArn,
            "updateDate": ran.update_date.timestamp(),
            "revisionId": revision_id(ran.definition, ran.roleArn),
        }
        for key in ("loggingConfiguration", "tracingConfiguration", "encryptionConfiguration"):
            value = getattr(ran, key, None)
            if value:
                out[key] = value
        return _respond(start_response, 200, out)


def revision_id(definition: str, role_arn: str) -> str:
    digest = hashlib.sha256(f"{role_arn}\n{definition}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


def _version_item(version: Any) -> dict[str, Any]:
    return {
        "stateMachineVersionArn": version.arn,
        "creationDate": version.creation_date.timestamp(),
    }


def _backend(arn: str) -> Any:
    from moto.stepfunctions.responses import get_backend

    parts = arn.split(":")
    return get_backend(parts[4], parts[3])


def _machine(arn: str) -> Any:
    """moto's state machine for an unqualified ARN, or (error code, message)."""
    parts = arn.split(":")
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "states" or parts[5] != "stateMachine":
        return ("InvalidArn", f"Invalid Arn: '{arn}'")
    machine = next((m for m in _backend(arn).state_machines if m.arn == arn), None)
    if machine is None:
        return ("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
    return machine


def _respond(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    from .app import _respond as respond

    return respond(start_response, status, body)


def _error(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    from .app import _error as error

    return error(start_response, code, message)
