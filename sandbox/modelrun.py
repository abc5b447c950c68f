"""What a model run sees: its mounts, its environment and the job file its child reads.

Inside the sandbox the model finds the extracted package at ``/learnware``, its inputs at
``/in``, the shim, the child program and any installed requirements under ``/opt/wharf``
(all read-only), and a private ``/out`` of its own: a tmpfs capped at the output limit,
like ``/tmp`` and ``/dev/shm`` (see :func:`.bubblewrap.command`). No host directory is
writable. The child sends ``result.json`` and ``outputs.npy`` back through a pipe
(:mod:`.channel`), which carries at most the output limit, so however many or large the
files a model writes, the worker's disk holds at most that limit of them.

Run without bwrap (development only), the same program runs with host paths instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .bubblewrap import Bind, Command

if TYPE_CHECKING:
    from .limits import SandboxLimits
    from .runner import ModelJob

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_child.py"
SHIM = HERE / "shim"

#: Paths as the model sees them.
PACKAGE_MOUNT = "/learnware"
INPUT_MOUNT = "/in"
OUTPUT_MOUNT = "/out"
SHIM_MOUNT = "/opt/wharf/shim"
CHILD_MOUNT = "/opt/wharf/child.py"
SITE_MOUNT = "/opt/wharf/site"  # + "-<i>": installed requirements


def command(job: ModelJob, limits: SandboxLimits, *, isolated: bool) -> Command:
    """The child program for ``job``, in the sandbox's paths (or the host's, unsandboxed)."""
    if not isolated:
        argv = (sys.executable, "-s", "-P", str(CHILD), str(job.input_dir / "job.json"))
        return Command(argv, child_env(job, isolated=False), str(job.package_dir))
    binds = [
        *(Bind(site, mount) for site, mount in zip(job.site_dirs, site_mounts(job), strict=True)),
        Bind(job.package_dir, PACKAGE_MOUNT),
        Bind(job.input_dir, INPUT_MOUNT),
        Bind(SHIM, SHIM_MOUNT),
        Bind(CHILD, CHILD_MOUNT),
    ]
    return Command(
        argv=(sys.executable, "-s", "-P", CHILD_MOUNT, f"{INPUT_MOUNT}/job.json"),
        env=child_env(job, isolated=True),
        cwd=PACKAGE_MOUNT,
        binds=tuple(binds),
        scratch=((OUTPUT_MOUNT, limits.max_output_bytes),),
    )


def site_mounts(job: ModelJob) -> list[str]:
    return [f"{SITE_MOUNT}-{i}" for i in range(len(job.site_dirs))]


def child_env(job: ModelJob, *, isolated: bool) -> dict[str, str]:
    shim = SHIM_MOUNT if isolated else str(SHIM)
    sites = site_mounts(job) if isolated else [str(p) for p in job.site_dirs]
    tmp = "/tmp" if isolated else str(_host_scratch(job) / "tmp")
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


def write_job(job: ModelJob, limits: SandboxLimits, *, isolated: bool, result_fd: int) -> None:
    """Write the job file the child reads; ``result_fd`` is the write end of its channel."""
    if isolated:
        package, inputs, out = PACKAGE_MOUNT, INPUT_MOUNT, OUTPUT_MOUNT
        sites = site_mounts(job)
    else:
        scratch = _host_scratch(job)
        for folder in (scratch / "tmp", scratch / "out"):
            folder.mkdir(parents=True, exist_ok=True)
        package, inputs, out = str(job.package_dir), str(job.input_dir), str(scratch / "out")
        sites = [str(p) for p in job.site_dirs]
    doc = {
        "package_dir": package,
        "module_file": job.module_file,
        "class_name": job.class_name,
        "kwargs": job.kwargs,
        "inputs": f"{inputs}/inputs.npy",
        "out_dir": out,
        "out_is_capped": isolated,  # /out is a tmpfs of the output limit's size
        "site_dirs": sites,
        "max_output_bytes": limits.max_file_bytes,
        "result_fd": result_fd,
    }
    (job.input_dir / "job.json").write_text(json.dumps(doc), encoding="utf-8")


def _host_scratch(job: ModelJob) -> Path:
    """Unsandboxed only: the model's temporary and output folders, beside its inputs."""
    return job.input_dir.parent / "unsandboxed"
