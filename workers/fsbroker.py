"""The embedded broker: kombu's filesystem transport, with messages put and taken atomically.

kombu's transport has two races that lose a message and kill the worker that hits them
("Unrecoverable error" on an empty JSON read):

- a message file is written in place, under its final name, so a worker polling the folder
  can take it between its creation and its write;
- a worker takes a message by moving it to the system temporary folder. When that folder is
  on another file system than the data directory (a mounted volume, tmpfs), the move is a
  copy and a delete, and two workers taking the same message at once write the same copy.

Both happen within seconds where creating files is slow or tasks are published often (a
chord's end is polled by publishing a task every fraction of a second). Here a message is
written under a name consumers skip and renamed into place once complete, and taken by a
rename into a folder beside the queue's, on the same file system: one worker wins, and it
reads a complete file.

The broker's folders, and those of the file result backend (:class:`ResultBackend`), are made
when they are first used, not when the Celery app is built: a command that only imports the
app (``wharf --help``, a search of a remote market) leaves nothing in its working directory.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from queue import Empty
from time import monotonic

from celery.backends.filesystem import FilesystemBackend
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

#: Taken messages wait here between their claim and their read: a folder beside the queue's.
CLAIMED = "claimed"


class Channel(filesystem.Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for folder in (self.data_folder_in, self.data_folder_out, self.control_folder):
            os.makedirs(folder, exist_ok=True)

    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # consumers read only names ending in ".<queue>.msg"
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        claimed_dir = os.path.join(os.path.dirname(os.path.normpath(self.data_folder_in)), CLAIMED)
        os.makedirs(claimed_dir, exist_ok=True)
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(claimed_dir, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another worker took it first
            try:
                with open(claimed, "rb") as fh:
                    payload = fh.read()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(claimed)
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel


def held_messages(queue_dir: str | os.PathLike[str], queues: Iterable[str]) -> list[dict]:
    """The messages waiting in ``queues`` of the broker whose queue folder is ``queue_dir``
    (and those a worker has claimed but not yet read). A message a worker has taken is gone
    from the folder: this broker keeps no record of it."""
    wanted = {f"{queue}.msg" for queue in queues}
    folders = [os.fspath(queue_dir)]
    folders.append(os.path.join(os.path.dirname(os.path.normpath(folders[0])), CLAIMED))
    found = []
    for folder in folders:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        for name in names:
            if name.partition(".")[2] not in wanted:
                continue  # another queue's, or one being written (".part")
            try:
                with open(os.path.join(folder, name), "rb") as fh:
                    found.append(loads(bytes_to_str(fh.read())))
            except (OSError, ValueError):
                continue  # taken meanwhile
    return found


class ResultBackend(FilesystemBackend):
    """Celery's file result backend, which makes its folder when it is first used."""

    def _do_directory_test(self, key):
        os.makedirs(self.path, exist_ok=True)
        super()._do_directory_test(key)
