"""Command line of the experiment."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

from .experiment import run_experiment
from .report import PLOT_FILE, by_task, markdown, plot_curves, to_json
from .tasks import CLASSIFICATION, REGRESSION, scale

HERE = Path(__file__).resolve().parent


def machine() -> str:
    from bench._common import load_average
    from bench._common import machine as describe

    return f"{describe()}; load average at the end {load_average()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reuse_experiment")
    parser.add_argument("--quick", action="store_true", help="a small run (for the tests)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where results.md and the plots go (default: next to this "
        "file for a full run, a temporary folder for --quick)",
    )
    parser.add_argument("--workers", type=int, default=2, help="market worker processes")
    parser.add_argument("--json", type=Path, help="also dump every number to this JSON file")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run learnwares in this process instead of the sandbox (no bubblewrap here)",
    )
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="wharf-reuse-quick-")) if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = run_experiment(scale(args.quick), workers=args.workers, sandbox=not args.in_process)
    done = time.perf_counter()
    for task in (CLASSIFICATION, REGRESSION):
        outcomes = by_task(result, task)
        if outcomes and any(o.curves for o in outcomes):
            plot_curves(outcomes, task, out / PLOT_FILE[task])
    result.timings["plots"] = time.perf_counter() - done
    command = "PYTHONPATH=. .venv/bin/python -m bench.reuse_experiment " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = markdown(
        result,
        command=command.strip(),
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine(),
        total=time.perf_counter() - started,
    )
    if args.json:
        args.json.write_text(json.dumps(to_json(result), indent=1))
    (out / "results.md").write_text(text)
    print(text)
    print(f"written to {out}")
    return 0
