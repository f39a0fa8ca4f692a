"""The embedded broker: kombu's filesystem transport, with every message
written atomically.

kombu's own transport creates a message file in the queue folder and then
writes into it, while a consumer takes (renames, reads, deletes) any file it
finds there without waiting for the writer's lock. A consumer that polls in
between reads an empty file: the message is lost and the worker stops on the
JSON error. Pages, beat and the sync tasks all publish while the worker polls
ten times a second, so it happens. Here a message is written under a name the
consumers skip and renamed into place once complete: a rename within one
folder is atomic, so a consumer sees the whole message or nothing.

Importing this module (sfnui/celery.py does) makes it the transport of every
`filesystem://` URL in the process: web, worker and beat alike.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # The signature of kombu's filesystem Channel; its stubs give the base
    # class another one, so no signature satisfies both.
    def _put(  # type: ignore[override]
        self, queue: str, payload: dict[str, Any], **kwargs: Any
    ) -> None:
        # The name kombu gives it: consumers take the oldest first.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Consumers only take "<prefix>.<queue>.msg": this is not one.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
