"""The check log: what the owner of a submission reads to learn why it passed or failed.

One line per event, each stamped with UTC time and a level (``INFO``, ``PASS``, ``WARN``,
``FAIL``). Text that came from the submission (a model's stderr, an exception message) is
shown indented under the line that introduces it, with control characters replaced, so it
cannot forge log lines or drive a terminal. The whole log is capped in size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

MAX_LOG_CHARS = 256 * 1024
_INDENT = " " * 30  # under the message, past "<timestamp> <LEVEL> "
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def clean_text(text: str) -> str:
    """``text`` with control characters (escape sequences, ``\\r``) shown as ``?``."""
    return _CONTROL.sub("?", text)


class CheckLog:
    """A growing, timestamped check log.

    Parameters
    ----------
    sink : callable, optional
        Called with each new line as it is written, e.g. to stream progress to a job record.
    max_chars : int
        Beyond this size new lines are dropped and a single truncation notice is written.
    """

    def __init__(
        self, sink: Callable[[str], None] | None = None, *, max_chars: int = MAX_LOG_CHARS
    ):
        self.sink = sink
        self.max_chars = max_chars
        self._lines: list[str] = []
        self._size = 0
        self._truncated = False

    def info(self, message: str) -> None:
        self._write("INFO", message)

    def ok(self, message: str) -> None:
        self._write("PASS", message)

    def warn(self, message: str) -> None:
        self._write("WARN", message)

    def fail(self, message: str) -> None:
        self._write("FAIL", message)

    def block(self, title: str, text: str) -> None:
        """An ``INFO`` line ``title`` followed by ``text`` (e.g. a stderr tail), indented."""
        self._write("INFO", title, detail=text)

    def text(self) -> str:
        return "\n".join(self._lines) + ("\n" if self._lines else "")

    def __str__(self) -> str:
        return self.text()

    def _write(self, level: str, message: str, *, detail: str | None = None) -> None:
        if self._truncated:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines = clean_text(message).splitlines() or [""]
        out = [f"{stamp} {level:<4} {lines[0]}"]
        out += [f"{_INDENT}{line}" for line in lines[1:]]
        if detail is not None:
            out += [f"{_INDENT}| {line}" for line in clean_text(detail).splitlines()]
        entry = "\n".join(out)
        if self._size + len(entry) > self.max_chars:
            self._truncated = True
            entry = f"{stamp} WARN the log reached {self.max_chars} characters; later lines dropped"
        self._lines.append(entry)
        self._size += len(entry) + 1
        if self.sink is not None:
            self.sink(entry)
