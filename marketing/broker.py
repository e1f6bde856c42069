"""The embedded broker: kombu's filesystem transport, with each message written whole before it is seen.

kombu's own ``_put`` creates the message file in the queue folder and only
then writes into it. A worker polling that folder can take the file in
between, read nothing, and stop with "Unrecoverable error: JSONDecodeError"
(kombu issue #1551, open). With Beat queueing a task every few seconds, the
embedded app stopped this way within minutes. Here a message is written to a
hidden name in the same folder, which the queue's reader ignores (it only
takes names of the form ``<time>_<uuid>.<queue>.msg``), and then renamed
into place: a rename within one folder is atomic, so a reader sees either no
file or the whole message.

Only the embedded default uses it: ``marketing.celery`` points the
``filesystem://`` broker URL at this transport. Redis and RabbitMQ are not
affected.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
