"""Command line of the experiment."""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

from bench.reuse_experiment.run import machine

from .design import scale
from .experiment import ExperimentResult, run_experiment
from .report import BUDGET_PLOT, CURVES_PLOT, markdown, plot_budgets, plot_curves

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hetero_experiment")
    parser.add_argument("--quick", action="store_true", help="a small run (for the tests)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where results.md and the plots go (default: next to this file for a full run, "
        "a temporary folder for --quick)",
    )
    parser.add_argument("--workers", type=int, default=2, help="market worker processes")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run learnwares in this process instead of the sandbox (no bubblewrap here)",
    )
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="wharf-hetero-quick-")) if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = run_experiment(scale(args.quick), workers=args.workers, sandbox=not args.in_process)
    command = "PYTHONPATH=. .venv/bin/python -m bench.hetero_experiment " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = write_report(result, out, command.strip(), time.perf_counter() - started)
    print(text)
    print(f"written to {out}")
    return 0


def write_report(result: ExperimentResult, out: Path, command: str, total: float) -> str:
    """``results.md`` and the plots in ``out``; the markdown."""
    plot_curves(result, out / CURVES_PLOT)
    plot_budgets(result.budgets, result, out / BUDGET_PLOT)
    text = markdown(
        result,
        command=command,
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine(),
        total=total,
    )
    (out / "results.md").write_text(text)
    return text
