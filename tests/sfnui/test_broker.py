"""The embedded broker writes each message atomically (sfnui/broker.py)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from queue import Empty
from typing import Any, cast

import pytest
from kombu import Connection
from kombu.transport import resolve_transport

from sfnui import broker


def _connection(folder: Path) -> Connection:
    return Connection(
        "filesystem://",
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "processed_folder": str(folder),
            # Not kombu's default ./control: the test leaves nothing in the checkout.
            "control_folder": str(folder / "control"),
            "store_processed": False,
        },
    )


def test_filesystem_urls_use_the_atomic_transport() -> None:
    assert cast(Any, resolve_transport("filesystem")) is broker.Transport


def test_a_consumer_never_sees_a_message_that_is_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_while_writing: list[Any] = []
    replaced: list[str] = []
    with _connection(tmp_path) as conn:
        channel: Any = conn.default_channel  # kombu virtual channel: _get/_put
        real_replace = os.replace

        def replace(src: str, dst: str) -> None:
            # The message is on disk but not in place yet: a consumer polling
            # now finds nothing to take (kombu's own transport gave it an empty file).
            assert Path(src).read_bytes()
            with contextlib.suppress(Empty):
                seen_while_writing.append(channel._get("jobs"))
            replaced.append(dst)
            real_replace(src, dst)

        monkeypatch.setattr("sfnui.broker.os.replace", replace)
        channel._put("jobs", {"task": "sync", "n": 1})
        monkeypatch.undo()

        assert len(replaced) == 1
        assert seen_while_writing == []
        assert channel._get("jobs") == {"task": "sync", "n": 1}
        assert os.listdir(tmp_path) == []
