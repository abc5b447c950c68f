"""Run a submitted model in a sandboxed child process and collect what it wrote.

Layers, each logged when it is in force:

1. **bubblewrap** namespaces: a new user namespace (the model runs as uid/gid 65534 with no
   capabilities and may not create further user namespaces), PID, IPC, UTS, cgroup and
   network namespaces (only an empty loopback: no route anywhere), a new session. The file
   system is a read-only tmpfs holding only the interpreter's directories and the system
   library directories (read-only), the extracted package at ``/learnware`` (read-only), the
   inputs at ``/in`` (read-only), the shim, the child program and any installed requirements
   under ``/opt/wharf`` (read-only), a private size-capped tmpfs at ``/tmp`` and ``/dev/shm``,
   and ``/out``, the one writable host directory. The environment is cleared and rebuilt
   from a few variables.
2. **rlimits**, set by :mod:`._launch` before bwrap starts: address space, CPU seconds, file
   size, open files, no core dumps (and, as a fallback, a process count).
3. **cgroups** (v1 ``pids`` and ``memory``) around the whole sandbox, when writable.
4. A **wall-clock timeout**: the time limit plus slack, after which the process group is
   killed; the sandbox's PID namespace dies with its init, and whatever is left in the
   cgroups is killed too.

Without bwrap, untrusted code does not run unless ``allow_unsandboxed`` is set (development
only); then layers 2–4 apply and the log says loudly that there is no isolation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market.settings import Settings

from . import bubblewrap, cgroups
from ._launch import LAUNCH_FAILED
from .log import CheckLog

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "_launch.py"
OPEN_FILES = 1024
TAIL_BYTES = 16 * 1024


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here and running without it is not allowed."""


def unavailable_reason(settings: Settings) -> str | None:
    """Why this machine cannot run submitted models as ``settings`` require, or ``None``.

    Check workers ask before they take any work: a host without a working bubblewrap would
    otherwise fail every check it is given, which is the worker's fault, not the packages'.
    """
    if settings.allow_unsandboxed:
        return None
    if settings.sandbox != "bwrap":
        return (
            "the sandbox is switched off (WHARF_SANDBOX=none) and running submitted code "
            "without it is not allowed (WHARF_ALLOW_UNSANDBOXED is false)"
        )
    bwrap = bubblewrap.find()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed: install it (apt-get install bubblewrap)"
    problem = bubblewrap.probe(bwrap)
    if problem is not None:
        return f"bubblewrap at {bwrap} cannot create its namespaces here: {problem}"
    return None


@dataclass(frozen=True)
class SandboxLimits:
    """What one model run may use.

    Attributes
    ----------
    time_s: CPU seconds per process (RLIMIT_CPU); the wall-clock limit is derived from it.
    memory_bytes: address space per process (RLIMIT_AS) and memory of the whole sandbox
        (memory cgroup), tmpfs pages included.
    max_processes: processes and threads the model may have at once.
    max_file_bytes: largest file the model may write (RLIMIT_FSIZE), also the cap on
        ``outputs.npy``.
    """

    time_s: float
    memory_bytes: int
    max_processes: int
    max_file_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(
            time_s=settings.model_time_limit_s,
            memory_bytes=settings.model_memory_bytes,
            max_processes=settings.model_max_processes,
            max_file_bytes=settings.model_max_file_bytes,
        )

    @property
    def wall_s(self) -> float:
        """Wall-clock limit: the CPU limit plus slack for starting the interpreter, waiting
        on I/O and sharing the CPU."""
        return self.time_s + 2.0 + 0.1 * self.time_s


@dataclass(frozen=True)
class ModelJob:
    """One model run, in host paths; :func:`run_model` maps them into the sandbox."""

    package_dir: Path
    module_file: str
    class_name: str
    kwargs: dict[str, Any]
    input_dir: Path  # holds inputs.npy; read-only inside
    output_dir: Path  # the only writable host directory
    site_dirs: tuple[Path, ...] = ()  # e.g. a cached requirements environment


