"""The bubblewrap command line, and the world it shows the model.

:func:`command` builds the ``bwrap`` invocation: namespaces, the read-only mounts (system
libraries, the interpreter's installation, the package, inputs, shim, child program and any
installed requirements), the private ``/tmp``, the writable ``/out``, and the child's cleared
environment. :func:`write_job` writes the job file the child reads, with paths as the child
sees them; run without bwrap (development only), the same files use host paths instead.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sandbox import ModelJob, SandboxLimits

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_child.py"
SHIM = HERE / "shim"

SANDBOX_UID = 65534
#: Paths as the model sees them.
PACKAGE_MOUNT = "/learnware"
INPUT_MOUNT = "/in"
OUTPUT_MOUNT = "/out"
SHIM_MOUNT = "/opt/wharf/shim"
CHILD_MOUNT = "/opt/wharf/child.py"
SITE_MOUNT = "/opt/wharf/site"  # + "-<i>": installed requirements
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
        "--proc",
        "/proc",
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


def command(bwrap: str, job: ModelJob, limits: SandboxLimits) -> list[str]:
    args = [bwrap, *namespace_args(), "--clearenv"]
    for key, value in child_env(job, isolated=True).items():
        args += ["--setenv", key, value]
    tmp_size = str(limits.memory_bytes)
    # /tmp first, so that binds below it (an interpreter installed under /tmp) stay visible.
    args += ["--size", tmp_size, "--tmpfs", "/tmp"]
    args += system_mount_args()
    for site_dir, mount in zip(job.site_dirs, site_mounts(job), strict=True):
        args += ["--ro-bind", str(site_dir), mount]
    args += [
        "--ro-bind", str(job.package_dir), PACKAGE_MOUNT,
        "--ro-bind", str(job.input_dir), INPUT_MOUNT,
        "--bind", str(job.output_dir), OUTPUT_MOUNT,
        "--ro-bind", str(SHIM), SHIM_MOUNT,
        "--ro-bind", str(CHILD), CHILD_MOUNT,
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", tmp_size, "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",  # device nodes stay usable; only /dev/shm is writable
        "--remount-ro", "/",
        "--chdir", PACKAGE_MOUNT,
        "--",
        sys.executable, "-s", "-P", CHILD_MOUNT, f"{INPUT_MOUNT}/job.json",
    ]  # fmt: skip
    return args


def site_mounts(job: ModelJob) -> list[str]:
    return [f"{SITE_MOUNT}-{i}" for i in range(len(job.site_dirs))]


def direct_command(job: ModelJob) -> list[str]:
    return [sys.executable, "-s", "-P", str(CHILD), str(job.input_dir / "job.json")]


def child_env(job: ModelJob, *, isolated: bool) -> dict[str, str]:
    shim = SHIM_MOUNT if isolated else str(SHIM)
    sites = site_mounts(job) if isolated else [str(p) for p in job.site_dirs]
    tmp = "/tmp" if isolated else str(job.output_dir.parent / "tmp")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": tmp,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([shim, *sites]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = "1"
    return env


def launcher_env(job: ModelJob, isolated: bool) -> dict[str, str]:
    """The launcher's environment: bwrap clears and rebuilds it; run directly, it is the
    model's."""
    if isolated:
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    env = child_env(job, isolated=False)
    Path(env["TMPDIR"]).mkdir(exist_ok=True)
    return env


def write_job(job: ModelJob, limits: SandboxLimits, isolated: bool) -> None:
    if isolated:
        package, inputs, out = PACKAGE_MOUNT, INPUT_MOUNT, OUTPUT_MOUNT
        sites = site_mounts(job)
    else:
        package, inputs, out = str(job.package_dir), str(job.input_dir), str(job.output_dir)
        sites = [str(p) for p in job.site_dirs]
    doc = {
        "package_dir": package,
        "module_file": job.module_file,
        "class_name": job.class_name,
        "kwargs": job.kwargs,
        "inputs": f"{inputs}/inputs.npy",
        "out_dir": out,
        "site_dirs": sites,
        "max_output_bytes": limits.max_file_bytes,
    }
    (job.input_dir / "job.json").write_text(json.dumps(doc), encoding="utf-8")


def find() -> str | None:
    """The ``bwrap`` on PATH, if any."""
    return shutil.which("bwrap")
