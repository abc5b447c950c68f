"""Run untrusted code in a sandboxed child process: a model, or the install of its requirements.

Layers, each logged when it is in force:

1. **bubblewrap** namespaces (:mod:`.bubblewrap`): a new user namespace (the code runs as
   uid/gid 65534 with no capabilities and may not create further user namespaces), PID,
   IPC, UTS, cgroup and network namespaces (only an empty loopback: no route anywhere), a
   new session. The file system is a read-only tmpfs holding only the interpreter's
   directories and the system library directories (read-only), the binds the command asks
   for, a ``/proc`` of its own (``/proc/sys`` read-only), and private size-capped tmpfs
   mounts at ``/tmp``, ``/dev/shm`` and any scratch directory. The environment is cleared
   and rebuilt from a few variables.
2. **rlimits**, set by :mod:`._launch` before bwrap starts: address space, CPU seconds, file
   size, open files, no core dumps (and, as a fallback, a process count).
3. **cgroups** (v1 ``pids`` and ``memory``) around the whole sandbox, when writable. The
   memory cgroup also counts what is written to the sandbox's tmpfs mounts.
4. A **wall-clock timeout**, after which the process group is killed; the sandbox's PID
   namespace dies with its init, and whatever is left in the cgroups is killed too.

:func:`run_command` runs any :class:`~.bubblewrap.Command` this way, under a
:class:`~.limits.SandboxLimits`; :func:`run_model` runs a model (:mod:`.modelrun`) and
receives its results through a bounded pipe (:mod:`.channel`). Without bwrap, untrusted code
does not run unless ``allow_unsandboxed`` is set (development only); then layers 2–4 apply and
the log says loudly that there is no isolation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bubblewrap, cgroups, modelrun, outputs
from ._launch import LAUNCH_FAILED
from .channel import ResultChannel
from .limits import SandboxLimits
from .log import CheckLog

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "_launch.py"
OPEN_FILES = 1024
TAIL_BYTES = 16 * 1024
#: Room for the ``.npy`` header on top of the outputs' own bytes.
NPY_HEADER_BYTES = 4096


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here and running without it is not allowed."""


@dataclass(frozen=True)
class ModelJob:
    """One model run, in host paths; :func:`run_model` maps them into the sandbox."""

    package_dir: Path
    module_file: str
    class_name: str
    kwargs: dict[str, Any]
    input_dir: Path  # holds inputs.npy; read-only inside
    output_dir: Path  # receives result.json and outputs.npy through the result channel
    site_dirs: tuple[Path, ...] = ()  # e.g. a cached requirements environment


@dataclass
class SandboxResult:
    """How the run ended. ``exit_code`` is the child's (a signal shows as 128 + signo);
    ``output_problem`` says why a model's results were refused (the output limit, say)."""

    exit_code: int | None
    timed_out: bool
    wall_s: float
    stdout_tail: str
    stderr_tail: str
    isolated: bool
    cgroup_stats: dict[str, int] = field(default_factory=dict)
    output_problem: str | None = None

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
        if self.output_problem:
            return self.output_problem
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


