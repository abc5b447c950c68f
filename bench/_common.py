"""Helpers shared by the benchmark scripts: timing, machine description and result files."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [
        f"CPU: {cpu_model()}",
        f"cores: {os.cpu_count()} (usable: {usable})",
        f"Python {platform.python_version()}",
        f"torch {torch.__version__}",
        f"numpy {np.__version__}",
        f"torch.get_num_threads() = {torch.get_num_threads()}",
    ]
    if torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
    return ", ".join(parts)


def source_digest() -> str:
    """SHA-256 (first 12 hex digits) of specification/*.py: which code a result file measured."""
    h = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parent.parent / "specification").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def descendants(roots: set[int]) -> set[int]:
    """The processes started under ``roots`` (same session: LocalMarket starts each child in
    a session of its own, and Celery's pool processes stay in it)."""
    found = set(roots)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in roots:  # the session id
            found.add(int(name))
    return found


def cpu_seconds(pids: set[int]) -> float:
    """User + system time the processes ``pids`` have spent so far, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / _TICK


def cpu_ticks() -> tuple[int, int]:
    """The machine's (total, steal) CPU time so far, in clock ticks (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[7]  # user … steal (guest time is already in user)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def command(module: str) -> str:
    return " ".join(["PYTHONPATH=. python -m", f"bench.{module}", *sys.argv[1:]])


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn)[0] for _ in range(repeats))


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return v if isinstance(v, str) else str(v)

    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def write_results(module: str, title: str, body: str, *, suffix: str = "") -> Path:
    """Print ``body`` and write it, with the command, date and machine, to results/.

    ``suffix`` names a variant's own file (``_cuda``), so a GPU run keeps the CPU results.
    """
    header = (
        f"# {title}\n\n"
        f"- command: `{command(module)}`\n"
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
        f"- machine: {machine()}\n"
        f"- load average at the end (1/5/15 min): {load_average()}\n"
        f"- specification/*.py digest: {source_digest()}\n\n"
    )
    text = header + body.rstrip() + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{module}{suffix}.md"
    path.write_text(text)
    return path


class PeakRSS:
    """Peak resident memory of a block of code, from /proc/self/status.

    The kernel's high-water mark (VmHWM) is reset first by writing ``5`` to
    /proc/self/clear_refs (Linux ≥ 4.0), so the peak is that of the block itself, measured
    against the resident size at its start. Unlike tracemalloc this sees every allocation
    (torch, numpy, BLAS buffers).
    """

    @staticmethod
    def _read(field: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not in /proc/self/status")

    def __enter__(self) -> PeakRSS:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        self.start = self._read("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.peak = self._read("VmHWM")
        self.growth = self.peak - self.start
