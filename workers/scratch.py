"""Scratch space of the worker processes: one folder per process, swept once the process is gone.

Every pool process works in a folder of its own, ``<root>/<host>/<pid>-<start>`` (``root``:
``WHARF_SCRATCH_DIR``, by default ``wharf-scratch`` in the system temporary folder; ``start``:
the process's start time, so that a reused pid is not taken for the old process). The process
makes it its temporary folder (:data:`tempfile.tempdir` and ``TMPDIR``), so a check's
``wharf-check-*`` folder, a search index's snapshot files, a bulk task's downloaded bundle and
whatever a library or a child program writes to the temporary folder land there. A task
removes its own folders when it ends, however it ends short of the process dying; the folder
of a process that died (killed, out of memory, its machine restarted) is removed by
:func:`sweep`, which the reconciler of every worker runs when the worker starts and then every
pass (:mod:`workers.reconcile`). A process that exits normally removes its own folder
(:func:`leave`).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wharf.market.settings import Settings
from wharf.sandbox.runner import remove_tree

from .liveness import pid_alive

log = logging.getLogger("wharf.worker")
HOST = socket.gethostname()
_here: dict[str, Path] = {}  # this process's folder, once made


def root(settings: Settings) -> Path:
    """The folder under which each worker process of this host has its own."""
    base = settings.scratch_dir or Path(_system_temp) / "wharf-scratch"
    return Path(base).resolve() / _safe(HOST)


#: The system temporary folder, as the worker started (:func:`enter` makes each pool
#: process's scratch folder its temporary folder).
_system_temp = tempfile.gettempdir()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "host"


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, from /proc), ``None`` if there is no
    such process; ``"0"`` where /proc does not tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "0" if pid_alive(pid) else None
    return stat.rsplit(")", 1)[1].split()[19]


def _name(pid: int) -> str:
    return f"{pid}-{_start_time(pid) or '0'}"


def enter(settings: Settings) -> Path:
    """Make this process's scratch folder its temporary folder (for Python and for the
    programs it starts); returns the folder. (The reconciler sweeps what dead processes left,
    at once when a worker starts: a pool process must start within seconds.)"""
    here = root(settings) / _name(os.getpid())
    here.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(here)
    os.environ["TMPDIR"] = str(here)
    _here["folder"] = here
    return here


def leave() -> None:
    """Remove this process's scratch folder (as it exits)."""
    here = _here.pop("folder", None)
    if here is not None:
        remove_tree(here)


@dataclass
class Swept:
    folders: int = 0
    bytes: int = 0


def sweep(settings: Settings) -> Swept:
    """Remove the scratch folders of this host's worker processes that are gone."""
    swept = Swept()
    top = root(settings)
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return swept
    for entry in entries:
        pid, _, started = entry.name.partition("-")
        if not pid.isdigit():
            continue
        now = _start_time(int(pid))
        if now is not None and (now == started or "0" in (now, started)):
            continue  # still running
        size = _size(Path(entry.path))
        remove_tree(Path(entry.path))
        if not os.path.exists(entry.path):
            swept.folders += 1
            swept.bytes += size
    if swept.folders:
        log.warning(
            "removed the scratch folders of %d worker process(es) that are gone (%.1f MiB)",
            swept.folders,
            swept.bytes / 2**20,
        )
    return swept


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
