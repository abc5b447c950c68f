"""The bounded channel that brings a model run's result files out of the sandbox.

The sandbox has no writable host directory: its child writes each result file to a pipe as
a header line ``wharf-file NAME SIZE`` followed by ``SIZE`` bytes. :class:`ResultChannel`
reads the pipe in a thread and writes only the expected names, each under its own cap and
all together under the output limit, into the run's output directory (new regular files,
never through a link). Anything else (an unknown or repeated name, a size over a cap, a
malformed header, a stream cut short) stops the channel and is kept as its ``problem``;
the pipe is then closed, so a writer that goes on gets EPIPE instead of filling a disk.

The model runs in the same process as the child and can write to the pipe too: nothing it
sends is trusted, only bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
from pathlib import Path

MAGIC = b"wharf-file"
MAX_HEADER = 128
_HEADER = re.compile(rb"wharf-file ([A-Za-z0-9_.-]{1,64}) ([0-9]{1,20})")
_CHUNK = 1 << 16


class ResultChannel:
    """A pipe whose write end goes to the sandbox, read into ``out_dir`` with caps.

    ``file_caps`` maps each accepted file name to its largest size; ``total_cap`` bounds all
    of them together (the output limit); ``limit_text`` describes that limit for people.
    Use :meth:`start` before the run and :meth:`finish` after it.
    """

    def __init__(
        self, out_dir: Path, *, file_caps: dict[str, int], total_cap: int, limit_text: str
    ):
        self.out_dir = out_dir
        self.file_caps = dict(file_caps)
        self.total_cap = total_cap
        self.limit_text = limit_text
        self.problem: str | None = None
        self.received: dict[str, int] = {}
        self._read_fd, self.write_fd = os.pipe()
        self._write_open = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close_write_end(self) -> None:
        """Close this process's copy of the write end, once the sandbox is done with its own."""
        if self._write_open:
            self._write_open = False
            with contextlib.suppress(OSError):
                os.close(self.write_fd)

    def finish(self, timeout_s: float = 5.0) -> None:
        """Wait for the stream's end (every writer gone), at most ``timeout_s``."""
        self.close_write_end()
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # a writer outlived the run: stop reading it
            self._stop.set()
            self._thread.join()
            self.problem = self.problem or "the result channel was still open after the run"

    # -- the reading thread ------------------------------------------------------------------
    def _receive(self) -> None:
        try:
            self._frames()
        except _Refused as exc:
            self.problem = str(exc)
        except OSError as exc:  # the worker's own disk
            self.problem = f"the run's results could not be stored: {exc}"
        finally:
            os.close(self._read_fd)

    def _frames(self) -> None:
        buffer = b""
        total = 0
        while True:
            while b"\n" not in buffer:
                if len(buffer) > MAX_HEADER:
                    raise _Refused("the result channel carried a malformed header")
                chunk = self._read()
                if not chunk:
                    if buffer:
                        raise _Refused("the result channel ended in the middle of a header")
                    return
                buffer += chunk
            line, _, buffer = buffer.partition(b"\n")
            match = _HEADER.fullmatch(line)
            if match is None:
                raise _Refused("the result channel carried a malformed header")
            name, size = match.group(1).decode(), int(match.group(2))
            if name not in self.file_caps or name in self.received:
                raise _Refused(f"the result channel carried an unexpected file {name!r}")
            if total + size > self.total_cap:
                raise _Refused(f"output limit of {self.limit_text} reached")
            if size > self.file_caps[name]:
                raise _Refused(
                    f"{name} is {size} bytes, over its cap of {self.file_caps[name]} bytes"
                )
            buffer = self._copy(name, size, buffer)
            total += size

    def _copy(self, name: str, size: int, buffer: bytes) -> bytes:
        """Write ``size`` bytes (``buffer`` first) to ``name``; return what follows them."""
        path = self.out_dir / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o600)
        left = size
        try:
            while left:
                if not buffer:
                    buffer = self._read()
                    if not buffer:
                        raise _Refused(f"the result channel ended in the middle of {name}")
                part, buffer = buffer[:left], buffer[left:]
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
                left -= len(part)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        self.received[name] = size
        return buffer

    def _read(self) -> bytes:
        """The next bytes of the pipe; ``b""`` at its end (or when told to stop)."""
        poll = select.poll()  # not select(): it refuses descriptors past 1023
        poll.register(self._read_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self._stop.is_set():
            if poll.poll(100):
                return os.read(self._read_fd, _CHUNK)
        return b""


class _Refused(Exception):
    """The channel carried something it does not accept; the message says what."""
