"""Path converters: execution ARNs go into URLs as AWS prints them."""

from __future__ import annotations


class ExecutionArnConverter:
    # Anything up to the next "/", plus, for a child execution of a
    # distributed Map run (".../execution:sm/label:name"), one more segment
    # that holds a ":" (so "history/" and "stop/" are never taken for it).
    # Malformed values get through to the view, which answers with a 404
    # that says what is wrong instead of a bare "no such page".
    regex = r"[^/]+(?:/[^/]*:[^/]*)?"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class StateMachineArnConverter:
    # A Map Run's child state machine is "...:stateMachine:PARENT/LABEL".
    regex = r"[^/]+(?:/[^/:]+(?=/|$))?"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class MapRunArnConverter:
    # arn:...:mapRun:PARENT/LABEL:id: one "/" inside, its second part holding a ":".
    regex = r"[^/]+/[^/]*:[^/]*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
