"""The ``wharf`` command's errors: every mistake a user can make is one line on stderr saying
what to do, never a traceback.

:func:`explain` turns an exception into that line. It looks exception classes up only in
modules already imported (a command that never talked HTTP has no ``httpx`` error to explain),
so importing this module costs nothing at start-up. Exceptions it does not know are bugs and
keep their traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A user's mistake the command found itself; the message is the whole answer."""


def input_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a file to read, else a :class:`CliError` naming the problem."""
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{path} is a folder; give the {what}")
    if not p.exists():
        raise CliError(f"{path}: no such file")
    return p


def output_file(path: str | Path) -> Path:
    """``path`` if a file can be written there, else a :class:`CliError` saying why."""
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{path} is a folder; give a file name in it, e.g. {p / 'name'}")
    folder = p.parent
    if not folder.is_dir():
        raise CliError(
            f"cannot write {path}: there is no folder {folder}; create it (mkdir -p {folder}) "
            "or choose another path"
        )
    return p


def explain(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The one line for ``exc`` (without ``error:``), or ``None`` for an unexpected error."""
    url = getattr(args, "url", None) or "the market"
    if isinstance(exc, CliError):
        return str(exc)
    for module, name in (
        ("wharf.specification.errors", "SpecificationError"),
        ("wharf.cli.serve", "MarketNotStarted"),
    ):
        if isinstance(exc, _loaded(module, name)):
            return str(exc)
    if isinstance(exc, _loaded("wharf.client.errors", "WharfError")):
        return _http_error(exc, args)
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError | httpx.InvalidURL):
        return _transport_error(exc, httpx, url)
    if isinstance(exc, TimeoutError):  # WharfClient.wait gave up
        return f"{exc}; it goes on in the market: `wharf jobs JOB_ID --watch` follows it"
    if isinstance(exc, OSError) and exc.filename is not None:
        return _file_error(exc)
    return None


def _loaded(module: str, name: str) -> type | tuple[()]:
    """The class ``module.name`` if that module is imported; else a match for nothing."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else ()


def _http_error(exc: Any, args: argparse.Namespace) -> str:
    detail = (exc.problem or {}).get("detail") or (exc.problem or {}).get("title") or str(exc)
    if exc.status == 401:
        if not getattr(args, "token", None):
            return (
                "this needs an API token: set WHARF_TOKEN or pass --token (`wharf up` prints "
                "an admin token and keeps it in its data folder, wharf-data/admin-token)"
            )
        return f"{detail}; check WHARF_TOKEN or --token (`wharf up` prints a valid one)"
    if exc.status == 429 and exc.retry_after is not None:
        return f"{detail}; try again in {exc.retry_after:.0f} s"
    if exc.status >= 500:
        return f"the market failed to answer (HTTP {exc.status}): {detail}; its API log says why"
    return str(detail)


def _transport_error(exc: Exception, httpx: Any, url: str) -> str:
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return (
            f"{url!r} is not a market URL; give one like http://127.0.0.1:8000 (--url or WHARF_URL)"
        )
    if isinstance(exc, httpx.ConnectError):
        return f"no market answers at {url}: start one with `wharf up`, or set WHARF_URL"
    if isinstance(exc, httpx.TimeoutException):
        return f"the market at {url} did not answer in time; try again, or see its logs"
    return f"the connection to the market at {url} failed ({exc or type(exc).__name__})"


def _file_error(exc: OSError) -> str:
    reason = {
        errno.ENOENT: "no such file or folder",
        errno.EISDIR: "is a folder, not a file",
        errno.EACCES: "permission denied",
        errno.ENOSPC: "no space left on the device",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{exc.filename}: {reason}"