@dataclass
class SandboxResult:
    """How the run ended. ``exit_code`` is the child's (a signal shows as 128 + signo)."""

    exit_code: int | None
    timed_out: bool
    wall_s: float
    stdout_tail: str
    stderr_tail: str
    isolated: bool
    cgroup_stats: dict[str, int] = field(default_factory=dict)

    @property
    def signal(self) -> int | None:
        code = self.exit_code
        if code is not None and code < 0:
            return -code
        if self.isolated and code is not None and 128 < code < 128 + 65:
            return code - 128  # bwrap reports a child killed by a signal like a shell does
        return None

    def describe(self, limits: SandboxLimits) -> str | None:
        """Why the run was stopped, if something stopped it."""
        if self.timed_out:
            return f"killed: wall-clock limit of {limits.wall_s:.1f} s reached"
        sig = self.signal
        if sig == signal.SIGXCPU:
            return f"killed: CPU time limit of {limits.time_s:g} s reached (SIGXCPU)"
        if sig == signal.SIGXFSZ:
            return f"killed: file size limit of {_size(limits.max_file_bytes)} reached (SIGXFSZ)"
        if sig == signal.SIGKILL and self.cgroup_stats.get("memory_oom_kills"):
            return f"killed: memory limit of {_size(limits.memory_bytes)} reached"
        if sig == signal.SIGKILL:
            return "killed by SIGKILL (the hard CPU limit, or the kernel out of memory)"
        if sig is not None:
            return f"killed by signal {_signal_name(sig)}"
        if self.exit_code == LAUNCH_FAILED:
            return "the sandbox could not be started (see its stderr)"
        return None


def run_model(
    job: ModelJob,
    limits: SandboxLimits,
    *,
    log: CheckLog,
    bwrap: str | os.PathLike[str] | None,
    allow_unsandboxed: bool = False,
    cgroup_root: Path = cgroups.DEFAULT_ROOT,
) -> SandboxResult:
    """Run the model of ``job`` under every protection available; log which ones hold.

    ``bwrap`` is the bubblewrap executable (``None``: not available). Without a working
    bwrap this raises :class:`SandboxUnavailable` unless ``allow_unsandboxed`` is true.
    """
    isolated = False
    if bwrap is not None:
        problem = bubblewrap.probe(str(bwrap))
        if problem is None:
            isolated = True
        else:
            log.warn(f"bubblewrap at {bwrap} does not work here: {problem}")
    if not isolated:
        if not allow_unsandboxed:
            raise SandboxUnavailable(
                "sandbox unavailable: bubblewrap (bwrap) is missing or cannot create "
                "namespaces on this worker, and submitted code is never run without it"
            )
        log.warn(
            "!!! RUNNING SUBMITTED CODE WITHOUT A SANDBOX !!! bubblewrap is unavailable and "
            "allow_unsandboxed is set (development only): the model can read files, use the "
            "network and see this machine; only resource limits apply"
        )

    bubblewrap.write_job(job, limits, isolated)
    name = f"check-{uuid.uuid4().hex[:16]}"
    groups = cgroups.create_run_cgroups(
        name,
        max_tasks=limits.max_processes + (cgroups.BWRAP_TASKS if isolated else 0),
        memory_bytes=limits.memory_bytes,
        root=cgroup_root,
    )
    try:
        rlimits = _rlimits(limits, process_cap="pids" not in groups.dirs)
        _log_protections(log, limits, str(bwrap) if isolated else None, groups, rlimits)
        if isolated:
            program = bubblewrap.command(str(bwrap), job, limits)
        else:
            program = bubblewrap.direct_command(job)
        config = {"cgroups": groups.procs_files, "rlimits": rlimits}
        return _supervise(
            [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config), *program],
            env=bubblewrap.launcher_env(job, isolated),
            cwd=job.package_dir,
            limits=limits,
            groups=groups,
            isolated=isolated,
        )
    finally:
        groups.kill_all()
        groups.remove()


def _rlimits(limits: SandboxLimits, *, process_cap: bool) -> dict[str, tuple[int, int]]:
    cpu = max(1, int(limits.time_s))
    out = {
        "RLIMIT_CORE": (0, 0),
        "RLIMIT_NOFILE": (OPEN_FILES, OPEN_FILES),
        "RLIMIT_FSIZE": (limits.max_file_bytes, limits.max_file_bytes),
        "RLIMIT_CPU": (cpu, cpu + 1),  # SIGXCPU at the limit, SIGKILL a second later
        "RLIMIT_AS": (limits.memory_bytes, limits.memory_bytes),
    }
    if process_cap and os.getuid() != 0:
        # Counts every process of this uid, so leave room for what the worker already runs.
        running = _processes_of_uid(os.getuid())
        cap = running + limits.max_processes + cgroups.BWRAP_TASKS
        out["RLIMIT_NPROC"] = (cap, cap)
    return out


