"""Per-run control groups (cgroup v1) that cap the sandbox's process count and memory.

Each run gets ``<mount>/<controller>/<the worker's own cgroup>/wharf/<name>`` for the
``pids`` and ``memory`` controllers. Nesting under the worker's own cgroup keeps any limit
the worker itself runs under (a container's memory limit, say) in force for the sandbox too.
A controller that is missing or not writable is skipped and reported, so the caller can log
which limits hold. Pure cgroup v2 hosts are detected and reported as unsupported for now.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path("/sys/fs/cgroup")
#: Tasks bwrap itself adds to the count: its outer process and its init in the new PID
#: namespace (the pids controller counts threads as well as processes).
BWRAP_TASKS = 2


@dataclass
class RunCgroups:
    """The cgroups made for one run; ``dirs`` maps a controller to its directory."""

    dirs: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def kill_all(self, timeout_s: float = 5.0) -> bool:
        """SIGKILL every process left in the cgroups; True once they are all gone."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = {pid for d in self.dirs.values() for pid in _read_pids(d)}
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        return False

    def stats(self) -> dict[str, int]:
        """Counters worth logging: fork refusals, peak tasks, peak memory, processes the
        memory limit killed."""
        out: dict[str, int] = {}
        pids = self.dirs.get("pids")
        if pids is not None:
            events = _read(pids / "pids.events")
            if events and events.split()[0] == "max":
                out["pids_refused"] = int(events.split()[1])
            peak = _read(pids / "pids.peak")
            if peak and peak.isdigit():
                out["pids_peak"] = int(peak)
        memory = self.dirs.get("memory")
        if memory is not None:
            peak = _read(memory / "memory.max_usage_in_bytes")
            if peak and peak.isdigit():
                out["memory_peak_bytes"] = int(peak)
            for line in (_read(memory / "memory.oom_control") or "").splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.isdigit():
                    out["memory_oom_kills"] = int(value)
        return out

    def remove(self) -> None:
        for d in self.dirs.values():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # tasks still exiting
                    time.sleep(0.02)


def create_run_cgroups(
    name: str, *, max_tasks: int, memory_bytes: int, root: Path = DEFAULT_ROOT
) -> RunCgroups:
    """Make and configure the run's cgroups; what could not be made is said in ``notes``."""
    groups = RunCgroups()
    if (root / "cgroup.controllers").exists():
        groups.notes.append(
            f"{root} is a cgroup v2 hierarchy, which the checker does not manage yet"
        )
        return groups
    own = _own_paths()
    settings = {
        "pids": [("pids.max", str(max_tasks))],
        "memory": [
            ("memory.limit_in_bytes", str(memory_bytes)),
            ("memory.memsw.limit_in_bytes", str(memory_bytes)),  # no swap either, if accounted
        ],
    }
    for controller, values in settings.items():
        base = root / controller
        if not (base / "cgroup.procs").exists():
            groups.notes.append(f"no cgroup v1 {controller} controller at {base}")
            continue
        path = base / own.get(controller, "/").lstrip("/") / "wharf" / name
        _remove_stale(path.parent)
        try:
            path.mkdir(parents=True)
            for file, value in values:
                if (path / file).exists():
                    (path / file).write_text(value)
        except OSError as exc:
            groups.notes.append(f"cannot use the {controller} cgroup at {path}: {exc}")
            try:
                path.rmdir()
            except OSError:
                pass
            continue
        groups.dirs[controller] = path
    return groups


#: An empty run cgroup older than this was left by a worker that died mid-check.
STALE_AFTER_S = 120.0


def _remove_stale(folder: Path) -> None:
    """Remove the empty run cgroups that workers killed mid-check left behind (a process
    killed with SIGKILL cannot remove its own); a group with processes is never touched."""
    try:
        runs = [d for d in folder.iterdir() if d.is_dir() and d.name.startswith("check-")]
    except OSError:
        return
    now = time.time()
    for d in runs:
        try:
            if now - d.stat().st_mtime > STALE_AFTER_S and not _read_pids(d):
                d.rmdir()
        except OSError:
            pass  # in use again, or removed by another worker meanwhile


def _own_paths() -> dict[str, str]:
    """The worker's cgroup per v1 controller, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    text = _read(Path("/proc/self/cgroup")) or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                if controller:
                    paths[controller] = parts[2]
    return paths


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_pids(directory: Path) -> list[int]:
    text = _read(directory / "cgroup.procs") or ""
    return [int(p) for p in text.split() if p.isdigit()]
