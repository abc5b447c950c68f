"""What one sandboxed run may use, and how requirements environments are built: plain values.

The defaults here are the market's too: its ``WHARF_MODEL_*`` and ``WHARF_INSTALL_*``
settings start from them (``market/settings.py``), and a user who loads a learnware without
giving limits gets the same ones as the market's checker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024

#: A model run: CPU seconds, memory, processes and threads, largest file written.
TIME_S = 60
MEMORY_BYTES = 2048 * MiB
MAX_PROCESSES = 64
MAX_FILE_BYTES = 64 * MiB
#: A requirements install: seconds for waiting and building together, most unpacked bytes.
INSTALL_TIMEOUT_S = 300
INSTALL_MAX_BYTES = 8192 * MiB


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed run may use.

    Attributes
    ----------
    time_s: CPU seconds per process (RLIMIT_CPU); the wall-clock limit is derived from it
        unless ``wall_limit_s`` is given.
    memory_bytes: address space per process (RLIMIT_AS) and memory of the whole sandbox
        (memory cgroup), the pages of its tmpfs mounts included; also the size of its
        ``/tmp`` and ``/dev/shm``.
    max_processes: processes and threads it may have at once.
    max_file_bytes: largest file it may write (RLIMIT_FSIZE), also the cap on a model's
        ``outputs.npy``.
    max_output_bytes: a model's output limit: the size of its ``/out`` and the most its
        result channel carries, so the most a run leaves on the host's disk.
    wall_limit_s: a wall-clock limit of its own (an install), instead of the derived one.
    """

    time_s: float = TIME_S
    memory_bytes: int = MEMORY_BYTES
    max_processes: int = MAX_PROCESSES
    max_file_bytes: int = MAX_FILE_BYTES
    max_output_bytes: int = 2 * MAX_FILE_BYTES
    wall_limit_s: float | None = None

    @property
    def wall_s(self) -> float:
        """Wall-clock limit: the CPU limit plus slack for starting the interpreter, waiting
        on I/O and sharing the CPU."""
        if self.wall_limit_s is not None:
            return self.wall_limit_s
        return self.time_s + 2.0 + 0.1 * self.time_s


@dataclass(frozen=True)
class InstallOptions:
    """Where requirements environments are cached and how their wheels are found.

    Attributes
    ----------
    envs_dir: the cache folder of environments (made if missing).
    timeout_s: seconds for waiting for another build of the same environment and building
        it, together.
    max_bytes: the most the wheels of one environment may hold unpacked.
    index_url: the package index pip resolves against (``None``: PyPI).
    find_links: a folder or page of wheels pip also looks in (``None``: none).
    """

    envs_dir: Path
    timeout_s: float = INSTALL_TIMEOUT_S
    max_bytes: int = INSTALL_MAX_BYTES
    index_url: str | None = None
    find_links: str | None = None