def _processes_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def _log_protections(
    log: CheckLog,
    limits: SandboxLimits,
    bwrap: str | None,
    groups: cgroups.RunCgroups,
    rlimits: dict[str, tuple[int, int]],
) -> None:
    if bwrap is not None:
        log.info(
            f"sandbox: {bubblewrap.version(bwrap)} — user namespace (uid "
            f"{bubblewrap.SANDBOX_UID}, no capabilities), own PID/IPC/UTS/cgroup namespaces, "
            "no network (loopback only), read-only file system except /tmp and /out, "
            "environment cleared"
        )
    shown = {
        "RLIMIT_AS": f"address space {_size(limits.memory_bytes)}",
        "RLIMIT_CPU": f"CPU {rlimits['RLIMIT_CPU'][0]} s",
        "RLIMIT_FSIZE": f"file size {_size(limits.max_file_bytes)}",
        "RLIMIT_NOFILE": f"open files {OPEN_FILES}",
        "RLIMIT_CORE": "no core dumps",
        "RLIMIT_NPROC": f"processes of this uid {rlimits.get('RLIMIT_NPROC', (0,))[0]}",
    }
    log.info("rlimits: " + ", ".join(shown[name] for name in rlimits))
    if "pids" in groups.dirs:
        log.info(
            f"process limit: cgroup pids.max = {limits.max_processes} processes and threads "
            f"for the model ({groups.dirs['pids']})"
        )
    elif "RLIMIT_NPROC" in rlimits:
        log.warn("process limit: RLIMIT_NPROC only (no writable pids cgroup)")
    else:
        log.warn(
            "process limit NOT enforced: no writable pids cgroup, and RLIMIT_NPROC does not "
            "bind a worker running as root"
        )
    if "memory" in groups.dirs:
        log.info(f"memory cgroup: limit {_size(limits.memory_bytes)} for the whole sandbox")
    else:
        log.warn("no memory cgroup: memory is limited per process by RLIMIT_AS only")
    for note in groups.notes:
        log.info(f"cgroups: {note}")
    log.info(f"wall-clock limit: {limits.wall_s:.1f} s")


# --- supervising the run ------------------------------------------------------------------------


class _Tail(threading.Thread):
    """Drain a pipe, keeping only its last ``TAIL_BYTES`` bytes."""

    def __init__(self, pipe: Any):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.data = bytearray()
        self.total = 0

    def run(self) -> None:
        while chunk := self.pipe.read1(65536):
            self.total += len(chunk)
            self.data += chunk
            if len(self.data) > 2 * TAIL_BYTES:
                del self.data[:-TAIL_BYTES]

    def text(self) -> str:
        tail = bytes(self.data[-TAIL_BYTES:]).decode("utf-8", errors="replace")
        if self.total > TAIL_BYTES:
            return f"[… {self.total - TAIL_BYTES} earlier bytes not kept …]\n{tail}"
        return tail


def _supervise(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    limits: SandboxLimits,
    groups: cgroups.RunCgroups,
    isolated: bool,
) -> SandboxResult:
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        close_fds=True,
        start_new_session=True,
    )
    tails = [_Tail(proc.stdout), _Tail(proc.stderr)]
    for tail in tails:
        tail.start()
    timed_out = False
    deadline = start + limits.wall_s
    try:
        # Wait without reaping, so the launcher's pid (its process group's id) cannot be
        # reused before the group is killed below.
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(0.02)
    finally:
        _kill_group(proc.pid)  # the launcher's session: bwrap, or the model run directly
        groups.kill_all()
        proc.wait()
    wall = time.monotonic() - start
    for tail in tails:
        tail.join(timeout=5)
    for pipe in (proc.stdout, proc.stderr):
        pipe.close()
    return SandboxResult(
        exit_code=proc.returncode,
        timed_out=timed_out,
        wall_s=wall,
        stdout_tail=tails[0].text(),
        stderr_tail=tails[1].text(),
        isolated=isolated,
        cgroup_stats=groups.stats(),
    )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _size(n: int) -> str:
    mib = 1024 * 1024
    if n >= mib and n % mib == 0:
        return f"{n // mib} MiB"
    return f"{n} bytes"
