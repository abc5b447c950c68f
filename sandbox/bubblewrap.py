"""The bubblewrap command line: namespaces, a read-only view of the system, given binds.

:func:`command` turns a :class:`Command` (a program, the host paths it may see and where,
the few it may write, its environment) into a ``bwrap`` invocation. Everything that runs
code from a package goes through it: the model run (:mod:`.modelrun`) and the install of a
requirements environment (:mod:`.envs`).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SANDBOX_UID = 65534
#: System directories made visible read-only (symlinks are recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/alternatives")


def probe(bwrap: str) -> str | None:
    """``None`` if ``bwrap`` can build this module's sandbox here, else what went wrong.

    Runs the interpreter once inside the same namespaces and system mounts a model gets,
    so a host without user namespaces is found before any submission is blamed. A success
    is remembered for the life of the process; a failure is retried next time.
    """
    resolved = shutil.which(bwrap)
    if resolved is None:
        return "no such executable"
    if resolved in _WORKING_BWRAP:
        return None
    argv = [
        resolved,
        *namespace_args(),
        *system_mount_args(),
        *proc_args(),
        "--dev",
        "/dev",
        "--",
        sys.executable,
        "-S",
        "-c",
        "",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip()[-500:] or f"exit {done.returncode}"
    _WORKING_BWRAP.add(resolved)
    return None


_WORKING_BWRAP: set[str] = set()


@lru_cache(maxsize=8)
def version(bwrap: str) -> str:
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, timeout=10, text=True)
        return out.stdout.strip() or "bubblewrap"
    except (OSError, subprocess.TimeoutExpired):
        return "bubblewrap"


def namespace_args() -> list[str]:
    uid = str(SANDBOX_UID)
    return [
        "--unshare-all",  # user (try), ipc, pid, net, uts, cgroup (try)
        "--unshare-user",  # required, not just tried
        "--uid",
        uid,
        "--gid",
        uid,
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "wharf-sandbox",
    ]


def proc_args() -> list[str]:
    """A new /proc of the sandbox's PID namespace, its /proc/sys read-only.

    A worker run as root maps the sandbox's uid to root outside, so the kernel lets the
    model write every root-owned sysctl that asks for no capability (``kernel.core_pattern``,
    ``kernel.modprobe``: programs the kernel then runs as root on the host). bwrap covers
    only what its own write check finds writable, and the top of /proc/sys never is.
    """
    return ["--proc", "/proc", "--ro-bind-try", "/proc/sys", "/proc/sys"]


def system_mount_args() -> list[str]:
    """System directories, the interpreter's installation and the worker's environment."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in SYSTEM_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in _python_dirs():
        args += ["--ro-bind", path, path]
    return args


def _python_dirs() -> list[str]:
    """The directories the worker's interpreter needs, outside the system directories."""
    candidates = {
        sys.base_prefix,
        sys.base_exec_prefix,
        sys.prefix,
        sys.exec_prefix,
        os.path.dirname(sys.executable),
        *site.getsitepackages(),
    }
    # Both the paths as named and their real locations, so symlinked prefixes work.
    dirs = sorted({os.path.realpath(p) for p in candidates} | candidates)
    kept: list[str] = []
    for path in dirs:
        if not os.path.isdir(path):
            continue
        if any(_within(path, root) for root in (*SYSTEM_DIRS, *kept)):
            continue
        kept.append(path)
    return kept


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class Bind:
    """A host path shown inside the sandbox at ``inside``; read-only unless ``writable``."""

    host: Path
    inside: str
    writable: bool = False


@dataclass(frozen=True)
class Command:
    """A program to run in the sandbox, described in the paths it sees there.

    ``scratch`` lists private tmpfs mounts besides ``/tmp`` and ``/dev/shm``, as (path, size
    in bytes). Run without bwrap (development only), nothing is mounted: the caller gives
    ``argv``, ``env`` and ``cwd`` in host paths instead.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    binds: tuple[Bind, ...] = ()
    scratch: tuple[tuple[str, int], ...] = ()


def command(bwrap: str, cmd: Command, *, tmp_bytes: int) -> list[str]:
    """The bwrap invocation that runs ``cmd``.

    ``/tmp`` and ``/dev/shm`` are private tmpfs mounts of ``tmp_bytes`` each, like the
    ``scratch`` mounts of their own sizes. Their pages are charged to the memory cgroup of
    the process that writes them, so under that cgroup everything written there counts
    against the sandbox's memory limit together with its processes' memory; without the
    cgroup each mount is still capped at its size. Nothing else is writable but the binds
    marked ``writable``.
    """
    args = [bwrap, *namespace_args(), "--clearenv"]
    for key, value in cmd.env.items():
        args += ["--setenv", key, value]
    # /tmp first, so that binds below it (an interpreter installed under /tmp) stay visible.
    args += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    args += system_mount_args()
    for bind in cmd.binds:
        args += ["--bind" if bind.writable else "--ro-bind", str(bind.host), bind.inside]
    args += [*proc_args(), "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/dev/shm"]
    for path, size in cmd.scratch:
        args += ["--size", str(size), "--tmpfs", path]
    args += [
        "--remount-ro", "/dev",  # device nodes stay usable; only /dev/shm is writable
        "--remount-ro", "/",
        "--chdir", cmd.cwd,
        "--",
        *cmd.argv,
    ]  # fmt: skip
    return args


def find() -> str | None:
    """The ``bwrap`` on PATH, if any."""
    return shutil.which("bwrap")