def isolation(
    bwrap: str | os.PathLike[str] | None, *, allow_unsandboxed: bool, log: CheckLog
) -> str | None:
    """The bubblewrap to run untrusted code in, or ``None`` where running without one is
    allowed (``allow_unsandboxed``, development only).

    Raises :class:`SandboxUnavailable` when ``bwrap`` is missing (``None``) or cannot create
    its namespaces here, and running without it is not allowed.
    """
    if bwrap is not None:
        problem = bubblewrap.probe(str(bwrap))
        if problem is None:
            return str(bwrap)
        log.warn(f"bubblewrap at {bwrap} does not work here: {problem}")
    if not allow_unsandboxed:
        raise SandboxUnavailable(
            "sandbox unavailable: bubblewrap (bwrap) is missing or cannot create "
            "namespaces on this worker, and submitted code is never run without it"
        )
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
    ``result.json`` and ``outputs.npy`` arrive in ``job.output_dir``, within the limits.
    """
    working = isolation(bwrap, allow_unsandboxed=allow_unsandboxed, log=log)
    if working is None:
        log.warn(
            "!!! RUNNING SUBMITTED CODE WITHOUT A SANDBOX !!! bubblewrap is unavailable and "
            "allow_unsandboxed is set (development only): the model can read files, use the "
            "network and see this machine; only resource limits apply"
        )
    channel = ResultChannel(
        job.output_dir,
        file_caps={
            outputs.RESULT_FILE: outputs.MAX_RESULT_BYTES,
            outputs.OUTPUTS_FILE: limits.max_file_bytes + NPY_HEADER_BYTES,
        },
        total_cap=limits.max_output_bytes,
        limit_text=_size(limits.max_output_bytes),
    )
    channel.start()
    try:
        modelrun.write_job(job, limits, isolated=working is not None, result_fd=channel.write_fd)
        command = modelrun.command(job, limits, isolated=working is not None)
        result = run_command(
            command,
            limits,
            bwrap=working,
            log=log,
            cgroup_root=cgroup_root,
            pass_fds=(channel.write_fd,),
        )
    finally:
        channel.finish()
    result.output_problem = channel.problem or _filled_out(job.output_dir, limits)
    return result


def _filled_out(out_dir: Path, limits: SandboxLimits) -> str | None:
    """The output limit, if the child found the model's ``/out`` full."""
    try:
        raw = outputs.read_capped(out_dir / outputs.RESULT_FILE, outputs.MAX_RESULT_BYTES)
        full = raw is not None and json.loads(raw).get("out_full") is True
    except (outputs.OutputFileError, ValueError, AttributeError, RecursionError):
        return None  # judged when the result is read
    if not full:
        return None
    return f"output limit of {_size(limits.max_output_bytes)} reached: the model filled /out"


def remove_tree(path: Path) -> None:
    """Remove ``path`` even where a model left folders without permissions in it."""
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            folder = os.path.join(root, name)
            if not os.path.islink(folder):
                with suppress(OSError):
                    os.chmod(folder, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def run_command(
    command: bubblewrap.Command,
    limits: SandboxLimits,
    *,
    bwrap: str | None,
    log: CheckLog | None = None,
    cgroup_root: Path = cgroups.DEFAULT_ROOT,
    pass_fds: Sequence[int] = (),
) -> SandboxResult:
    """Run ``command`` in bubblewrap ``bwrap`` (from :func:`isolation`; ``None``: without a
    sandbox, as the caller allowed) under ``limits``, cgroups and a wall clock.

    The protections in force are logged to ``log`` when one is given. ``pass_fds`` are
    descriptors the program inherits (the caller closes them).
    """
    isolated = bwrap is not None
    name = f"check-{uuid.uuid4().hex[:16]}"
    groups = cgroups.create_run_cgroups(
        name,
        max_tasks=limits.max_processes + (cgroups.BWRAP_TASKS if isolated else 0),
        memory_bytes=limits.memory_bytes,
        root=cgroup_root,
    )
    try:
        rlimits = _rlimits(limits, process_cap="pids" not in groups.dirs)
        if log is not None:
            _log_protections(log, limits, bwrap, command, groups, rlimits)
        if bwrap is not None:
            program = bubblewrap.command(bwrap, command, tmp_bytes=limits.memory_bytes)
            env, cwd = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, Path("/")
        else:
            program, env, cwd = list(command.argv), dict(command.env), Path(command.cwd)
        config = {"cgroups": groups.procs_files, "rlimits": rlimits}
        return _supervise(
            [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config), *program],
            env=env,
            cwd=cwd,
            limits=limits,
            groups=groups,
            isolated=isolated,
            pass_fds=tuple(pass_fds),
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
    command: bubblewrap.Command,
    groups: cgroups.RunCgroups,
    rlimits: dict[str, tuple[int, int]],
) -> None:
    if bwrap is not None:
        tmpfs = [f"/tmp and /dev/shm ({_size(limits.memory_bytes)} each)"]
        tmpfs += [f"{path} ({_size(size)})" for path, size in command.scratch]
        writable = [bind.inside for bind in command.binds if bind.writable]
        log.info(
            f"sandbox: {bubblewrap.version(bwrap)} — user namespace (uid "
            f"{bubblewrap.SANDBOX_UID}, no capabilities), own PID/IPC/UTS/cgroup namespaces, "
            "no network (loopback only), read-only file system except private tmpfs "
            f"{', '.join(tmpfs)}"
            + (f" and {', '.join(writable)}" if writable else "")
            + ", environment cleared"
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
        log.info(
            f"memory cgroup: limit {_size(limits.memory_bytes)} for the whole sandbox, "
            "its tmpfs mounts included"
        )
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
    pass_fds: tuple[int, ...],
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
        pass_fds=pass_fds,
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
